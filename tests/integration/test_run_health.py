"""Dead runs, wedged pool slots and silent waits (``kexaone_dag.run_health``) on a real instance: a SQLite
DAGSTER_HOME with the local instance config (pool limit 1), real runs in real processes."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    execute_job,
    job,
    multiprocess_executor,
    op,
    reconstructable,
)
from dagster._core.launcher import WorkerStatus
from dagster._core.utils import make_new_run_id

from kexaone_dag.run_health import PoolWatcher, pool_waits, process_gone, reap_dead_runs, watching_pools

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as inst:
        yield inst


release = threading.Event()


@op(pool="gpu")
def hold_the_gpu():
    assert release.wait(120)


@job
def holder():
    hold_the_gpu()


@op(pool="gpu")
def train_on_the_gpu():
    return 1


@job
def waiter():
    train_on_the_gpu()


def test_a_step_waiting_for_a_pool_slot_is_told_who_holds_it(instance):
    release.clear()
    holding = threading.Thread(target=lambda: holder.execute_in_process(instance=instance))
    holding.start()
    deadline = time.monotonic() + 60
    while not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots:
        assert time.monotonic() < deadline, "the holder never claimed the gpu slot"
        time.sleep(0.1)
    holder_run = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots[0].run_id
    said: list[str] = []
    run_id = make_new_run_id()
    watcher = PoolWatcher(instance, run_id, emit=said.append, interval_s=0.2)
    watcher.start()
    waiting = threading.Thread(target=lambda: waiter.execute_in_process(instance=instance, run_id=run_id))
    waiting.start()
    deadline = time.monotonic() + 60
    while not said and time.monotonic() < deadline:
        time.sleep(0.1)
    release.set()
    holding.join(60)
    waiting.join(60)
    watcher.stop()
    assert len(said) == 1, said  # said once, not every poll
    assert (
        f"waiting for pool gpu (1 slot(s)): train_on_the_gpu of this run wait(s) on run {holder_run} "
        "step hold_the_gpu (STARTED)" in said[0]
    )
    assert "frees the slots of runs whose process is gone" in said[0]  # and how to get out of it
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    assert not pool_waits(instance, run_id)


KILLED_RUN = textwrap.dedent("""
    import time
    from dagster import DagsterInstance, job, op

    @op(pool="gpu")
    def train():
        print("holding", flush=True)
        time.sleep(600)

    @job
    def stage():
        train()

    stage.execute_in_process(instance=DagsterInstance.get())
""")


def test_a_killed_runs_slot_is_freed_and_the_run_marked_failed(instance, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    info = instance.event_log_storage.get_concurrency_info("gpu")
    (slot,) = info.claimed_slots
    run = instance.get_run_by_id(slot.run_id)
    assert not process_gone(instance, run)
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    assert reap_dead_runs(instance) == []  # a live run is left alone

    proc.send_signal(signal.SIGKILL)  # what an OOM kill does: no cleanup, the slot stays claimed
    proc.wait(timeout=30)
    assert instance.get_run_by_id(slot.run_id).status == DagsterRunStatus.STARTED
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    assert process_gone(instance, run)
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.FAILED  # the daemon's view

    lines = reap_dead_runs(instance)
    assert lines == [f"run {slot.run_id} (stage) had lost its process: marked failed, its pool slots freed"]
    assert instance.get_run_by_id(slot.run_id).status == DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    assert reap_dead_runs(instance) == []  # idempotent


HELD_RUN = textwrap.dedent("""
    import pathlib, sys, time
    from dagster import DagsterInstance, job, op

    @op(pool="gpu")
    def train():
        print("holding", flush=True)
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.1)

    @job
    def stage():
        train()

    stage.execute_in_process(instance=DagsterInstance.get())
