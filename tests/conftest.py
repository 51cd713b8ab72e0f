"""Shared fixtures: a real S3-compatible server (moto's standalone server, its own process on
127.0.0.1) and isolated KEXAONE_HOME / DAGSTER_HOME folders per test."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from kexaone_dag.run_health import interrupts_as_interactive

REPO = Path(__file__).resolve().parent.parent
DEMO_CORPUS = REPO / "corpus" / "demo_data"

# The suite is no deployment: the webservers and daemons its tests start (`dagster dev`, `dagster-daemon`)
# inherit this, so their sensors start stopped and launch no background runs; a test that wants them on says
# so (KEXAONE_AUTOMATION, kexaone_dag/automation.py; tests/e2e/test_automation_daemon.py).
os.environ["KEXAONE_AUTOMATION"] = "off"

# Started in the background (CI), pytest has SIGINT ignored, and Dagster's in-process runs would then leave
# SIGTERM ignored in pytest and every child it starts (kexaone_dag/run_health.py, interrupts_as_interactive).
interrupts_as_interactive()


BACKSTOP_GRACE_S = 120  # after pytest-timeout's own limit: time for its report and the test's cleanup


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    return float(item.config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Backstop for pytest-timeout: if a test is stuck where SIGALRM cannot interrupt it (a C call holding
    the GIL, a wedged child it waits on without a timeout), dump every thread's stack and exit the run."""
    limit = _timeout_of(item)
    if limit > 0:
        faulthandler.dump_traceback_later(limit + BACKSTOP_GRACE_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible HTTP server in a separate process; yields its endpoint URL."""
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@contextlib.contextmanager
def background_process(command: list[str], log_path: Path, env: dict[str, str] | None = None):
    """A server or daemon in its own session, output to ``log_path``; on exit SIGTERM to its process group,
    SIGKILL if it has not ended within 60 s."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        command, cwd=REPO, env=env or dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def dagster_ui(log_path: Path, *, daemon: bool = True, env: dict[str, str] | None = None):
    """``dagster dev`` (webserver + daemon: what ``make ui`` runs), or ``dagster-webserver`` alone, on a free
    port over the environment's DAGSTER_HOME; yields the base URL once the code location has loaded."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    serve = [str(bin_dir / "dagster"), "dev"] if daemon else [str(bin_dir / "dagster-webserver")]
    command = [*serve, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with background_process(command, log_path, env) as proc:
        wait_for_port(port, proc, timeout=180)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:  # the port opens before the code location has loaded
            body = requests.post(f"{base}/graphql", json={"query": "{ assetNodes { id } }"}, timeout=60).json()
            if (body.get("data") or {}).get("assetNodes"):
                break
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(1)
        yield base


def edit_first_document(folder: Path, suffix: str = " 추가된 문장입니다.") -> None:
    """Append text to the first JSONL document of a corpus folder: a real content change."""
    import json

    path = sorted(folder.glob("*.jsonl"))[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["text"] += suffix
    path.write_text("\n".join([json.dumps(record, ensure_ascii=False)] + lines[1:]) + "\n", encoding="utf-8")


@contextlib.contextmanager
def private_demo_env(tmp: Path):
    """For module-scoped fixtures: KEXAONE_HOME and a private demo-corpus copy under ``tmp``, with every
    environment change (also ones made inside the block) undone afterwards."""
    shutil.copytree(DEMO_CORPUS, tmp / "corpus")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KEXAONE_HOME", str(tmp / "home"))
        mp.setenv("KEXAONE_CORPUS_ROOT", str(tmp / "corpus"))
        yield mp


S3_CREDS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the test server; credentials are in the environment like in production."""
    import s3fs

    for k, v in S3_CREDS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fs = s3fs.S3FileSystem(
        key=S3_CREDS["AWS_ACCESS_KEY_ID"],
        secret=S3_CREDS["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": s3_server},
        skip_instance_cache=True,
    )
    bucket = f"kexaone-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    return {"endpoint": s3_server, "bucket": bucket, "fs": fs}


def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Isolated state folders and a private copy of the demo corpus (tests may edit it)."""
    home = tmp_path / "kexaone"
    corpus = tmp_path / "corpus"
    shutil.copytree(DEMO_CORPUS, corpus)
    monkeypatch.setenv("KEXAONE_HOME", str(home))
    monkeypatch.setenv("KEXAONE_CORPUS_ROOT", str(corpus))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
    for var in (
        "KEXAONE_PRESET",
        "KEXAONE_ARTIFACT_ROOT",
        "KEXAONE_WAREHOUSE",
        "KEXAONE_EXECUTOR",
        "KEXAONE_S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return {"home": home, "corpus": corpus, "dagster_home": tmp_path / "dagster_home", "tmp": tmp_path}


@pytest.fixture
def kexaone_env(tmp_path, monkeypatch):
    """Isolated state folders and a private copy of the demo corpus (tests may edit it)."""
    return isolated_env(tmp_path, monkeypatch)
