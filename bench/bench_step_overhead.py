"""Where the time of a one-click materialization goes in the local UI (`make ui` = `dagster dev`).

``python -m bench.bench_step_overhead [--repeats 3]``

Starts the real ``dagster dev`` (webserver + daemon) on a temp instance once per variant (``VARIANTS``:
executor and the daemon's dequeue interval), launches a materialization of
``raw_corpus_stats`` through GraphQL as the UI's Materialize button does (a sub-second step: its artifact is
reused after the first run), and splits each run's wall time by the instance's own event timestamps:
queued -> run worker started (``RUN_START``) -> step started -> step done -> run done.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.report import markdown_table, write_section

REPO = Path(__file__).resolve().parent.parent
ASSET = "raw_corpus_stats"
# (executor, daemon dequeue interval in seconds): Dagster's defaults before, the local deployment's now
VARIANTS = (("multiprocess", 5), ("in_process", 5), ("in_process", 1))
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message } }
}
"""
STATUS = "query R($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
READY = "query { assetNodes { assetKey { path } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gql(url: str, query: str, variables: dict | None = None) -> dict:
    body = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60).json()
    if "errors" in body:
        raise RuntimeError(body["errors"])
    return body["data"]


def _phases(home: Path, run_id: str) -> dict[str, float]:
    from dagster import DagsterEventType, DagsterInstance

    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        record = instance.get_run_record_by_id(run_id)
        created = record.create_timestamp.timestamp()
        events = {}
        for entry in instance.all_logs(run_id):
            if entry.dagster_event is not None:
                events.setdefault(entry.dagster_event.event_type, entry.timestamp)
    start = events[DagsterEventType.RUN_START]
    step = events[DagsterEventType.STEP_START]
    done = events[DagsterEventType.STEP_SUCCESS]
    end = events[DagsterEventType.RUN_SUCCESS]
    return {
        "queued_to_worker": start - created,
        "worker_to_step": step - start,
        "step": done - step,
        "step_to_end": end - done,
        "total": end - created,
    }


def measure(executor: str, dequeue_s: int, repeats: int, tmp: Path) -> list[dict[str, float]]:
    name = f"{executor}_{dequeue_s}"
    home, state, corpus = tmp / f"dagster_{name}", tmp / f"state_{name}", tmp / "corpus"
    home.mkdir()
    config = (REPO / "deploy" / "local" / "dagster.yaml").read_text()
    assert "dequeue_interval_seconds: 1" in config
    (home / "dagster.yaml").write_text(
        config.replace("dequeue_interval_seconds: 1", f"dequeue_interval_seconds: {dequeue_s}")
    )
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KEXAONE_HOME": str(state),
        "KEXAONE_CORPUS_ROOT": str(corpus),
        "KEXAONE_EXECUTOR": executor,
    }
    log = open(tmp / f"dev_{name}.log", "w")
    dev = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if _gql(url, READY)["assetNodes"]:
                    break
            except (requests.RequestException, RuntimeError, KeyError):
                pass
            if time.monotonic() > deadline or dev.poll() is not None:
                raise RuntimeError(f"dagster dev did not come up (log: {log.name})")
            time.sleep(1)
        params = {
            "selector": {
                "repositoryLocationName": "kexaone_dag",
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": [ASSET]}],
            },
            "mode": "default",
        }
        out = []
        for i in range(repeats + 1):  # the first run builds the artifact; later ones reuse it (sub-second step)
            launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
            if launched["__typename"] != "LaunchRunSuccess":
                raise RuntimeError(launched)
            run_id = launched["run"]["runId"]
            deadline = time.monotonic() + 300
            while (status := _gql(url, STATUS, {"id": run_id})["runOrError"]["status"]) not in ("SUCCESS", "FAILURE"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {run_id} still {status} after 300 s")
                time.sleep(0.5)
            if status != "SUCCESS":
                raise RuntimeError(f"run {run_id} failed (log: {log.name})")
            if i:
                out.append(_phases(home, run_id))
        return out
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kexaone-bench-steps-") as tmp:
        shutil.copytree(REPO / "corpus" / "demo_data", Path(tmp) / "corpus")
        results = {variant: measure(*variant, args.repeats, Path(tmp)) for variant in VARIANTS}
    keys = ("queued_to_worker", "worker_to_step", "step", "step_to_end", "total")
    rows = [
        [ex, f"{dq} s", *(round(statistics.median(r[k] for r in runs), 2) for k in keys)]
        for (ex, dq), runs in results.items()
    ]
    total = {v: statistics.median(r["total"] for r in runs) for v, runs in results.items()}
    ratio = total[VARIANTS[0]] / total[VARIANTS[-1]]
    body = (
        f"One click on Materialize for `{ASSET}` in `dagster dev` (median of {args.repeats} runs per executor,"
        " seconds, from the instance's event timestamps; the step reuses its artifact, so it is sub-second).\n\n"
        + markdown_table(
            [
                "KEXAONE_EXECUTOR",
                "daemon dequeue interval",
                "queued -> run worker",
                "worker -> step start",
                "step",
                "step -> run end",
                "total",
            ],
            rows,
        )
        + f"\n\nBefore (multiprocess, 5 s) / now (in_process, 1 s), total: {ratio:.2f}x. The local deployment now"
        " runs steps in the run worker (as `kexaone demo` always did) and the daemon dequeues every second;"
        " `KEXAONE_EXECUTOR=multiprocess` still gives a subprocess per step."
    )
    write_section("step_overhead", "Run and step start-up in the local UI", "python -m bench.bench_step_overhead", body)


if __name__ == "__main__":
    main()
