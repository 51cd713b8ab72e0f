"""The multi-node Kubernetes backend of ``TrainerLauncher`` (``KEXAONE_TRAINER=k8s-multinode``): one Kubeflow
Trainer v2 ``TrainJob`` per training stage, run by the operator on the torch runtime, reporting to Dagster
through Pipes over the shared volume.

Targets Kubeflow Trainer v2.3 (``trainer.kubeflow.org/v1alpha1``, the API of the ``kubeflow-trainer-api`` 2.3
models the tests validate every manifest against) with its stock ``torch-distributed``
``ClusterTrainingRuntime`` installed.

* Manifest (``trainjob_manifest``): ``trainer.numNodes`` = the stage's nodes, ``numProcPerNode`` = processes
  per node, ``resourcesPerNode`` = ``gpu_placement`` of one node's GPUs (the single-pod backend's requests),
  the project image and a ``/bin/sh -c`` command; a ``runtimePatches`` entry adds what the single pod spec
  has: the ``/dev/shm`` memory volume, the shared volume claim at ``mount_path``, the GPU node selector and
  toleration, the service account. The operator's torch plugin gives every node pod ``PET_NNODES``,
  ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK`` (the Job completion index), ``PET_MASTER_ADDR`` (node 0's
  headless-service name) and ``PET_MASTER_PORT``; each pod runs one ``torchrun`` with the stage's
  ``--nnodes`` / ``--nproc-per-node`` that meets the others at node 0 through torchrun's rendezvous on
  ``PET_MASTER_ADDR:PET_MASTER_PORT`` with ``--node-rank $PET_NODE_RANK`` (the operator's convention: the
  static rendezvous, whose store node 0 hosts). Node 0 runs it behind ``model.launch_guard`` (the work dir's
  lock, one trainer per work dir), as the Slurm batch step does.
* Pipes: ``open_pipes_session`` with ``PipesEnvContextInjector`` (the bootstrap variables are in
  ``trainer.env``; every pod gets them, only global rank 0 opens Pipes) and ``PipesFileMessageReader`` on
  ``WORK_DIR/pipes.jsonl`` on the shared volume. The step already needs that volume at the same path (the
  trainer writes the stage's output into the artifact store's staging dir, which the step then commits), so
  this adds no channel and no credentials; the artifact store's S3 would need ``dagster-aws``/``boto3``
  and S3 credentials in every pod, and pod logs would break on a pod restart.
* Wait: poll the TrainJob's ``Complete`` / ``Failed`` conditions; a failure is one ``TrainJobFailedError``
  with the operator's message and the tail of node 0's log.
* Cancel: an interrupt of the step (the run is terminated) or any error while waiting deletes the TrainJob
  (foreground propagation: its JobSet, Jobs and pods go with it). A later launch on the same work dir first
  deletes a TrainJob left by an ended run, an earlier attempt of this step or a finished one (the name is a
  function of the work dir) and waits it out, then resumes from the last periodic checkpoint
  (``model.train`` does that by itself); a TrainJob of another live run is a one-line ``TrainerBusyError``.

Every problem the launcher can see before submitting (no image, no shared volume, a work root, output or
input off the shared volume, a name over Kubernetes' limits, a reserved variable, a manifest the published
schema refuses) is one line before anything reaches the cluster.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dagster import (
    AssetExecutionContext,
    PipesClientCompletedInvocation,
    PipesEnvContextInjector,
    PipesFileMessageReader,
    open_pipes_session,
)

from config import PRESET_OVERRIDES_ENV_VAR, Preset
from resources.trainer import (
    FINISHED_RUN_STATES,
    RUN_ANNOTATION,
    WORK_DIR_ANNOTATION,
    WORK_DIR_LABEL,
    TrainerBusyError,
    TrainerConfigError,
    gpu_placement,
    multi_node_torchrun,
    work_dir_label,
)

if TYPE_CHECKING:
    from resources.trainer import StageLaunch, TrainerLauncher

BACKEND = "k8s-multinode"
OPERATOR = "Kubeflow Trainer v2.3"
GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
API_VERSION = f"{GROUP}/{VERSION}"
RUNTIME = "torch-distributed"  # the ClusterTrainingRuntime Kubeflow Trainer installs
NODE = "node"  # the torch runtime's replicated job and container that the trainer fields and PET_* target
PATCH_MANAGER = "kexaone.dagster/trainer"
MESSAGES_FILE = "pipes.jsonl"
# what the torch plugin sets on the node container; a TrainJob that sets one itself is refused by its webhook
RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
# the CRD's limits: metadata.name an RFC 1035 label (<= 63), trainer.env <= 128 items, trainer.image <= 500
MAX_ENV, MAX_IMAGE = 128, 500
# the pods are ``<name>-node-<job>-<index>``: their hostname (an RFC 1035 label) must fit in 63 characters
POD_SUFFIX = f"-{NODE}-0-0"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(\d+(\.\d*)?|\.\d+)))?$")
DATA_VOLUME, SHM_VOLUME = "kexaone-data", "dshm"
SUCCEEDED, FAILED = "Complete", "Failed"


class K8sTrainingError(RuntimeError):
    """The TrainJob could not be built, submitted or followed."""


class TrainJobFailedError(K8sTrainingError):
    """The TrainJob ended Failed (the operator has stopped its pods; nothing left to delete)."""


@dataclass(frozen=True)
class TrainJobSpec:
    """Everything one stage's TrainJob holds (paths as the pods see them: the shared volume's)."""

    name: str
    namespace: str
    image: str
    nodes: int
    nproc_per_node: int
    resources: Mapping[str, Any]  # the node container's requests / limits (``gpu_placement``)
    work_dir: Path
    module: str
    train_args: list[str]
    run_id: str
    pvc_claim: str
    mount_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: list[Mapping[str, str]] = field(default_factory=list)
    service_account: str | None = None
    runtime: str = RUNTIME
    python: str = "python"


def trainjob_name(work_dir: Path | str) -> str:
    """The TrainJob of one work dir (one at a time): a letter first, 30 characters, pods' hostnames 39."""
    return f"kexaone-train-{work_dir_label(work_dir)[:16]}"


