"""Executors and GPU step placement.

Locally the in-process executor runs a run's steps one after another in its run worker, as ``kexaone demo``
does: a click on Materialize then pays for one process start, not one per step (2.1x faster for a
sub-second step, bench/bench_step_overhead.py); training still runs in its own torchrun processes and the
corpus pipelines in spawned workers. ``KEXAONE_EXECUTOR=multiprocess`` gives each step its own subprocess
(two at a time). In production ``KEXAONE_EXECUTOR=k8s``
selects ``dagster_k8s.k8s_job_executor`` configured from ``deploy/k8s/executor.yaml``; every training
step then runs in its own pod and joins the ``gpu`` concurrency pool, so the instance's pool limit
serialises GPU steps (``dagster instance concurrency set gpu <N>``). The GPUs (the preset's ``compute``
section) are requested by exactly one pod: the step pod when the trainer runs inside it
(``KEXAONE_TRAINER=subprocess``), the Pipes trainer pod with ``KEXAONE_TRAINER=k8s``.

Tags are fixed when the code location loads, so GPU requests follow the preset chosen by
``KEXAONE_PRESET`` for that deployment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from config import ComputeArgs, Preset
from kexaone_dag.run_health import watching_pools
from resources.trainer import gpu_placement, trainer_backend_from_env

GPU_POOL = "gpu"
EXECUTOR_ENV_VAR = "KEXAONE_EXECUTOR"
K8S_EXECUTOR_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "executor.yaml"
EXECUTORS = ("multiprocess", "in_process", "k8s")


class ExecutorConfigError(ValueError):
    pass


def gpu_step_tags(compute: ComputeArgs) -> dict[str, Any]:
    """``dagster-k8s/config`` for a step that computes on GPUs itself: GPUs, CPU/memory, node selector,
    GPU toleration (``resources.trainer.gpu_placement``)."""
    resources, pod_spec = gpu_placement(compute, compute.gpus_per_training_step)
    config: dict[str, Any] = {"container_config": {"resources": resources}}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return {"dagster-k8s/config": config}


def training_asset_kwargs(preset: Preset, *, launches_trainer: bool = True) -> dict[str, Any]:
    """Decorator arguments of every GPU asset: the ``gpu`` pool, and GPU requests on the pod that holds the
    GPUs. A training asset with ``KEXAONE_TRAINER`` ``k8s``, ``k8s-multinode`` or ``slurm`` only launches the
    trainer's own GPU pod(s) or job and waits for it, so its step pod asks for none: only the trainer holds a
    stage's GPUs. A step that computes itself
    (``launches_trainer=False``, e.g. evaluation) always carries them."""
    on_step = not (launches_trainer and trainer_backend_from_env() in ("k8s", "k8s-multinode", "slurm"))
    return {"op_tags": gpu_step_tags(preset.compute) if on_step else {}, "pool": GPU_POOL, "kinds": {"pytorch"}}


def load_k8s_executor_config(path: Path = K8S_EXECUTOR_CONFIG) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)["execution"]["config"]


def executor_for_env(name: str | None = None) -> ExecutorDefinition:
    """The run's executor; every one reports a step's wait for a pool slot at INFO, naming the holder
    (``run_health.watching_pools``)."""
    name = name or os.environ.get(EXECUTOR_ENV_VAR) or "in_process"
    if name == "multiprocess":
        return watching_pools(multiprocess_executor.configured({"max_concurrent": 2}, name="multiprocess"))
    if name == "in_process":
        return watching_pools(in_process_executor)
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return watching_pools(k8s_job_executor.configured(load_k8s_executor_config(), name="k8s"))
    raise ExecutorConfigError(f"{EXECUTOR_ENV_VAR}={name!r} is not one of {', '.join(EXECUTORS)}")
