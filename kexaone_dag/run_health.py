"""Runs whose process is gone, the pool slots they still hold, and steps waiting on a pool.

Dagster frees a run's pool slots when the run ends. A run whose process was killed (SIGKILL, OOM, a lost
laptop) never ends: it stays STARTED and keeps its ``gpu`` slot, and every later run waits on it forever.

* Under ``make ui`` the daemon's run monitoring (``deploy/local/dagster.yaml``) asks the run launcher
  whether a run's worker lives. Dagster's ``DefaultRunLauncher`` cannot answer, so the local instance uses
  ``LocalRunLauncher`` (the default launcher plus that answer, from ``process_gone``): the daemon marks a
  run with a dead worker failed, and frees the slots of ended runs.
* ``kexaone demo`` runs without a daemon, so it calls ``reap_dead_runs`` first and watches its own run's
  waits with ``PoolWatcher``.
* Every other run (launched from the UI, a schedule or ``dagster job launch``) has its executor wrapped by
  ``watching_pools``: the run worker watches its own waits and writes what it finds into the run's event
  log at INFO (Dagster's own "Step blocked by limit for pool" is DEBUG and names no holder).

A run's processes are known from its events (each Dagster event carries the pid of the process that
emitted it: the run worker, each step process) and from the ``kexaone/pid`` tag ``kexaone demo`` sets.
It is *gone* when none of those processes is alive on this machine (a pid now used by a process started
later is not the run's); a run with no recorded process is left alone. The embedded instance is one machine's.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Callable

import psutil
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultRunLauncher,
    ExecutorDefinition,
    RunsFilter,
)
from dagster._core.executor.base import Executor
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

PID_TAG, HOST_TAG = "kexaone/pid", "kexaone/host"
UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
POOL_WATCH_INTERVAL_S = 5.0  # how often a waiting run looks at who holds its pool
HOW_TO_FREE = (
    "`kexaone demo` frees the slots of runs whose process is gone when it starts; `make ui` "
    "(its daemon) does the same; to end a live run, terminate it in the UI"
)


def interrupts_as_interactive() -> None:
    """Give SIGINT its interactive handler when this process was started with it ignored (a background job of a
    non-interactive shell: ``kexaone demo &``, CI's ``make test``).

    Why: Dagster maps SIGTERM to SIGINT's handler around every in-process run (``setup_interrupt_handlers``
    in ``dagster/_utils/interrupts.py``). With SIGINT ignored, SIGTERM is ignored too after the first run, in
    this process and in every process it starts later (an ignored disposition survives exec): ``kill`` no
    longer stops ``kexaone demo``, and servers and pool workers outlive their SIGTERM. With the interactive
    handler, SIGTERM interrupts a run like Ctrl-C, and children start with both signals at their defaults."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_tags() -> dict[str, str]:
    """Tags ``kexaone demo`` puts on its runs, so a later one can tell whether their process lives."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _processes(instance: DagsterInstance, run) -> list[tuple[int, float]]:
    """(pid, time first seen) of the processes that executed the run."""
    found = []
    if run.tags.get(PID_TAG, "").isdigit() and run.tags.get(HOST_TAG) == socket.gethostname():
        record = instance.get_run_record_by_id(run.run_id)
        started = record.create_timestamp.timestamp() if record else 0.0
        found.append((int(run.tags[PID_TAG]), started))
    kinds = {DagsterEventType.RUN_START, DagsterEventType.ENGINE_EVENT, DagsterEventType.STEP_START}
    for entry in instance.all_logs(run.run_id, of_type=kinds):
        event = entry.dagster_event
        if event is not None and event.pid:  # every Dagster event carries the pid of the process that emitted it
            found.append((int(event.pid), entry.timestamp))
    return found


def _alive(pid: int, seen_at: float) -> bool:
    try:
        return psutil.Process(pid).create_time() <= seen_at + 1.0  # else: the pid was reused since
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def process_gone(instance: DagsterInstance, run) -> bool:
    processes = _processes(instance, run)
    return bool(processes) and not any(_alive(pid, seen) for pid, seen in processes)


def reap_dead_runs(instance: DagsterInstance, *, exclude: str | None = None) -> list[str]:
    """Mark unfinished runs whose process is gone as failed and free every slot held by a finished run.
    Returns one line per run acted on."""
    lines = []
    for run in instance.get_runs(RunsFilter(statuses=UNFINISHED)):
        if run.run_id == exclude or not process_gone(instance, run):
            continue
        instance.report_run_failed(run, "its process is gone (killed); marked failed by kexaone demo")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(f"run {run.run_id} ({run.job_name}) had lost its process: marked failed, its pool slots freed")
    storage = instance.event_log_storage
    for pool in storage.get_concurrency_keys():
        for slot in storage.get_concurrency_info(pool).claimed_slots:
            holder = instance.get_run_by_id(slot.run_id)
            if holder is None or holder.status in TERMINAL:
                storage.free_concurrency_slots_for_run(slot.run_id)
                lines.append(
                    f"pool {pool}: freed the slot of run {slot.run_id}, which had ended "
                    f"({holder.status.value if holder else 'deleted'})"
                )
    return lines


def pool_waits(instance: DagsterInstance, run_id: str) -> list[str]:
    """For each step of ``run_id`` waiting for a pool slot: which runs hold the pool's slots."""
    storage = instance.event_log_storage
    lines = []
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        waiting = [p.step_key for p in info.pending_steps if p.run_id == run_id and p.assigned_timestamp is None]
        holders = [s for s in info.claimed_slots if s.run_id != run_id]
        if not waiting or not holders:
            continue
        described = []
        for slot in holders:
            holder = instance.get_run_by_id(slot.run_id)
            state = holder.status.value if holder else "deleted"
            if holder is not None and holder.status in UNFINISHED and process_gone(instance, holder):
                state += ", its process is gone"
            described.append(f"run {slot.run_id} step {slot.step_key} ({state})")
        lines.append(
            f"waiting for pool {pool} ({info.slot_count} slot(s)): {', '.join(waiting)} of this run "
            f"wait(s) on {'; '.join(described)}. {HOW_TO_FREE}"
        )
    return lines


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher that can also tell the daemon's run monitoring whether a run's worker
    process is alive (``run_launcher: {module: kexaone_dag.run_health, class: LocalRunLauncher}``)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        if not _processes(self._instance, run):
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no process recorded for this run yet")
        if process_gone(self._instance, run):
            return CheckRunHealthResult(WorkerStatus.FAILED, "the run's worker process is gone (killed)")
        return CheckRunHealthResult(WorkerStatus.RUNNING)


