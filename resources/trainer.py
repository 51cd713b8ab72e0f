"""TrainerLauncher: runs one training stage (``model.train``) outside the Dagster process, through Pipes.

* ``backend="subprocess"`` (default): ``torchrun --standalone --nproc-per-node N -m model.train ...`` on this
  machine via ``PipesSubprocessClient``, started through ``model.launch_guard``: the trainer gets SIGTERM
  when the launching step process dies (even by SIGKILL) and holds its work dir's lock. Progress lines
  stream into the Dagster log, the child's materialization report comes back, and terminating the run
  sends SIGTERM to torchrun, which stops its workers (``forward_termination``).
* ``backend="k8s"``: one pod per stage via ``dagster_k8s.PipesK8sClient``; the pod runs the same command,
  asks for the preset's GPUs (``compute.gpus_per_training_step``) and node selector, and mounts the
  shared volume that holds artifacts and work directories (``pvc_claim`` at ``mount_path``).

``work_root`` keeps each stage's resumable state (periodic checkpoints, metrics, dataset index caches)
at ``<work_root>/<asset>/<artifact version>``: a re-materialization with the same inputs finds it and resumes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dagster import AssetExecutionContext, ConfigurableResource, PipesSubprocessClient

from kexaone_dag.presets import Preset

BACKENDS = ("subprocess", "k8s")


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

    def train_args(self) -> list[str]:
        import json

        args = ["--preset", self.preset_name, "--overrides", json.dumps(dict(self.overrides)), "--stage", self.stage,
                "--data", str(self.data), "--work-dir", str(self.work_dir), "--output", str(self.output),
                "--tensor-parallel", str(self.tensor_parallel), "--expert-parallel", str(self.expert_parallel),
                "--context-parallel", str(self.context_parallel)]
        if self.init_from is not None:
            args += ["--init-from", str(self.init_from)]
        if self.niah_cases is not None:
            args += ["--niah-cases", str(self.niah_cases), "--tokenizer", str(self.tokenizer)]
        return args


def torchrun_command(nproc_per_node: int, train_args: list[str], python: str = sys.executable) -> list[str]:
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
            "-m", "model.train", *train_args]


def guarded_command(command: list[str], work_dir: Path, *, python: str = sys.executable,
                    parent_pid: int | None = None) -> list[str]:
    """``command`` behind ``model.launch_guard``: it dies with the process that launched it and holds the
    work dir's lock (one trainer per work dir), then execs ``command``."""
    guard = [python, "-m", "model.launch_guard", "--work-dir", str(work_dir)]
    if parent_pid is not None:
        guard += ["--parent-pid", str(parent_pid)]
    return [*guard, "--", *command]


def k8s_pod_spec(preset: Preset, *, nproc_per_node: int, pvc_claim: str | None, mount_path: str,
                 service_account: str | None = None) -> dict[str, Any]:
    """The base pod spec of a training pod: GPUs, CPU/memory, node selector, GPU toleration, shared volume."""
    c = preset.compute
    resources: dict[str, Any] = {"requests": {"cpu": c.cpu_request, "memory": c.memory_request},
                                 "limits": {"memory": c.memory_request}}
    if c.gpus_per_training_step > 0:
        resources["requests"]["nvidia.com/gpu"] = str(nproc_per_node)
        resources["limits"]["nvidia.com/gpu"] = str(nproc_per_node)
    container: dict[str, Any] = {"resources": resources,
                                 # NCCL and dataloaders need more shared memory than the default 64 MiB
                                 "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}]}
    volumes: list[dict[str, Any]] = [{"name": "dshm", "empty_dir": {"medium": "Memory"}}]
    if pvc_claim:
        container["volume_mounts"].append({"name": "kexaone-data", "mount_path": mount_path})
        volumes.append({"name": "kexaone-data", "persistent_volume_claim": {"claim_name": pvc_claim}})
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes, "restart_policy": "Never"}
    if c.gpu_node_selector:
        spec["node_selector"] = dict(c.gpu_node_selector)
    if c.gpus_per_training_step > 0:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if service_account:
        spec["service_account_name"] = service_account
    return spec


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

    def check_config(self) -> None:
        if self.backend not in BACKENDS:
            raise TrainerConfigError(f"trainer backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.backend == "k8s" and not self.image:
            raise TrainerConfigError("trainer backend 'k8s' needs an image (KEXAONE_TRAINER_IMAGE)")

    def layout(self, preset: Preset) -> tuple[int, int, int]:
        """(processes, TP, EP) of one stage."""
        c = preset.compute
        nproc = self.nproc_per_node or max(1, c.gpus_per_training_step)
        return nproc, self.tensor_parallel or c.tensor_parallel, self.expert_parallel or c.expert_parallel

    def work_dir(self, asset: str, version: str) -> Path:
        return Path(self.work_root) / asset / version

    def launch(self, context: AssetExecutionContext, preset: Preset, launch: StageLaunch, *,
               extras: Mapping[str, Any]):
        """Run the stage to completion; returns the Pipes invocation (its materialization report)."""
        self.check_config()
        nproc, _, _ = self.layout(preset)
        python = sys.executable if self.backend == "subprocess" else "python"
        command = guarded_command(torchrun_command(nproc, launch.train_args(), python=python), launch.work_dir,
                                  python=python, parent_pid=os.getpid() if self.backend == "subprocess" else None)
        if self.backend == "subprocess":
            env = {"PYTHONUNBUFFERED": "1"}
            client = PipesSubprocessClient(env=env, cwd=str(Path(__file__).resolve().parent.parent),
                                           forward_termination=True)
            return client.run(context=context, command=command, extras=dict(extras))
        from dagster_k8s import PipesK8sClient

        return PipesK8sClient().run(
            context=context, image=self.image, command=command, namespace=self.namespace, extras=dict(extras),
            env={"PYTHONUNBUFFERED": "1", "KEXAONE_HOME": os.environ.get("KEXAONE_HOME", self.mount_path)},
            base_pod_spec=k8s_pod_spec(preset, nproc_per_node=nproc, pvc_claim=self.pvc_claim,
                                       mount_path=self.mount_path, service_account=self.service_account))


__all__ = ["BACKENDS", "StageLaunch", "TrainerConfigError", "TrainerLauncher", "guarded_command", "k8s_pod_spec",
           "torchrun_command"]
