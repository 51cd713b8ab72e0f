"""TrainerLauncher: runs one training stage (``model.train``) outside the Dagster process, through Pipes.

* ``backend="subprocess"`` (default): ``torchrun --standalone --nproc-per-node N -m model.train ...`` on this
  machine via ``PipesSubprocessClient``, started through ``model.launch_guard``: the trainer gets SIGTERM
  when the launching step process dies (even by SIGKILL) and holds its work dir's lock. Progress lines
  stream into the Dagster log, the child's materialization report comes back, and terminating the run
  sends SIGTERM to torchrun, which stops its workers (``forward_termination``).
* ``backend="k8s"``: one pod per stage via ``dagster_k8s.PipesK8sClient``; the pod runs the same command,
  asks for the preset's GPUs (``compute.gpus_per_training_step``) and node selector, and mounts the
  shared volume that holds artifacts and work directories (``pvc_claim`` at ``mount_path``).
* ``backend="slurm"``: one ``sbatch`` job per stage over ``nodes`` nodes (default the preset's
  ``compute.nodes_per_training_step``), one torchrun per node meeting through a c10d rendezvous, Pipes over a
  file in the work dir (shared storage); cancelled when the step is interrupted (``resources/slurm_trainer.py``).
* ``backend="k8s-multinode"``: one Kubeflow Trainer v2 ``TrainJob`` per stage over ``nodes`` pods, Pipes over a
  file in the work dir on the shared volume; deleted when the step is interrupted (``resources/k8s_trainer.py``).

On Kubernetes nothing ends a training pod when the step that started it is killed (the parent-death
signal of the subprocess backend does not cross nodes). Each pod is therefore labelled with its work dir
(``k8s_pod_meta``), and before a stage starts a pod, ``clear_previous_training_pods`` looks for a live pod
on the same work dir: one left by a run that has ended (or by an earlier attempt of this step) is deleted
and waited out, so the new pod resumes from its last checkpoint; one that belongs to another live run is a
one-line error naming that run (never two trainers on one work dir).

``work_root`` keeps each stage's resumable state (periodic checkpoints, metrics, dataset index caches)
at ``<work_root>/<asset>/<artifact version>``: a re-materialization with the same inputs finds it and resumes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from dagster import AssetExecutionContext, ConfigurableResource, PipesSubprocessClient

from config import PRESET_OVERRIDES_ENV_VAR, ComputeArgs, Preset

BACKENDS = ("subprocess", "k8s", "slurm", "k8s-multinode")
MULTI_NODE_BACKENDS = ("slurm", "k8s-multinode")


class TrainerConfigError(ValueError):
    pass


@dataclass(frozen=True)
class StageLaunch:
    """Everything one ``model.train`` invocation needs (paths as the training process sees them)."""

    preset_name: str
    overrides: Mapping[str, Any]
    stage: str
    data: Path
    work_dir: Path
    output: Path
    init_from: Path | None
    tensor_parallel: int
    expert_parallel: int
    niah_cases: Path | None = None  # context stages: NIAH cases answered after training
    tokenizer: Path | None = None
    # context stages on GPUs: ranks the sequence is split over (TE attention with the sliding window)
    context_parallel: int = 1
    # model.train's pipeline stages (Megatron's 1F1B schedule; compute.pipeline_parallel)
    pipeline_parallel: int = 1
    # the process torchrun starts: ``model.train`` (pre-training, context, SFT) or
    # ``posttrain.policy_train`` (AGAPO / GROUPER: ``algorithm`` over the ``prompts`` file)
    module: str = "model.train"
    algorithm: str | None = None
    prompts: Path | None = None
    # policy stages: the LLM judge ({"base_url", "model", "cache"}), and environment variables the stage
    # process gets beside the inherited ones (the judge's API key: never on the command line)
    judge: Mapping[str, str] | None = None
    env: Mapping[str, str] | None = None
    rollout_base_url: str | None = None  # policy stages: the rollout server (None: the trainer's own model)
    rollout_model: str = "policy"

    def train_args(self) -> list[str]:
        import json

        if self.module == POLICY_MODULE:
            from posttrain.launch import cli_args

            return cli_args(
                preset=self.preset_name,
                overrides=self.overrides,
                algorithm=str(self.algorithm),
                prompts=Path(str(self.prompts)),
                tokenizer=Path(str(self.tokenizer)),
                init_from=Path(str(self.init_from)),
                work_dir=self.work_dir,
                output=self.output,
                tensor_parallel=self.tensor_parallel,
                expert_parallel=self.expert_parallel,
                judge=self.judge,
                rollout=(self.rollout_base_url, self.rollout_model) if self.rollout_base_url else None,
            )
        args = [
            "--preset",
            self.preset_name,
            "--overrides",
            json.dumps(dict(self.overrides)),
            "--stage",
            self.stage,
            "--data",
            str(self.data),
            "--work-dir",
            str(self.work_dir),
            "--output",
            str(self.output),
            "--tensor-parallel",
            str(self.tensor_parallel),
            "--expert-parallel",
            str(self.expert_parallel),
            "--context-parallel",
            str(self.context_parallel),
            "--pipeline-parallel",
            str(self.pipeline_parallel),
        ]
        if self.init_from is not None:
            args += ["--init-from", str(self.init_from)]
        if self.niah_cases is not None:
            args += ["--niah-cases", str(self.niah_cases), "--tokenizer", str(self.tokenizer)]
        return args


TRAIN_MODULE = "model.train"
POLICY_MODULE = "posttrain.policy_train"


def multi_node_torchrun(
    python: str,
    nodes: int,
    nproc_per_node: int,
    rendezvous: list[str],
    module: str,
    train_args: list[str],
    work_dir: Path,
) -> tuple[list[str], list[str]]:
    """Shell words of one node's ``torchrun`` (``rendezvous``: its flags, left unquoted for the shell to
    expand) and of the launch guard that holds the work dir's lock in front of it (``model.launch_guard``)."""
    q = shlex.quote
    torchrun = [python, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={nproc_per_node}"]
    torchrun += [*rendezvous, "-m", module, *(q(a) for a in train_args)]
    return torchrun, [python, "-m", "model.launch_guard", "--work-dir", q(str(work_dir)), "--"]


def torchrun_command(
    nproc_per_node: int, train_args: list[str], python: str = sys.executable, module: str = TRAIN_MODULE
) -> list[str]:
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        module,
        *train_args,
    ]