def k8s_escape(text: str) -> str:
    """``text`` as Kubernetes must receive it in a command or env value so that the container sees ``text``:
    the kubelet expands ``$(VAR)`` there and turns ``$$`` into ``$``."""
    return text.replace("$", "$$")


def node_script(spec: TrainJobSpec) -> str:
    """What every node pod runs: torchrun over the operator's PET_* variables; node 0 behind the work dir's lock."""
    rendezvous = ['--node-rank="$PET_NODE_RANK"', '--master-addr="$PET_MASTER_ADDR"']
    rendezvous.append('--master-port="$PET_MASTER_PORT"')
    torchrun, guard = multi_node_torchrun(
        spec.python, spec.nodes, spec.nproc_per_node, rendezvous, spec.module, spec.train_args, spec.work_dir
    )
    return "\n".join(
        [
            "set -eu",
            "export PYTHONUNBUFFERED=1",
            f'echo "kexaone: TrainJob {spec.name}: node $PET_NODE_RANK of {spec.nodes}, '
            f'{spec.nproc_per_node} process(es), rendezvous at $PET_MASTER_ADDR:$PET_MASTER_PORT"',
            # node 0 holds the work dir's lock for as long as its torchrun lives (the guard execs it)
            f'if [ "$PET_NODE_RANK" = 0 ]; then set -- {" ".join(guard)}; else set --; fi',
            'exec "$@" ' + " ".join(torchrun),
            "",
        ]
    )


