"""``model.launch_guard``: a trainer dies with the process that launched it, and never shares its work dir."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from model.launch_guard import LOCK_FILE, owner_of

GUARD = [sys.executable, "-m", "model.launch_guard"]
REPO = Path(__file__).resolve().parents[2]
DEATH_BOUND_S = 10  # the kernel signals at once; this covers a loaded 2-core machine


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_second_trainer_on_the_same_work_dir_is_refused_until_the_first_is_gone(tmp_path):
    first = subprocess.Popen([*GUARD, "--work-dir", str(tmp_path), "--", "sleep", "120"], cwd=REPO)
    try:
        assert _wait(lambda: owner_of(tmp_path).get("pid") == first.pid, 30)
        second = subprocess.run(
            [*GUARD, "--work-dir", str(tmp_path), "--", "true"], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2
        line = second.stderr.strip()
        assert line.count("\n") == 0 and f"in use by a trainer, pid {first.pid} on " in line, line
        assert "never two trainers on one work dir" in line
        assert first.poll() is None  # the owner is untouched
    finally:
        first.send_signal(signal.SIGKILL)  # the owner dies without any cleanup...
        first.wait(timeout=30)
    third = subprocess.run(
        [*GUARD, "--work-dir", str(tmp_path), "--", sys.executable, "-c", "print('trained')"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert third.returncode == 0 and third.stdout.strip() == "trained"  # ...and the lock went with it
    assert owner_of(tmp_path)["command"].endswith("print('trained')")  # the new owner wrote its name


LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-m", "model.launch_guard", "--work-dir", sys.argv[1],
                              "--parent-pid", str(os.getpid()), "--", sys.executable, "-c",
                              "import time; time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
""")


def test_the_trainer_dies_within_seconds_of_a_sigkilled_launcher(tmp_path):
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    trainer = psutil.Process(int(launcher.stdout.readline()))
    assert _wait(lambda: owner_of(tmp_path).get("pid") == trainer.pid, 30)  # armed, locked, exec'd
    assert "time.sleep(600)" in " ".join(trainer.cmdline())
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(timeout=30)
    gone, alive = psutil.wait_procs([trainer], timeout=DEATH_BOUND_S)
    assert not alive, f"trainer {trainer.pid} outlived its launcher by {DEATH_BOUND_S}s"


def test_a_guard_whose_launcher_is_already_gone_does_not_start(tmp_path):
    run = subprocess.run(
        [*GUARD, "--work-dir", str(tmp_path), "--parent-pid", "1", "--", "true"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "the launcher (pid 1) is gone" in run.stderr
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("argv", [[], ["--work-dir"]])
def test_usage_errors_are_one_line(argv, tmp_path):
    run = subprocess.run([*GUARD, *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "error:" in run.stderr
