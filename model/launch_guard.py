"""Start a training command so that it can neither outlive its launcher nor share its work directory.

    python -m model.launch_guard --work-dir WORK_DIR [--parent-pid PID] -- torchrun ... -m model.train ...

What the Dagster step launches (``resources/trainer.py``); it then *becomes* the command (``exec``), so
no extra process stays in between:

1. **Ends with its launcher.** The kernel sends this process SIGTERM when the process that started it dies
   (``prctl(PR_SET_PDEATHSIG)``; the setting survives ``exec``), however it dies: SIGKILL, OOM kill, a
   closed laptop. torchrun forwards SIGTERM to its workers, and ``model.train`` sets the same signal on
   itself, so no trainer is orphaned. If the launcher is already gone when this starts, it stops at once.
2. **One trainer per work directory.** It takes an exclusive ``flock`` on ``WORK_DIR/trainer.lock`` and
   writes its owner (host, pid, start time, command) into it. The lock belongs to the open file, which
   ``exec`` hands to the command, and the kernel releases it when the last process holding it exits, so
   a lock is taken over exactly when its owner is provably gone. A second trainer on the same work dir
   fails at once with one line naming the owner.

No Dagster or torch import: it runs before either.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Sequence

LOCK_FILE = "trainer.lock"
PR_SET_PDEATHSIG = 1


class WorkDirBusyError(RuntimeError):
    """Another live trainer holds the work directory."""


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``sig`` when our parent dies (Linux). Returns False where unsupported. If the
    parent is already gone (we were re-parented), raise SystemExit: nobody waits for this process."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    parent = os.getppid()
    if (expected_parent is not None and parent != expected_parent) or parent == 1:
        raise SystemExit(f"error: the launcher (pid {expected_parent or 'parent'}) is gone; not starting")
    return True


def owner_of(work_dir: Path) -> dict:
    """What the lock file says about its holder ({} if none or unreadable)."""
    try:
        return json.loads((work_dir / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(owner: dict) -> str:
    if not owner:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {started})"


def acquire(work_dir: Path, command: Sequence[str]) -> int:
    """Take the work dir's lock or raise WorkDirBusyError; returns the open fd (inheritable: keep it)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkDirBusyError(
            f"work dir {work_dir} is in use by a trainer, {describe(owner_of(work_dir))}: "
            "never two trainers on one work dir (wait for it or stop it)"
        ) from None
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "command": " ".join(command)[:500],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(owner).encode(), 0)
    os.set_inheritable(fd, True)
    return fd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.launch_guard", description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, required=True)
    ap.add_argument("--parent-pid", type=int, default=None, help="the launcher's pid (checked after arming)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given after --")
    die_with_parent(args.parent_pid)
    try:
        acquire(args.work_dir, command)
    except WorkDirBusyError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    os.execvp(command[0], command)
    return 0  # unreachable


if __name__ == "__main__":
    sys.exit(main())
