"""Resources per environment, chosen by environment variables (never by code edits).

Embedded default (no variables set): artifacts in ``.kexaone/artifacts``, warehouse
``.kexaone/warehouse.duckdb``, the demo corpus shipped in ``corpus/demo_data``.

Every variable, its default and its effect: the table in README.md ("Configuration"), which
``tests/unit/test_docs.py`` checks against the code both ways.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import EnvVar

from kexaone_dag.config import PresetResource
from kexaone_dag.executors import ExecutorConfigError
from resources.artifact_store import ArtifactStore, ArtifactStoreError
from resources.corpus_pipeline import CorpusPipeline
from resources.corpus_sources import DEMO_CORPUS_ROOT, CorpusSources
from resources.teacher import TeacherLLM
from resources.trainer import TrainerConfigError, TrainerLauncher, trainer_backend_from_env
from resources.warehouse import Warehouse
from synthetic.teacher import TeacherError

S3_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def kexaone_home() -> Path:
    return Path(os.environ.get("KEXAONE_HOME") or Path.cwd() / ".kexaone").resolve()


def _s3_settings(uri: str, what: str) -> dict[str, Any]:
    """EnvVar-backed credentials for an s3:// location; a clear error if they are not set."""
    missing = [v for v in S3_CREDENTIAL_VARS if not os.environ.get(v)]
    if missing:
        raise ArtifactStoreError(
            f"{what} {uri} is on S3 but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set in the environment"
        )
    settings: dict[str, Any] = {
        "access_key_id": EnvVar("AWS_ACCESS_KEY_ID"),
        "secret_access_key": EnvVar("AWS_SECRET_ACCESS_KEY"),
    }
    if os.environ.get("KEXAONE_S3_ENDPOINT_URL"):
        settings["endpoint_url"] = EnvVar("KEXAONE_S3_ENDPOINT_URL")
    return settings


def build_resources() -> dict[str, Any]:
    home = kexaone_home()
    artifact_root = os.environ.get("KEXAONE_ARTIFACT_ROOT") or str(home / "artifacts")
    corpus_root = os.environ.get("KEXAONE_CORPUS_ROOT") or DEMO_CORPUS_ROOT
    store_settings = _s3_settings(artifact_root, "artifact store") if artifact_root.startswith("s3://") else {}
    corpus_settings = _s3_settings(corpus_root, "corpus root") if corpus_root.startswith("s3://") else {}
    return {
        "preset": PresetResource(),
        "artifact_store": ArtifactStore(root=artifact_root, **store_settings),
        "warehouse": Warehouse(path=os.environ.get("KEXAONE_WAREHOUSE") or str(home / "warehouse.duckdb")),
        "corpus_sources": CorpusSources(root=corpus_root, **corpus_settings),
        "corpus_pipeline": corpus_pipeline_from_env(),
        "teacher": teacher_from_env(home),
        "trainer": trainer_from_env(home),
    }


def trainer_from_env(home: Path) -> TrainerLauncher:
    """Local torchrun by default; ``KEXAONE_TRAINER=k8s`` launches a GPU pod per training stage,
    ``KEXAONE_TRAINER=slurm`` an ``sbatch`` job per stage (``KEXAONE_TRAIN_NODES`` nodes)."""
    nproc = os.environ.get("KEXAONE_TRAIN_NPROC")
    nodes = os.environ.get("KEXAONE_TRAIN_NODES")
    if nodes and (not nodes.isdigit() or int(nodes) < 1):
        raise TrainerConfigError(f"KEXAONE_TRAIN_NODES={nodes!r} is not a positive integer")
    expert_parallel = os.environ.get("KEXAONE_TRAIN_EXPERT_PARALLEL")
    launcher = TrainerLauncher(
        backend=trainer_backend_from_env(),
        work_root=os.environ.get("KEXAONE_TRAIN_WORK_ROOT") or str(home / "training"),
        nproc_per_node=int(nproc) if nproc else None,
        expert_parallel=int(expert_parallel) if expert_parallel else None,
        image=os.environ.get("KEXAONE_TRAINER_IMAGE"),
        namespace=os.environ.get("KEXAONE_TRAINER_NAMESPACE"),
        pvc_claim=os.environ.get("KEXAONE_TRAINER_PVC"),
        rollout_base_url=os.environ.get("KEXAONE_ROLLOUT_BASE_URL") or None,
        rollout_model=os.environ.get("KEXAONE_ROLLOUT_MODEL") or "policy",
        nodes=int(nodes) if nodes else None,
        slurm_partition=os.environ.get("KEXAONE_SLURM_PARTITION") or None,
    )
    launcher.check_config()
    return launcher


def teacher_from_env(home: Path) -> TeacherLLM:
    """Offline programmatic teacher unless KEXAONE_TEACHER_BASE_URL names an endpoint; then the model and
    the API key variable must be set (one line otherwise, before anything runs)."""
    base_url = os.environ.get("KEXAONE_TEACHER_BASE_URL")
    if not base_url:
        return TeacherLLM(backend="offline")
    key_var = os.environ.get("KEXAONE_TEACHER_API_KEY_ENV") or "KEXAONE_TEACHER_API_KEY"
    concurrency = os.environ.get("KEXAONE_TEACHER_CONCURRENCY") or "4"
    errs = []
    if not base_url.startswith(("http://", "https://")):
        errs.append("KEXAONE_TEACHER_BASE_URL is not an http(s):// URL")
    if not os.environ.get("KEXAONE_TEACHER_MODEL"):
        errs.append("KEXAONE_TEACHER_MODEL is not set")
    if not os.environ.get(key_var):
        errs.append(f"the API key variable {key_var} is not set")
    if not concurrency.isdigit() or int(concurrency) < 1:
        errs.append(f"KEXAONE_TEACHER_CONCURRENCY={concurrency!r} is not a positive integer")
    if errs:
        raise TeacherError(f"HTTP teacher at {base_url}: " + "; ".join(errs))
    teacher = TeacherLLM(
        backend="http",
        base_url=base_url,
        model=EnvVar("KEXAONE_TEACHER_MODEL"),
        api_key=EnvVar(key_var),
        concurrency=int(concurrency),
        cache_path=os.environ.get("KEXAONE_TEACHER_CACHE") or str(home / "teacher_cache.sqlite"),
    )
    return teacher


def corpus_pipeline_from_env() -> CorpusPipeline:
    """The corpus pipeline executor from KEXAONE_CORPUS_*; a wrong value fails the load with one line."""
    workers = os.environ.get("KEXAONE_CORPUS_WORKERS") or "1"
    if not workers.isdigit():
        raise ExecutorConfigError(f"KEXAONE_CORPUS_WORKERS={workers!r} is not a positive integer")
    resource = CorpusPipeline(
        executor=os.environ.get("KEXAONE_CORPUS_EXECUTOR") or "local",
        workers=int(workers),
        work_dir=os.environ.get("KEXAONE_CORPUS_WORK_DIR") or None,
        slurm_partition=os.environ.get("KEXAONE_SLURM_PARTITION") or None,
    )
    problems = resource.settings().problems()
    if problems:
        raise ExecutorConfigError("; ".join(problems))
    return resource