def guarded_command(
    command: list[str], work_dir: Path, *, python: str = sys.executable, parent_pid: int | None = None
) -> list[str]:
    """``command`` behind ``model.launch_guard``: it dies with the process that launched it and holds the
    work dir's lock (one trainer per work dir), then execs ``command``."""
    guard = [python, "-m", "model.launch_guard", "--work-dir", str(work_dir)]
    if parent_pid is not None:
        guard += ["--parent-pid", str(parent_pid)]
    return [*guard, "--", *command]


TRAINER_ENV_VAR = "KEXAONE_TRAINER"


def trainer_backend_from_env() -> str:
    return os.environ.get(TRAINER_ENV_VAR, "subprocess")


def gpu_placement(compute: ComputeArgs, gpus: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(container resources, pod spec fields) of a pod holding ``gpus`` GPUs: CPU/memory requests, the GPU
    request and limit, the GPU toleration and the node selector. The one place a GPU pod is described: the
    Dagster step pod (``kexaone_dag.executors.gpu_step_tags``) and the Pipes trainer pod (``k8s_pod_spec``)."""
    resources: dict[str, Any] = {
        "requests": {"cpu": compute.cpu_request, "memory": compute.memory_request},
        "limits": {"memory": compute.memory_request},
    }
    pod: dict[str, Any] = {}
    if gpus > 0:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if compute.gpu_node_selector:
        pod["node_selector"] = dict(compute.gpu_node_selector)
    return resources, pod


def k8s_pod_spec(
    preset: Preset, *, nproc_per_node: int, pvc_claim: str | None, mount_path: str, service_account: str | None = None
) -> dict[str, Any]:
    """The base pod spec of a training pod: GPUs, CPU/memory, node selector, GPU toleration, shared volume."""
    c = preset.compute
    resources, pod = gpu_placement(c, nproc_per_node if c.gpus_per_training_step > 0 else 0)
    container: dict[str, Any] = {
        "resources": resources,
        # NCCL and dataloaders need more shared memory than the default 64 MiB
        "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "dshm", "empty_dir": {"medium": "Memory"}}]
    if pvc_claim:
        container["volume_mounts"].append({"name": "kexaone-data", "mount_path": mount_path})
        volumes.append({"name": "kexaone-data", "persistent_volume_claim": {"claim_name": pvc_claim}})
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes, "restart_policy": "Never", **pod}
    if service_account:
        spec["service_account_name"] = service_account
    return spec


WORK_DIR_LABEL, RUN_ANNOTATION, WORK_DIR_ANNOTATION = "kexaone/work-dir", "kexaone/run-id", "kexaone/work-dir"
LIVE_POD_PHASES = ("Pending", "Running", "Unknown")
FINISHED_RUN_STATES = ("SUCCESS", "FAILURE", "CANCELED")


class TrainerBusyError(RuntimeError):
    """Another live run trains this work dir; one line naming it."""


def work_dir_label(work_dir: Path | str) -> str:
    """A label value (<= 63 characters) that names one work dir: asset/version as the pods see it."""
    return hashlib.sha256(str(work_dir).encode()).hexdigest()[:40]


def k8s_pod_meta(work_dir: Path, run_id: str) -> dict[str, Any]:
    """Labels and annotations of a training pod: which work dir it trains and which Dagster run started it."""
    return {
        "labels": {WORK_DIR_LABEL: work_dir_label(work_dir)},
        "annotations": {RUN_ANNOTATION: run_id, WORK_DIR_ANNOTATION: str(work_dir)},
    }


def clear_previous_training_pods(
    core_api,
    namespace: str,
    work_dir: Path,
    run_id: str,
    run_state: Callable[[str], str | None],
    log: Callable[[str], None],
    *,
    grace_period_s: int = 30,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
) -> list[str]:
    """Delete (and wait out) the live training pods of ``work_dir`` whose Dagster run has ended or is this
    run (an earlier attempt of the step); raise ``TrainerBusyError`` if another live run owns one.
    ``run_state(run_id)`` is the run's status name, None for a run the instance does not know.
    Returns the names of the pods deleted."""
    from kubernetes.client.exceptions import ApiException

    pods = core_api.list_namespaced_pod(namespace, label_selector=f"{WORK_DIR_LABEL}={work_dir_label(work_dir)}")
    live = [pod for pod in pods.items if (pod.status.phase if pod.status else "Unknown") in LIVE_POD_PHASES]
    orphans = []
    for pod in live:
        owner = (pod.metadata.annotations or {}).get(RUN_ANNOTATION, "")
        state = run_state(owner) if owner else None
        if owner and owner != run_id and state is not None and state not in FINISHED_RUN_STATES:
            raise TrainerBusyError(
                f"work dir {work_dir} is being trained by pod {pod.metadata.name} of run {owner} "
                f"({state}); wait for that run or terminate it, then materialize again"
            )
        orphans.append((pod.metadata.name, owner or "unknown", state or "not in this instance"))
    for name, owner, state in orphans:
        log(
            f"training pod {name} of run {owner} ({state}) still trains {work_dir}: deleting it (grace "
            f"{grace_period_s} s); this run resumes from its last checkpoint"
        )
        try:
            core_api.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_period_s)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout_s
    for name, _, _ in orphans:
        while True:
            try:
                core_api.read_namespaced_pod(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise TrainerBusyError(
                    f"training pod {name} was deleted but still exists after {timeout_s:.0f} s; "
                    f"check `kubectl -n {namespace} get pod {name}`"
                )
            time.sleep(poll_s)
    return [name for name, _, _ in orphans]


class TrainerLauncher(ConfigurableResource):
    backend: str = "subprocess"
    work_root: str
    nproc_per_node: int | None = None  # default: the preset's GPUs per step (1 on CPU)
    tensor_parallel: int | None = None  # default: preset.compute
    expert_parallel: int | None = None  # default: preset.compute
    image: str | None = None  # k8s: the project image (same code and lock file)
    namespace: str | None = None
    pvc_claim: str | None = None  # k8s: volume with the artifact store and work_root
    mount_path: str = "/data"
    service_account: str | None = None
    # policy stages: rollouts from an OpenAI-compatible server (``model.serve``; vLLM on a cluster) that loads
    # each round's weights, instead of the trainer's own model
    rollout_base_url: str | None = None
    rollout_model: str = "policy"
    nodes: int | None = None  # slurm: nodes per stage (default: preset.compute.nodes_per_training_step)
    slurm_partition: str | None = None
    slurm_poll_s: float = 2.0

    def check_config(self) -> None:
        if self.backend not in BACKENDS:
            raise TrainerConfigError(f"trainer backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.rollout_base_url and not self.rollout_base_url.startswith(("http://", "https://")):
            raise TrainerConfigError(f"rollout server {self.rollout_base_url!r} is not an http(s):// URL")
        if self.backend == "k8s" and not self.image:
            raise TrainerConfigError("trainer backend 'k8s' needs an image (KEXAONE_TRAINER_IMAGE)")
        if self.backend == "k8s-multinode":
            from resources.k8s_trainer import config_problems

            if problems := config_problems(self):
                raise TrainerConfigError("; ".join(problems))

    def launch_problems(self, preset: Preset) -> list[str]:
        """Why this launcher cannot run the preset's training stages, one line each, before anything starts:
        a stage layout that does not fit its GPUs (``model.layout``), or what the launch does not do yet."""
        from model.layout import layout_problems

        c = preset.compute
        out = layout_problems(preset)
        if self.node_count(preset) > 1 and self.backend not in MULTI_NODE_BACKENDS:
            out.append(
                f"the stages need {self.node_count(preset)} nodes x {c.gpus_per_training_step} GPUs; trainer "
                f"backend {self.backend!r} launches one node (multi-node: KEXAONE_TRAINER="
                f"{' or '.join(MULTI_NODE_BACKENDS)})"
            )
        stages = preset.context.stages.items()
        cps = [f"CP {cs.context_parallel} ({name})" for name, cs in stages if cs.context_parallel > 1]
        if c.pipeline_parallel > 1 or cps:
            layout = ", ".join([f"PP {c.pipeline_parallel}"] * (c.pipeline_parallel > 1) + cps)
            out.append(
                "the context stages' NIAH gate generates with the whole model on rank 0 after training, which "
                f"their layout ({layout}) does not allow (a gate through an inference server is not built yet)"
            )
        return out

    def node_count(self, preset: Preset) -> int:
        return self.nodes or max(1, preset.compute.nodes_per_training_step)

    def layout(self, preset: Preset, *, policy: bool = False) -> tuple[int, int, int]:
        """(processes per node, TP, EP) of one stage; ``policy``: a policy stage's own TP / EP (no PP)."""
        c = preset.compute
        nproc = self.nproc_per_node or max(1, c.gpus_per_training_step)
        tp, ep = (c.tensor_parallel, c.expert_parallel)
        if policy:
            tp, ep = c.policy_tensor_parallel, c.policy_expert_parallel
        return nproc, self.tensor_parallel or tp, self.expert_parallel or ep

    def work_dir(self, asset: str, version: str) -> Path:
        return Path(self.work_root) / asset / version

    def launch(self, context: AssetExecutionContext, preset: Preset, launch: StageLaunch, *, extras: Mapping[str, Any]):
        """Run the stage to completion; returns the Pipes invocation (its materialization report)."""
        self.check_config()
        if problems := self.launch_problems(preset):
            raise TrainerConfigError(f"preset {preset.name} cannot train as configured: {'; '.join(problems)}")
        nproc, _, _ = self.layout(preset)
        if self.backend == "k8s-multinode":
            from resources.k8s_trainer import run_trainjob_stage

            return run_trainjob_stage(context, self, preset, launch, extras=extras)
        if self.backend == "slurm":
            from resources.slurm_trainer import SlurmJobSpec, run_slurm_stage

            spec = SlurmJobSpec(
                nodes=self.node_count(preset),
                nproc_per_node=nproc,
                gpus_per_node=nproc if preset.compute.gpus_per_training_step > 0 else 0,
                partition=self.slurm_partition,
                job_name=f"kexaone-train-{work_dir_label(launch.work_dir)[:16]}",
                comment=context.run_id,
                work_dir=launch.work_dir,
                module=launch.module,
                train_args=launch.train_args(),
            )
            return run_slurm_stage(context, spec, extras=extras, env=dict(launch.env or {}), poll_s=self.slurm_poll_s)
        python = sys.executable if self.backend == "subprocess" else "python"
        command = guarded_command(
            torchrun_command(nproc, launch.train_args(), python=python, module=launch.module),
            launch.work_dir,
            python=python,
            parent_pid=os.getpid() if self.backend == "subprocess" else None,
        )
        if self.backend == "subprocess":
            env = {"PYTHONUNBUFFERED": "1", **dict(launch.env or {})}
            client = PipesSubprocessClient(
                env=env, cwd=str(Path(__file__).resolve().parent.parent), forward_termination=True
            )
            return client.run(context=context, command=command, extras=dict(extras))
        from dagster_k8s import PipesK8sClient
        from dagster_k8s.client import DagsterKubernetesClient
        from dagster_k8s.utils import detect_current_namespace

        client = PipesK8sClient()
        client._load_k8s_config()
        namespace = self.namespace or detect_current_namespace(None) or "default"

        def run_state(run_id: str) -> str | None:
            run = context.instance.get_run_by_id(run_id)
            return run.status.value if run else None

        clear_previous_training_pods(
            DagsterKubernetesClient.production_client().core_api,
            namespace,
            launch.work_dir,
            context.run_id,
            run_state,
            context.log.info,
        )
        return client.run(
            context=context,
            image=self.image,
            command=command,
            namespace=namespace,
            extras=dict(extras),
            base_pod_meta=k8s_pod_meta(launch.work_dir, context.run_id),
            env={
                "PYTHONUNBUFFERED": "1",
                "KEXAONE_HOME": os.environ.get("KEXAONE_HOME", self.mount_path),
                # the trainer pod resolves the same preset as this step (the subprocess trainer inherits it)
                **{k: os.environ[k] for k in (PRESET_OVERRIDES_ENV_VAR,) if os.environ.get(k)},
                **dict(launch.env or {}),
            },
            base_pod_spec=k8s_pod_spec(
                preset,
                nproc_per_node=nproc,
                pvc_claim=self.pvc_claim,
                mount_path=self.mount_path,
                service_account=self.service_account,
            ),
        )


__all__ = [
    "BACKENDS",
    "TRAINER_ENV_VAR",
    "StageLaunch",
    "gpu_placement",
    "trainer_backend_from_env",
    "TrainerBusyError",
    "TrainerConfigError",
    "TrainerLauncher",
    "clear_previous_training_pods",
    "guarded_command",
    "k8s_pod_meta",
    "k8s_pod_spec",
    "torchrun_command",
]