""")


@op(pool="gpu")
def train_when_free():
    return 1


@job(executor_def=watching_pools(multiprocess_executor.configured({"max_concurrent": 2})))
def watched_waiter():
    train_when_free()


def test_a_run_launched_outside_kexaone_demo_logs_its_pool_wait_at_info(instance, tmp_path):
    """What a user sees in the UI's run log: the multiprocess executor's run worker says, at INFO, which run
    holds the slot its step waits for (Dagster's own line is DEBUG and names no holder)."""
    release_file = tmp_path / "release"
    holder_proc = subprocess.Popen(
        [sys.executable, "-c", HELD_RUN, str(release_file)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder_proc.stdout.readline().strip() == "holding"
        (slot,) = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        results = []
        waiting = threading.Thread(
            target=lambda: results.append(execute_job(reconstructable(watched_waiter), instance=instance))
        )
        waiting.start()
        deadline, said = time.monotonic() + 120, []
        while not said:
            assert time.monotonic() < deadline, "no INFO line about the pool wait within 120 s"
            runs = instance.get_runs(RunsFilter(job_name="watched_waiter"))
            if runs:
                said = [
                    e
                    for e in instance.all_logs(runs[0].run_id, of_type=DagsterEventType.ENGINE_EVENT)
                    if "waiting for pool gpu" in e.message
                ]
            time.sleep(0.5)
        release_file.touch()
        waiting.join(120)
        assert not waiting.is_alive()
    finally:
        release_file.touch()
        holder_proc.wait(timeout=60)
    (entry,) = said  # once, not every poll
    assert entry.level == logging.INFO
    assert f"train_when_free of this run wait(s) on run {slot.run_id} step train (STARTED)" in entry.message, (
        entry.message
    )
    assert "frees the slots of runs whose process is gone" in entry.message
    assert results[0].success


@pytest.mark.slow
def test_the_daemon_of_make_ui_fails_a_killed_run_and_frees_its_slot(instance, tmp_path):
    """The real ``dagster-daemon`` (what ``make ui`` starts beside the webserver) with the local instance
    config, its run-monitoring interval shortened from 30 s to 2 s: a run whose process is SIGKILLed is
    marked failed through ``LocalRunLauncher.check_run_worker_health`` and its ``gpu`` slot comes back."""
    config = Path(instance.root_directory) / "dagster.yaml"
    text = (
        config.read_text()
        .replace("poll_interval_seconds: 30", "poll_interval_seconds: 2")
        .replace("free_slots_after_run_end_seconds: 30", "free_slots_after_run_end_seconds: 2")
    )
    config.write_text(text)
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        (slot,) = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 180
        while (
            instance.get_run_by_id(slot.run_id).status != DagsterRunStatus.FAILURE
            or instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        ):
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "the daemon did not fail the run and free its slot in 180 s: "
                + (tmp_path / "daemon.log").read_text()[-3000:]
            )
            time.sleep(1)
        failure = [
            e.message
            for e in instance.all_logs(slot.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
        ]
        assert failure and "worker process is gone" in " ".join(failure), failure
    finally:
        if proc.poll() is None:
            proc.kill()
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()


SIGTERM_AFTER_A_RUN = textwrap.dedent(
    """
    import subprocess, sys
    from dagster import asset, materialize
    from kexaone_dag.run_health import interrupts_as_interactive

    if sys.argv[1] == "fixed":
        interrupts_as_interactive()

    @asset
    def one():
        return 1

    assert materialize([one]).success
    child = subprocess.Popen(["sleep", "30"])
    ignored = int(next(l for l in open(f"/proc/{child.pid}/status") if l.startswith("SigIgn:")).split()[1], 16)
    child.kill()
    print("ignored" if ignored >> 14 & 1 else "default")  # bit 14 = signal 15, SIGTERM
    """
)


@pytest.mark.parametrize("mode", ["as_started", "fixed"])
def test_a_background_process_keeps_sigterm_after_an_in_process_run(mode, tmp_path):
    """A process started in the background by a non-interactive shell has SIGINT ignored; Dagster's in-process
    run maps SIGTERM to that, and children inherit it ignored, unless ``interrupts_as_interactive`` ran."""
    script = tmp_path / "run.py"
    script.write_text(SIGTERM_AFTER_A_RUN)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        ["bash", "-c", f"{sys.executable} {script} {mode} & wait"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == ("default" if mode == "fixed" else "ignored")
