"""Run untrusted Python (a tool task's criterion, a code answer's unit tests) in a sandbox.

Each call starts a **fresh** interpreter (``subprocess.Popen`` of ``python -I -S -c BOOTSTRAP``: never a
fork of the caller, which may hold threads, and no ``preexec_fn``) in its own session, with a scratch
directory as working directory (``files`` written there first; removed afterwards). The bootstrap runs
first inside the child, sets the limits, then executes the source as ``main.py``:

* memory: ``RLIMIT_AS`` = ``memory_mb``; CPU: ``RLIMIT_CPU`` = the timeout (+1 s); files written:
  ``RLIMIT_FSIZE`` 16 MB (stdout / stderr go to files too, so a flood of output is capped as well);
  processes: ``RLIMIT_NPROC`` 256 (a fork bomb fails; the kernel ignores it for root outside a user
  namespace);
* network: ``socket.socket``, ``create_connection``, ``socketpair`` ... replaced by functions that raise
  ``OSError("network access refused")``; where this host allows it (probed once, see ``isolation()``),
  ``unshare --net --map-root-user --pid --fork --kill-child`` is the outer layer: an empty network
  namespace (only a down loopback: connections fail in the kernel even through ``_socket``) and a PID
  namespace, so killing it kills every descendant, even one that called ``setsid``;
* wall clock: the whole process group is SIGKILLed at ``timeout_s``;
* environment: only ``PATH``, ``HOME`` = ``TMPDIR`` = the scratch directory, ``LANG``; ``-I -S``: no user
  site, no site-packages, no ``PYTHON*`` variables: the standard library only.

Enforced by the kernel: memory, CPU, file size, processes, and (with ``unshare``) the namespaces. Enforced
in Python only (``ctypes`` or ``_socket`` could undo it): the socket ban where no namespace is available.
This guards against accidents in model-written snippets and teacher-written checks, not against a
determined attacker (the file system is not hidden: no chroot / mount namespace).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping

OUTPUT_LIMIT = 64_000  # characters of stdout / stderr kept in the result
FILE_LIMIT = 16 << 20  # bytes: RLIMIT_FSIZE of the child (its stdout / stderr files included)
PROCESS_LIMIT = 256  # RLIMIT_NPROC of the child
NETWORK_REFUSED = "network access refused"

BOOTSTRAP = r"""
import os, resource, socket, sys
mem, cpu, fsize, nproc = (int(x) for x in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
except (ValueError, OSError):
    pass
def _refuse(*a, **k):
    raise OSError("network access refused")
class _Refused(socket.socket):
    def __init__(self, *a, **k):
        _refuse()
socket.socket = socket.SocketType = _Refused
for _name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo", "gethostbyname"):
    setattr(socket, _name, _refuse)
del _name, _Refused
sys.argv = ["main.py"]
sys.path.insert(0, os.getcwd())
with open("main.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "main.py", "exec")
del _f
exec(_code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})
"""

_UNSHARE_FULL = ("unshare", "--net", "--map-root-user", "--pid", "--fork", "--kill-child")
_UNSHARE_NET = ("unshare", "--net", "--map-root-user")


@dataclass(frozen=True)
class SandboxResult:
    ok: bool  # exit code 0 and no limit hit
    returncode: int | None  # None when the run was killed at the timeout
    stdout: str  # truncated to OUTPUT_LIMIT characters
    stderr: str
    reason: str  # "" when ok, else one line ("timeout after 2s", "memory limit", "exit code 1: ...")
    seconds: float


def _probe(prefix: tuple[str, ...]) -> bool:
    try:
        probe = subprocess.run([*prefix, sys.executable, "-I", "-S", "-c", "pass"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@functools.cache
def isolation() -> str:
    """The outer layer this host allows, probed once: ``"net+pid"``, ``"net"`` or ``"none"``."""
    if not shutil.which("unshare"):
        return "none"
    if _probe(_UNSHARE_FULL):
        return "net+pid"
    return "net" if _probe(_UNSHARE_NET) else "none"


def network_namespace() -> bool:
    """Whether runs get an empty network namespace (``unshare``) on top of the in-Python socket ban."""
    return isolation() != "none"


def _write_files(scratch: Path, files: Mapping[str, str]) -> None:
    root = scratch.resolve()
    for name, text in files.items():
        target = (root / name).resolve()
        if root not in target.parents:
            raise ValueError(f"sandbox file {name!r} escapes the scratch directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read(OUTPUT_LIMIT * 4).decode("utf-8", errors="replace")[:OUTPUT_LIMIT]


def _reason(code: int, err: str) -> str:
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if code == 0:
        return ""
    if any(s in last for s in ("MemoryError", "Cannot allocate memory")):
        return "memory limit"
    if NETWORK_REFUSED in last:
        return NETWORK_REFUSED
    if "File too large" in last:
        return "file size limit"
    if code < 0:
        name = {signal.SIGXCPU: "cpu time limit", signal.SIGXFSZ: "file size limit"}.get(-code)
        return name or f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}: {last[:200]}" if last else f"exit code {code}"


def run_python(
    source: str, *, timeout_s: float, memory_mb: int, stdin: str = "", files: Mapping[str, str] | None = None
) -> SandboxResult:
    """Run ``source`` as ``main.py`` in a fresh scratch directory with ``files`` beside it; see the module doc."""
    if not timeout_s > 0 or memory_mb < 32:
        raise ValueError(f"sandbox needs timeout_s > 0 and memory_mb >= 32 (got {timeout_s}, {memory_mb})")
    scratch = Path(tempfile.mkdtemp(prefix="kexaone-sandbox-"))
    try:
        _write_files(scratch, files or {})
        (scratch / "main.py").write_text(source, encoding="utf-8")
        limits = (memory_mb << 20, math.ceil(timeout_s) + 1, FILE_LIMIT, PROCESS_LIMIT)
        command = [sys.executable, "-I", "-S", "-c", BOOTSTRAP, *map(str, limits)]
        layer = isolation()
        if layer != "none":
            command = [*(_UNSHARE_FULL if layer == "net+pid" else _UNSHARE_NET), *command]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "LANG": "C.UTF-8",
            "PYTHONIOENCODING": "utf-8",
        }
        # stdin / stdout / stderr are files outside the scratch dir: no pipe to deadlock on or to be held
        # open by an escaped grandchild, and the output size is capped by RLIMIT_FSIZE.
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
            fin.write(stdin.encode("utf-8"))
            fin.seek(0)
            start = time.monotonic()
            proc = subprocess.Popen(
                command, cwd=scratch, env=env, stdin=fin, stdout=fout, stderr=ferr, start_new_session=True
            )
            try:
                code: int | None = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                try:  # the whole group, also after a normal exit: no stray background child survives
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
            seconds = time.monotonic() - start
            out, err = _read(fout), _read(ferr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reason = f"timeout after {timeout_s:g}s" if code is None else _reason(code, err)
    return SandboxResult(ok=not reason, returncode=code, stdout=out, stderr=err, reason=reason, seconds=seconds)


__all__ = ["NETWORK_REFUSED", "SandboxResult", "isolation", "network_namespace", "run_python"]