class PoolWatcher(threading.Thread):
    """Prints (once each) what ``pool_waits`` says about a run, every ``interval_s`` while it runs."""

    def __init__(
        self,
        instance: DagsterInstance,
        run_id: str,
        emit: Callable[[str], None] = print,
        interval_s: float = POOL_WATCH_INTERVAL_S,
    ):
        super().__init__(name="kexaone-pool-watcher", daemon=True)
        self.instance, self.run_id, self.emit, self.interval_s = instance, run_id, emit, interval_s
        self._stop_event = threading.Event()
        self._said: set[str] = set()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                lines = pool_waits(self.instance, self.run_id)
            except Exception as exc:  # the watcher must never take the run down
                lines = [f"(pool watcher: {exc})"]
            for line in lines:
                if line not in self._said:
                    self._said.add(line)
                    self.emit(line)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class PoolWatchingExecutor(Executor):
    """``inner`` with a ``PoolWatcher`` beside it for as long as it executes the plan: a wait for a pool slot
    becomes an INFO engine event of the run (in the UI's run log and on its console) naming the holder."""

    def __init__(self, inner: Executor, interval_s: float = POOL_WATCH_INTERVAL_S):
        self.inner, self.interval_s = inner, interval_s

    def execute(self, plan_context, execution_plan):
        instance, run = plan_context.instance, plan_context.dagster_run
        watcher = PoolWatcher(
            instance, run.run_id, interval_s=self.interval_s, emit=lambda line: instance.report_engine_event(line, run)
        )
        watcher.start()
        try:
            yield from self.inner.execute(plan_context, execution_plan)
        finally:
            watcher.stop()

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def get_step_event_or_retry_event(self, *args, **kwargs):
        return self.inner.get_step_event_or_retry_event(*args, **kwargs)


def watching_pools(executor_def: ExecutorDefinition) -> ExecutorDefinition:
    """The same executor (name, config, requirements) whose runs report their pool waits at INFO."""
    create = executor_def.executor_creation_fn
    return ExecutorDefinition(
        name=executor_def.name,
        config_schema=executor_def.config_schema,
        description=executor_def.description,
        requirements=executor_def.get_requirements,
        executor_creation_fn=lambda init_context: PoolWatchingExecutor(create(init_context)),
    )


__all__ = [
    "LocalRunLauncher",
    "PoolWatcher",
    "PoolWatchingExecutor",
    "pool_waits",
    "process_gone",
    "reap_dead_runs",
    "run_tags",
    "watching_pools",
]
