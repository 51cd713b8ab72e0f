"""The sandbox with real subprocesses: output, exit codes, the wall clock (grandchildren included), memory,
network, the scratch directory and its files, concurrent callers."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from posttrain import sandbox
from posttrain.sandbox import NETWORK_REFUSED, OUTPUT_LIMIT, run_python

LIMITS = {"timeout_s": 5.0, "memory_mb": 256}


def test_an_ok_program_has_its_stdout_stdin_and_a_minimal_environment():
    r = run_python("import os, sys\nprint(sys.stdin.read().upper(), sorted(os.environ))", stdin="abc", **LIMITS)
    assert r.ok and r.reason == "" and r.returncode == 0 and r.stderr == ""
    assert r.stdout == "ABC ['HOME', 'LANG', 'PATH', 'PYTHONIOENCODING', 'TMPDIR']\n"
    assert r.seconds < 5


def test_a_nonzero_exit_gives_its_code_and_last_stderr_line():
    bad = run_python("raise ValueError('no')", **LIMITS)
    assert not bad.ok and bad.returncode == 1 and bad.reason == "exit code 1: ValueError: no"
    assert "Traceback" in bad.stderr
    quiet = run_python("import sys\nsys.exit(3)", **LIMITS)
    assert (quiet.ok, quiet.returncode, quiet.reason) == (False, 3, "exit code 3")


def test_the_scratch_dir_is_the_cwd_and_home_holds_the_files_and_is_removed():
    files = {"a.txt": "hi", "sub/b.txt": "there"}
    src = "import os\nprint(open('a.txt').read(), open('sub/b.txt').read(), os.getcwd() == os.environ['HOME'])"
    src += "\nprint(os.getcwd())"
    r = run_python(src, files=files, **LIMITS)
    first, where = r.stdout.splitlines()
    assert r.ok and first == "hi there True" and "kexaone-sandbox-" in where
    assert not os.path.exists(where)
    with pytest.raises(ValueError, match="escapes the scratch directory"):
        run_python("pass", files={"../x": ""}, **LIMITS)


def test_the_timeout_kills_the_run_within_a_second():
    r = run_python("while True:\n    pass", timeout_s=1.0, memory_mb=256)
    assert (r.ok, r.returncode, r.reason) == (False, None, "timeout after 1s")
    assert 1.0 <= r.seconds < 2.0


def test_the_timeout_kills_grandchildren_too(tmp_path):
    beat = tmp_path / "beat"
    child = f"import os, time\nos.setsid()\nwhile True:\n    open({str(beat)!r}, 'a').write('.')\n    time.sleep(0.05)"
    src = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(60)"
    r = run_python(src, timeout_s=1.0, memory_mb=256)
    assert r.reason == "timeout after 1s" and r.seconds < 2.0
    time.sleep(0.2)
    size = beat.stat().st_size
    assert size > 0  # the grandchild did run
    time.sleep(0.4)
    if sandbox.isolation() == "net+pid":  # a PID namespace: even a setsid() escapee dies with the run
        assert beat.stat().st_size == size


def test_a_grandchild_in_the_process_group_is_killed_without_namespaces(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: "none")
    beat = tmp_path / "beat"
    child = f"import time\nwhile True:\n    open({str(beat)!r}, 'a').write('.')\n    time.sleep(0.05)"
    src = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(60)"
    assert run_python(src, timeout_s=1.0, memory_mb=256).reason == "timeout after 1s"
    time.sleep(0.2)
    size = beat.stat().st_size
    time.sleep(0.4)
    assert size > 0 and beat.stat().st_size == size


def test_memory_is_capped():
    big = run_python("x = bytearray(2 << 30)\nprint('allocated')", timeout_s=5.0, memory_mb=256)
    assert (big.ok, big.reason, big.stdout) == (False, "memory limit", "")
    small = run_python("x = bytearray(64 << 20)\nprint(len(x))", timeout_s=5.0, memory_mb=256)
    assert small.ok and small.stdout == f"{64 << 20}\n"


@pytest.mark.parametrize(
    "src",
    [
        "import socket\nsocket.create_connection(('93.184.216.34', 80), timeout=1)",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)",
        "import urllib.request\nurllib.request.urlopen('http://93.184.216.34/', timeout=1)",
    ],
)
def test_network_access_is_refused(src):
    r = run_python(src, **LIMITS)
    assert not r.ok and r.reason == NETWORK_REFUSED, r.stderr


def test_the_network_namespace_refuses_even_the_raw_socket_module():
    if sandbox.isolation() == "none":
        pytest.skip("unshare --net is not available on this host: the in-Python ban is the only layer")
    src = "import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('93.184.216.34', 80))"
    r = run_python(src, **LIMITS)
    assert not r.ok and "Network is unreachable" in r.reason


def test_output_is_truncated_and_file_size_is_capped():
    r = run_python(f"print('x' * {OUTPUT_LIMIT * 2})", **LIMITS)
    assert r.ok and r.stdout == "x" * OUTPUT_LIMIT
    big = run_python("open('f', 'w').write('x' * (32 << 20))", **LIMITS)
    assert big.reason == "file size limit"


def test_callers_may_run_from_threads():
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: run_python(f"print({i} * {i})", **LIMITS).stdout, range(4)))
    assert outs == ["0\n", "1\n", "4\n", "9\n"]


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="timeout_s > 0"):
        run_python("pass", timeout_s=0, memory_mb=256)
