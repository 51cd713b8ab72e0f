"""Which datatrove executor runs the corpus pipelines, and running a chain of stages to completion.

* ``local`` (default): ``workers`` tasks at a time on this machine in a pool of *spawned* worker
  processes (``SpawnPoolPipelineExecutor``); with ``workers=1`` the tasks run one after the other in this
  process (``SequentialPipelineExecutor``). Stages run one after the other. Nothing is ever forked: the
  caller is usually a Dagster step, a process with live threads (gRPC, DuckDB, torch's pool), and a child
  forked from it can inherit a lock another thread held and wait on it forever.
* ``slurm``: ``SlurmPipelineExecutor``; each stage is a job array that depends on the previous one
  (``depends=``), all submitted at once with ``sbatch``. The asset then waits, polling the stages'
  ``completions/`` folders, and fails if the Slurm jobs disappear from ``squeue`` before finishing. The
  work folder must be on storage the compute nodes see (``work_dir``). Jobs are named
  ``<job_prefix>-<stage>``; when jobs of this prefix (an earlier attempt at the same artifact version,
  whose step was killed) are still queued or running, they are adopted: the run waits for them, then
  submits only the tasks that have no completion marker.
* ``ray``: ``RayPipelineExecutor`` on the Ray cluster the process is connected to (``ray.init`` or
  ``RAY_ADDRESS``); stages run one after the other. ``ray`` is a pinned dependency; an environment
  without it gets a clear one-line error.

Settings come from the ``corpus_pipeline`` resource (``resources/corpus_pipeline.py``); the number of tasks
per stage comes from the preset, because it shapes the output (one file per task).
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import shutil
import subprocess
import sys
import time
from abc import abstractmethod
from copy import deepcopy
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import multiprocess
from datatrove.executor.base import PipelineExecutor
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.executor.ray import RayPipelineExecutor
from datatrove.executor.slurm import SlurmPipelineExecutor
from datatrove.utils.logging import logger, setup_default_logger
from datatrove.utils.stats import PipelineStats

EXECUTOR_KINDS = ("local", "slurm", "ray")


class CorpusExecutorError(RuntimeError):
    """The corpus executor is misconfigured or a stage did not finish; one line naming the problem."""


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"
    workers: int = 1  # tasks running at once (local pool size, Slurm array throttle, Ray concurrency)
    work_dir: str | None = None  # scratch for signatures and logs; shared storage for slurm/ray
    slurm_partition: str | None = None
    slurm_time: str = "24:00:00"
    slurm_cpus_per_task: int = 1
    slurm_mem_per_cpu_gb: int = 2
    slurm_qos: str | None = None
    slurm_venv_path: str | None = None  # sourced by the job script (default: this interpreter's venv)
    slurm_sbatch_args: dict[str, Any] = field(default_factory=dict)
    ray_cpus_per_task: int = 1
    ray_mem_per_cpu_gb: float = 2.0
    poll_interval_s: float = 30.0
    timeout_s: float = 7 * 24 * 3600.0

    def problems(self) -> list[str]:
        errs = []
        if self.kind not in EXECUTOR_KINDS:
            errs.append(f"corpus executor {self.kind!r} is not one of {', '.join(EXECUTOR_KINDS)}")
        if self.workers < 1:
            errs.append(f"corpus executor workers must be >= 1 (got {self.workers})")
        if self.kind == "slurm":
            if not self.slurm_partition:
                errs.append("corpus executor 'slurm' needs slurm_partition")
            if not self.work_dir:
                errs.append("corpus executor 'slurm' needs work_dir on storage the compute nodes share")
        if self.kind == "ray":
            if importlib.util.find_spec("ray") is None:
                errs.append(
                    "corpus executor 'ray' needs the ray package (pip install 'ray[default]'), "
                    "which is not installed in this environment"
                )
            if not self.work_dir:
                errs.append("corpus executor 'ray' needs work_dir on storage the Ray workers share")
        return errs

    def validate(self) -> "ExecutorSettings":
        errs = self.problems()
        if errs:
            raise CorpusExecutorError("; ".join(errs))
        return self


@dataclass
class Stage:
    """One datatrove pipeline run: ``tasks`` tasks over ``pipeline``, logging to ``logging_dir``."""

    name: str
    pipeline: list[Any]
    tasks: int
    logging_dir: str


class _ResumableLocalExecutor(LocalPipelineExecutor):
    """The part of datatrove's ``LocalPipelineExecutor.run`` both local executors keep: run the dependency,
    skip completed tasks (datatrove's completion markers), merge and save the stats. ``_run_ranks`` says
    where the tasks run."""

    @abstractmethod
    def _run_ranks(self, ranks: list[int]) -> list[PipelineStats]:
        """Run these tasks; one PipelineStats per task."""

    def run(self):
        if self.depends and not self.depends._launched:
            self.depends.run()
        self._launched = True
        ranks = self.get_incomplete_ranks(range(self.local_rank_offset, self.local_rank_offset + self.local_tasks))
        if not ranks:
            return PipelineStats()
        self.save_executor_as_json()
        merged = sum(self._run_ranks(ranks), start=PipelineStats())
        with self.logging_dir.open("stats.json", "wt") as statsfile:
            merged.save_to_disk(statsfile)
        return merged


class SequentialPipelineExecutor(_ResumableLocalExecutor):
    """``LocalPipelineExecutor`` with one worker, minus its ``multiprocess.Manager``: that helper process
    only hands out local ranks, and forking it from a multi-threaded process (a Dagster step) is unsafe.
    Tasks run one after the other in this process through datatrove's own ``_run_for_rank``."""

    def __init__(
        self,
        pipeline: list[Any],
        tasks: int = 1,
        logging_dir: str | None = None,
        depends: LocalPipelineExecutor | None = None,
    ):
        super().__init__(pipeline, tasks=tasks, workers=1, logging_dir=logging_dir, depends=depends)

    def _run_ranks(self, ranks: list[int]) -> list[PipelineStats]:
        pipeline, stats = self.pipeline, []
        try:
            for rank in ranks:
                self.pipeline = deepcopy(pipeline)  # a fresh pipeline (and stats) per task, as datatrove does
                stats.append(self._run_for_rank(rank))
        finally:
            self.pipeline = pipeline
        return stats


# The one start method for corpus worker processes: a fresh interpreter per worker, never a fork.
START_METHOD = "spawn"


class SpawnPoolPipelineExecutor(_ResumableLocalExecutor):
    """``LocalPipelineExecutor`` whose helper processes are all spawned.

    datatrove's own ``run`` starts a ``multiprocess.Manager`` (it hands out local ranks) with the platform
    default, which is ``fork`` on Linux, and its pool with ``forkserver``. Forking the manager from a
    process with threads is what deadlocked: the child inherits a lock (logging, malloc, an import lock)
    that a thread of the parent held at the moment of the fork, and waits on it forever. Here the manager
    and the pool come from one ``spawn`` context; tasks are still resumable through datatrove's completion
    markers, and ``_launch_run_for_rank`` is datatrove's own.
    """

    def __init__(
        self,
        pipeline: list[Any],
        tasks: int,
        workers: int,
        logging_dir: str | None = None,
        depends: LocalPipelineExecutor | None = None,
    ):
        super().__init__(
            pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, depends=depends, start_method=START_METHOD
        )

    def _run_ranks(self, ranks: list[int]) -> list[PipelineStats]:
        ctx = multiprocess.get_context(START_METHOD)
        with ctx.Manager() as manager:
            ranks_q = manager.Queue()
            for local_rank in range(self.workers):
                ranks_q.put(local_rank)
            completed, lock = manager.Value("i", self.local_tasks - len(ranks)), manager.Lock()
            pool = ctx.Pool(min(self.workers, len(ranks)))
            finished = False
            try:
                stats = list(
                    pool.imap_unordered(
                        partial(self._launch_run_for_rank, ranks_q=ranks_q, completed=completed, completed_lock=lock),
                        ranks,
                    )
                )
                finished = True
            finally:
                stop_pool(pool, graceful=finished)
        logger.success(sum(stats, start=PipelineStats()).get_repr(f"All {self.local_tasks} tasks"))
        return stats


POOL_EXIT_S = 30.0  # a finished pool's workers exit on its sentinel in well under a second


def stop_pool(pool: Any, *, graceful: bool, exit_s: float = POOL_EXIT_S) -> None:
    """Stop a ``multiprocess`` pool without ever waiting on a worker forever.

    ``with Pool()`` ends in ``terminate()``: SIGTERM to every worker, then an unbounded ``join``; on CI a worker
    once outlived its SIGTERM and the step hung there (AMD EPYC, 2 cores). Here a finished pool is
    closed (each worker exits on the pool's sentinel, no signal involved) and a failed one terminated; a worker
    still alive after ``exit_s`` is SIGKILLed (which nothing can ignore), with a warning, and reaped."""
    workers = list(pool._pool)  # multiprocess.Pool's worker processes (no public accessor)
    if graceful:
        pool.close()
    else:
        for worker in workers:
            if worker.exitcode is None:
                worker.terminate()
    deadline = time.monotonic() + exit_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.exitcode is None:
            logger.warning(f"corpus pool: worker pid {worker.pid} alive {exit_s:.0f} s after the pool ended; killed")
            worker.kill()
            worker.join(10)
    if graceful:
        pool.join()
    else:
        pool.terminate()


def make_executor(
    settings: ExecutorSettings, stage: Stage, depends: PipelineExecutor | None = None, job_prefix: str = "kexaone"
) -> PipelineExecutor:
    """The datatrove executor for one stage (constructed only: nothing runs or is submitted)."""
    settings.validate()
    workers = min(settings.workers, stage.tasks)
    if settings.kind == "local":
        if workers == 1:
            return SequentialPipelineExecutor(
                stage.pipeline, tasks=stage.tasks, logging_dir=stage.logging_dir, depends=depends
            )
        return SpawnPoolPipelineExecutor(
            stage.pipeline, tasks=stage.tasks, workers=workers, logging_dir=stage.logging_dir, depends=depends
        )
    if settings.kind == "slurm":
        venv = settings.slurm_venv_path or str(Path(sys.prefix) / "bin" / "activate")
        return SlurmPipelineExecutor(
            stage.pipeline,
            tasks=stage.tasks,
            workers=settings.workers if settings.workers > 1 else -1,
            time=settings.slurm_time,
            partition=settings.slurm_partition,
            cpus_per_task=settings.slurm_cpus_per_task,
            mem_per_cpu_gb=settings.slurm_mem_per_cpu_gb,
            qos=settings.slurm_qos or "",
            job_name=f"{job_prefix}-{stage.name}",
            venv_path=venv,
            sbatch_args=dict(settings.slurm_sbatch_args),
            logging_dir=stage.logging_dir,
            depends=depends,
            mail_type="NONE",
        )
    return RayPipelineExecutor(
        stage.pipeline,
        tasks=stage.tasks,
        workers=settings.workers,
        logging_dir=stage.logging_dir,
        depends=depends,
        cpus_per_task=settings.ray_cpus_per_task,
        mem_per_cpu_gb=settings.ray_mem_per_cpu_gb,
    )


def run_stages(
    settings: ExecutorSettings, stages: Sequence[Stage], log: Callable[[str], None] = print, job_prefix: str = "kexaone"
) -> None:
    """Run the stages in order and return once the last one has finished (or raise)."""
    settings.validate()
    if settings.kind == "slurm":
        _run_on_slurm(settings, stages, log, job_prefix)
        return
    for stage in stages:
        executor = make_executor(settings, stage, job_prefix=job_prefix)
        started = time.monotonic()
        with _datatrove_console_to(Path(stage.logging_dir) / "console.log"):
            executor.run()
        incomplete = executor.get_incomplete_ranks(skip_completed=True)
        if incomplete:
            raise CorpusExecutorError(
                f"stage {stage.name}: tasks {incomplete[:10]} did not complete (logs: {stage.logging_dir}/logs)"
            )
        log(f"stage {stage.name}: {stage.tasks} tasks done in {time.monotonic() - started:.1f}s")


NEVER_RUNS = "DependencyNeverSatisfied"  # squeue's reason for a job whose dependency failed


def queued_jobs(job_prefix: str) -> dict[str, str]:
    """This user's Slurm jobs still queued or running whose name is ``<job_prefix>-...``: id -> pending
    reason (``None`` for a running job)."""
    listed = subprocess.run(
        ["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%j|%T|%r"], capture_output=True, text=True, timeout=60
    )
    if listed.returncode != 0:
        raise CorpusExecutorError(f"squeue failed: {listed.stderr.strip() or listed.returncode}")
    jobs = {}
    for line in listed.stdout.splitlines():
        job, name, state, reason = (line.split("|") + ["", "", ""])[:4]
        if name.startswith(f"{job_prefix}-"):
            jobs[job] = reason if state == "PENDING" else None
    return jobs


def _adopt_earlier_jobs(settings: ExecutorSettings, log: Callable[[str], None], job_prefix: str) -> None:
    """Wait for the jobs an earlier attempt (same prefix) left queued or running: their finished tasks are
    kept (completion markers), and no task ever runs twice at once. A job whose dependency failed would wait
    forever on a cluster without ``kill_invalid_depend``: it is cancelled (its tasks are submitted again)."""
    earlier = queued_jobs(job_prefix)
    if not earlier:
        return
    log(
        f"Slurm jobs {', '.join(sorted(earlier))} of an earlier attempt ({job_prefix}) are still queued or "
        "running: waiting for them, then submitting only the tasks they did not complete"
    )
    deadline = time.monotonic() + settings.timeout_s
    while jobs := queued_jobs(job_prefix):
        never = sorted(job for job, reason in jobs.items() if reason == NEVER_RUNS)
        if never:
            log(f"cancelling Slurm jobs {', '.join(never)}: their dependency failed, so they would never run")
            subprocess.run(["scancel", *never], capture_output=True, timeout=60)
        if time.monotonic() > deadline:
            raise CorpusExecutorError(
                f"Slurm jobs {', '.join(sorted(jobs))} ({job_prefix}) still queued after "
                f"{settings.timeout_s:.0f}s; scancel them to start over"
            )
        time.sleep(settings.poll_interval_s)
    log(f"earlier Slurm jobs of {job_prefix} have ended")


def _run_on_slurm(
    settings: ExecutorSettings, stages: Sequence[Stage], log: Callable[[str], None], job_prefix: str
) -> None:
    if shutil.which("sbatch") is None:
        raise CorpusExecutorError("corpus executor 'slurm': sbatch is not on PATH on this machine")
    _adopt_earlier_jobs(settings, log, job_prefix)
    executors: list[SlurmPipelineExecutor] = []
    previous = None
    for stage in stages:
        previous = make_executor(settings, stage, depends=previous, job_prefix=job_prefix)
        executors.append(previous)
    executors[-1].launch_job()  # submits every stage, each depending on the one before
    job_ids = [str(e.job_id) for e in executors if e.job_id not in (None, -1)]
    if not job_ids:
        log("nothing to submit to Slurm: every task of every stage has completed")
    else:
        log(f"submitted Slurm jobs {', '.join(job_ids)}")
    deadline = time.monotonic() + settings.timeout_s
    for stage, executor in zip(stages, executors):
        while executor.get_incomplete_ranks(skip_completed=True):
            if time.monotonic() > deadline:
                raise CorpusExecutorError(f"stage {stage.name}: not finished after {settings.timeout_s:.0f}s")
            alive = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True)
            if alive.returncode == 0 and not alive.stdout.strip():
                raise CorpusExecutorError(
                    f"stage {stage.name}: Slurm jobs {', '.join(job_ids)} ended with "
                    f"incomplete tasks (logs: {stage.logging_dir})"
                )
            time.sleep(settings.poll_interval_s)
        log(f"stage {stage.name}: done on Slurm")


@contextlib.contextmanager
def _datatrove_console_to(path: Path):
    """datatrove logs every task to stderr at INFO; send that to a file beside its per-task logs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a") as console, contextlib.redirect_stderr(console):
            yield
    finally:
        setup_default_logger()  # rebind datatrove's default logger to the real stderr