def trainjob_manifest(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob (camelCase, as the API server takes it) of one stage."""
    mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}, {"name": DATA_VOLUME, "mountPath": spec.mount_path}]
    volumes = [
        # NCCL and dataloaders need more shared memory than the default 64 MiB
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}},
        {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": spec.pvc_claim}},
    ]
    pod: dict[str, Any] = {"containers": [{"name": NODE, "volumeMounts": mounts}], "volumes": volumes}
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    patch = {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {"replicatedJobs": [{"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}]}
            }
        },
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {WORK_DIR_LABEL: work_dir_label(spec.work_dir)},
            "annotations": {RUN_ANNOTATION: spec.run_id, WORK_DIR_ANNOTATION: str(spec.work_dir)},
        },
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": spec.runtime},
            "trainer": {
                "image": spec.image,
                "command": ["/bin/sh", "-c", k8s_escape(node_script(spec))],
                "env": [{"name": k, "value": k8s_escape(v)} for k, v in spec.env.items()],
                "numNodes": spec.nodes,
                "numProcPerNode": spec.nproc_per_node,
                "resourcesPerNode": {k: dict(v) for k, v in spec.resources.items()},
            },
            "runtimePatches": [patch],
        },
    }


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Why the API server (the TrainJob CRD's schema and CEL rules) would refuse ``manifest``, one line each:
    the published ``kubeflow_trainer_api`` models (every field known, every type right: a field the models
    drop on the way back is unknown to the CRD) and the CRD's limits the models do not carry."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    out = []
    try:
        model = TrainerV1alpha1TrainJob.from_dict(dict(manifest))
    except (ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        return [f"the TrainJob does not match the {OPERATOR} schema: {' '.join(first[:3])}"]
    if _without_empty(model.to_dict()) != _without_empty(dict(manifest)):
        out.append(f"the TrainJob has fields the {OPERATOR} schema does not know (or of the wrong shape)")
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        out.append(f"the TrainJob is not {API_VERSION} {KIND}")
    name = str((manifest.get("metadata") or {}).get("name") or "")
    if not DNS_LABEL.match(name) or len(name) > 63:
        out.append(f"TrainJob name {name!r} is not an RFC 1035 label of at most 63 characters")
    elif len(name + POD_SUFFIX) > 63:
        out.append(f"TrainJob name {name!r} is too long: its pods' hostnames {name}{POD_SUFFIX} pass 63 characters")
    for key, value in ((manifest.get("metadata") or {}).get("labels") or {}).items():
        if len(value) > 63:
            out.append(f"label {key}={value!r} passes 63 characters")
    trainer = (manifest.get("spec") or {}).get("trainer") or {}
    if len(trainer.get("env") or []) > MAX_ENV:
        out.append(f"the trainer has {len(trainer['env'])} environment variables; the CRD allows {MAX_ENV}")
    if len(trainer.get("image") or "") > MAX_IMAGE:
        out.append(f"the trainer image name passes {MAX_IMAGE} characters")
    if reserved := sorted({e["name"] for e in trainer.get("env") or []} & set(RESERVED_ENV)):
        out.append(f"the trainer env sets {', '.join(reserved)}, which the torch runtime sets itself")
    for what in ("numNodes", "numProcPerNode"):
        if not isinstance(trainer.get(what), int) or trainer[what] < 1:
            out.append(f"trainer.{what}={trainer.get(what)!r} is not a positive integer")
    for kind, amounts in (trainer.get("resourcesPerNode") or {}).items():
        for resource, amount in (amounts or {}).items():
            if not QUANTITY.match(str(amount)):
                out.append(f"trainer.resourcesPerNode.{kind}.{resource}={amount!r} is not a Kubernetes quantity")
    return out


def _under(path: Path | str | None, root: str) -> bool:
    return path is None or PurePosixPath(os.path.normpath(str(path))).is_relative_to(os.path.normpath(root))


def config_problems(launcher: TrainerLauncher) -> list[str]:
    """What the ``k8s-multinode`` backend needs from the launcher's settings, one line each."""
    out = []
    if not launcher.image:
        out.append(f"trainer backend {BACKEND!r} needs an image (KEXAONE_TRAINER_IMAGE)")
    if not launcher.pvc_claim:
        out.append(
            f"trainer backend {BACKEND!r} needs the shared volume every node pod and the step mount "
            "(KEXAONE_TRAINER_PVC): the work dirs, the stage's output and the Pipes messages are on it"
        )
    elif not DNS1123_SUBDOMAIN.match(launcher.pvc_claim) or len(launcher.pvc_claim) > 253:
        out.append(f"KEXAONE_TRAINER_PVC={launcher.pvc_claim!r} is not a Kubernetes object name")
    if launcher.namespace and (not DNS1123_LABEL.match(launcher.namespace) or len(launcher.namespace) > 63):
        out.append(f"KEXAONE_TRAINER_NAMESPACE={launcher.namespace!r} is not a Kubernetes namespace name")
    if not launcher.mount_path.startswith("/"):
        out.append(f"the shared volume's mount path {launcher.mount_path!r} is not absolute")
    elif not _under(launcher.work_root, launcher.mount_path):
        out.append(
            f"training work root {launcher.work_root} is not on the shared volume mounted at {launcher.mount_path} "
            "(set KEXAONE_TRAIN_WORK_ROOT or KEXAONE_HOME under it)"
        )
    return out


def trainjob_spec(
    launcher: TrainerLauncher, preset: Preset, launch: StageLaunch, *, run_id: str, namespace: str
) -> TrainJobSpec:
    """The stage's TrainJob from the launcher's settings and the preset's layout (without the Pipes variables)."""
    c = preset.compute
    nproc, _, _ = launcher.layout(preset)
    resources, pod = gpu_placement(c, nproc if c.gpus_per_training_step > 0 else 0)
    env = {
        "PYTHONUNBUFFERED": "1",
        "KEXAONE_HOME": os.environ.get("KEXAONE_HOME", launcher.mount_path),
        # the trainer pods resolve the same preset as this step (the subprocess trainer inherits it)
        **{k: os.environ[k] for k in (PRESET_OVERRIDES_ENV_VAR,) if os.environ.get(k)},
        **dict(launch.env or {}),
    }
    return TrainJobSpec(
        name=trainjob_name(launch.work_dir),
        namespace=namespace,
        image=str(launcher.image),
        nodes=launcher.node_count(preset),
        nproc_per_node=nproc,
        resources=resources,
        work_dir=launch.work_dir,
        module=launch.module,
        train_args=launch.train_args(),
        run_id=run_id,
        pvc_claim=str(launcher.pvc_claim),
        mount_path=launcher.mount_path,
        env=env,
        node_selector=dict(pod.get("node_selector") or {}),
        tolerations=list(pod.get("tolerations") or []),
        service_account=launcher.service_account,
    )


def launch_problems(spec: TrainJobSpec, launch: StageLaunch) -> list[str]:
    """Before submitting: every path the pods open is on the shared volume, and the manifest is valid."""
    out = []
    paths = {
        "work dir": launch.work_dir,
        "output": launch.output,
        "data": launch.data,
        "init checkpoint": launch.init_from,
        "NIAH cases": launch.niah_cases,
        "tokenizer": launch.tokenizer,
        "prompts": launch.prompts,
    }
    off = [f"{what} {path}" for what, path in paths.items() if not _under(path, spec.mount_path)]
    if off:
        out.append(
            f"the TrainJob's pods see only the shared volume at {spec.mount_path}, but the stage's {', '.join(off)} "
            "are not on it (an S3 artifact store stages outside it: use a store on the shared volume)"
        )
    return out + manifest_problems(trainjob_manifest(spec))


# -- the cluster: submit, wait, delete --------------------------------------------------------------------


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type"): c for c in ((obj.get("status") or {}).get("conditions") or []) if c.get("type")}


def trainjob_state(obj: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once the TrainJob has ended, else None."""
    conditions = _conditions(obj)
    for state in (SUCCEEDED, FAILED):
        if (conditions.get(state) or {}).get("status") == "True":
            return state
    return None


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


def delete_trainjob(custom_api, name: str, namespace: str, *, grace_period_s: int = 30) -> bool:
    """Delete the TrainJob and everything it owns (foreground); False if it was already gone."""
    from kubernetes.client.exceptions import ApiException

    try:
        custom_api.delete_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            grace_period_seconds=grace_period_s,
            propagation_policy="Foreground",
        )
    except ApiException as exc:
        if _not_found(exc):
            return False
        raise
    return True


def wait_deleted(custom_api, name: str, namespace: str, *, timeout_s: float = 600.0, poll_s: float = 2.0) -> None:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            custom_api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if _not_found(exc):
                return
            raise
        if time.monotonic() > deadline:
            raise TrainerBusyError(
                f"TrainJob {name} was deleted but still exists after {timeout_s:.0f} s; "
                f"check `kubectl -n {namespace} get trainjob {name}`"
            )
        time.sleep(poll_s)


def clear_previous_trainjobs(
    custom_api,
    namespace: str,
    work_dir: Path,
    run_id: str,
    run_state: Callable[[str], str | None],
    log: Callable[[str], None],
    *,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
) -> list[str]:
    """Delete (and wait out) the TrainJobs of ``work_dir`` that have ended or whose Dagster run has ended or is
    this run (an earlier attempt of the step); raise ``TrainerBusyError`` if another live run's is running.
    Returns the names deleted."""
    listed = custom_api.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector=f"{WORK_DIR_LABEL}={work_dir_label(work_dir)}"
    )
    stale = []
    for job in listed.get("items") or []:
        meta = job.get("metadata") or {}
        name, owner = meta.get("name", "?"), (meta.get("annotations") or {}).get(RUN_ANNOTATION, "")
        ended = trainjob_state(job)
        owner_state = run_state(owner) if owner else None
        if ended is None and owner and owner != run_id and owner_state is not None:
            if owner_state not in FINISHED_RUN_STATES:
                raise TrainerBusyError(
                    f"work dir {work_dir} is being trained by TrainJob {name} of run {owner} ({owner_state}); "
                    "wait for that run or terminate it, then materialize again"
                )
        why = f"ended {ended}" if ended else f"of run {owner or 'unknown'} ({owner_state or 'not in this instance'})"
        stale.append((name, why))
    for name, why in stale:
        log(
            f"TrainJob {name} ({why}) holds work dir {work_dir}: deleting it; this run resumes from its last checkpoint"
        )
        delete_trainjob(custom_api, name, namespace)
    for name, _ in stale:
        wait_deleted(custom_api, name, namespace, timeout_s=timeout_s, poll_s=poll_s)
    return [name for name, _ in stale]


def submit(custom_api, manifest: Mapping[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    try:
        custom_api.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, dict(manifest))
    except ApiException as exc:
        if exc.status == 404:
            raise K8sTrainingError(
                f"the cluster has no {API_VERSION} TrainJob API in namespace {meta['namespace']}: install "
                f"{OPERATOR} (its CRDs and the {RUNTIME} runtime)"
            ) from None
        reason = (exc.body or exc.reason or "").strip().replace("\n", " ")[:500]
        raise K8sTrainingError(f"creating TrainJob {meta['name']} failed ({exc.status}): {reason}") from None


def node0_log_tail(core_api, name: str, namespace: str, lines: int = 40) -> str:
    """The last lines of node 0's pod (the JobSet the operator made for the TrainJob has its name)."""
    try:
        pods = core_api.list_namespaced_pod(
            namespace,
            label_selector=f"jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name={NODE},"
            "batch.kubernetes.io/job-completion-index=0",
        ).items
        if not pods:
            return "(no pod of node 0 left)"
        pod = sorted(pods, key=lambda p: p.metadata.creation_timestamp or 0)[-1]
        return core_api.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=lines) or "(no output)"
    except Exception as exc:  # the log is a courtesy of the error, never its cause
        return f"(node 0's log could not be read: {exc})"


def wait(
    custom_api,
    core_api,
    name: str,
    namespace: str,
    log: Callable[[str], None],
    *,
    poll_s: float = 5.0,
    max_errors: int = 10,
) -> None:
    """Until the TrainJob ends, logging its condition changes; raise ``TrainJobFailedError`` unless Complete."""
    from kubernetes.client.exceptions import ApiException

    seen: dict[str, str] = {}
    errors = 0
    while True:
        try:
            job = custom_api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            errors = 0
        except ApiException as exc:
            if _not_found(exc):
                raise K8sTrainingError(f"TrainJob {name} was deleted while this step waited for it") from None
            errors += 1
            if errors >= max_errors:
                raise K8sTrainingError(f"lost track of TrainJob {name}: {exc.status} {exc.reason}") from None
            time.sleep(poll_s)
            continue
        for kind, cond in _conditions(job).items():
            line = f"{cond.get('status')}: {cond.get('reason', '')} {cond.get('message', '')}".strip()
            if seen.get(kind) != line:
                seen[kind] = line
                log(f"TrainJob {name} {kind}={line}")
        state = trainjob_state(job)
        if state == SUCCEEDED:
            return
        if state == FAILED:
            message = (_conditions(job)[FAILED].get("message") or "").strip()
            tail = node0_log_tail(core_api, name, namespace)
            raise TrainJobFailedError(f"TrainJob {name} failed: {message}; last lines of node 0:\n{tail}")
        time.sleep(poll_s)


def kubernetes_apis():
    """(CustomObjectsApi, CoreV1Api) from the in-cluster config, else the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def run_trainjob_stage(
    context: AssetExecutionContext,
    launcher: TrainerLauncher,
    preset: Preset,
    launch: StageLaunch,
    *,
    extras: Mapping[str, Any],
    apis: tuple[Any, Any] | None = None,
    poll_s: float = 5.0,
) -> PipesClientCompletedInvocation:
    """Submit the stage's TrainJob, wait for it inside a Pipes session, delete it if the step is interrupted."""
    from dagster_k8s.utils import detect_current_namespace

    namespace = launcher.namespace or detect_current_namespace(None) or "default"
    spec = trainjob_spec(launcher, preset, launch, run_id=context.run.run_id, namespace=namespace)
    if problems := launch_problems(spec, launch):
        raise TrainerConfigError(f"stage {launch.stage} cannot launch as a TrainJob: {'; '.join(problems)}")
    custom_api, core_api = apis or kubernetes_apis()

    def run_state(run_id: str) -> str | None:
        run = context.instance.get_run_by_id(run_id)
        return run.status.value if run else None

    clear_previous_trainjobs(custom_api, namespace, launch.work_dir, context.run.run_id, run_state, context.log.info)
    launch.work_dir.mkdir(parents=True, exist_ok=True)
    reader = PipesFileMessageReader(str(launch.work_dir / MESSAGES_FILE))
    with open_pipes_session(
        context=context, context_injector=PipesEnvContextInjector(), message_reader=reader, extras=dict(extras)
    ) as session:
        spec = replace(spec, env={**spec.env, **session.get_bootstrap_env_vars()})
        manifest = trainjob_manifest(spec)
        if problems := manifest_problems(manifest):
            raise TrainerConfigError(f"stage {launch.stage} cannot launch as a TrainJob: {'; '.join(problems)}")
        submit(custom_api, manifest)
        context.log.info(
            f"TrainJob {spec.name} submitted in {namespace} ({OPERATOR}, runtime {spec.runtime}): {spec.nodes} "
            f"node(s) x {spec.nproc_per_node} process(es); `kubectl -n {namespace} get trainjob {spec.name}`"
        )
        try:
            wait(custom_api, core_api, spec.name, namespace, context.log.info, poll_s=poll_s)
        except TrainJobFailedError:
            raise  # kept for `kubectl describe`; the next launch on this work dir deletes it
        except BaseException:  # the run was terminated (interrupt) or waiting failed: nobody watches the job
            try:
                delete_trainjob(custom_api, spec.name, namespace)
                context.log.warning(f"TrainJob {spec.name} deleted (its pods stop with a 30 s grace period)")
            except Exception as exc:
                context.log.warning(
                    f"could not delete TrainJob {spec.name} ({exc}); run `kubectl -n {namespace} delete trainjob "
                    f"{spec.name}`"
                )
            raise
    return PipesClientCompletedInvocation(session, metadata={"trainjob": spec.name, "namespace": namespace})


__all__ = [
    "BACKEND",
    "K8sTrainingError",
    "OPERATOR",
    "TrainJobFailedError",
    "TrainJobSpec",
    "clear_previous_trainjobs",
    "config_problems",
    "delete_trainjob",
    "k8s_escape",
    "launch_problems",
    "manifest_problems",
    "node_script",
    "run_trainjob_stage",
    "submit",
    "trainjob_manifest",
    "trainjob_name",
    "trainjob_spec",
    "trainjob_state",
    "wait",
]
