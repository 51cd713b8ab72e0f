"""Executors and GPU step placement.

Locally the multiprocess executor runs steps as subprocesses. In production ``KEXAONE_EXECUTOR=k8s``
selects ``dagster_k8s.k8s_job_executor`` configured from ``deploy/k8s/executor.yaml``; every training
step then runs in its own pod whose GPU requests come from ``training_asset_kwargs`` (the preset's
``compute`` section) and which joins the ``gpu`` concurrency pool, so the instance's pool limit
serialises GPU steps (``dagster instance concurrency set gpu <N>``).

Tags are fixed when the code location loads, so GPU requests follow the preset chosen by
``KEXAONE_PRESET`` for that deployment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from kexaone_dag.presets import ComputeArgs, Preset
from kexaone_dag.run_health import watching_pools

GPU_POOL = "gpu"
EXECUTOR_ENV_VAR = "KEXAONE_EXECUTOR"
K8S_EXECUTOR_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "executor.yaml"
EXECUTORS = ("multiprocess", "in_process", "k8s")


class ExecutorConfigError(ValueError):
    pass


def gpu_step_tags(compute: ComputeArgs) -> dict[str, Any]:
    """``dagster-k8s/config`` for one training step: GPUs, CPU/memory, node selector, GPU toleration."""
    gpus = compute.gpus_per_training_step
    resources: dict[str, Any] = {"requests": {"cpu": compute.cpu_request, "memory": compute.memory_request},
                                 "limits": {"memory": compute.memory_request}}
    pod_spec: dict[str, Any] = {}
    if gpus > 0:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if compute.gpu_node_selector:
        pod_spec["node_selector"] = dict(compute.gpu_node_selector)
    config: dict[str, Any] = {"container_config": {"resources": resources}}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return {"dagster-k8s/config": config}


def training_asset_kwargs(preset: Preset) -> dict[str, Any]:
    """Decorator arguments every training-type asset uses: k8s GPU tags + the gpu pool."""
    return {"op_tags": gpu_step_tags(preset.compute), "pool": GPU_POOL, "kinds": {"pytorch"}}


def load_k8s_executor_config(path: Path = K8S_EXECUTOR_CONFIG) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)["execution"]["config"]


def executor_for_env(name: str | None = None) -> ExecutorDefinition:
    """The run's executor; every one reports a step's wait for a pool slot at INFO, naming the holder
    (``run_health.watching_pools``)."""
    name = name or os.environ.get(EXECUTOR_ENV_VAR) or "multiprocess"
    if name == "multiprocess":
        return watching_pools(multiprocess_executor.configured({"max_concurrent": 2}, name="multiprocess"))
    if name == "in_process":
        return watching_pools(in_process_executor)
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return watching_pools(k8s_job_executor.configured(load_k8s_executor_config(), name="k8s"))
    raise ExecutorConfigError(f"{EXECUTOR_ENV_VAR}={name!r} is not one of {', '.join(EXECUTORS)}")
