"""Re-run on data change with the real ``dagster-daemon``: a chain materialized once, one switch turned on
(``kexaone_automation``, with ``raw_corpus_watch`` on by default as in production), a changed file dropped
into the Korean corpus folder -> ``raw_corpus_ko`` gets a new data version (the one its observable source
reports) -> exactly the assets downstream of it rebuild, in dependency order, up to the checkpoints, and
nothing else runs: not the other seven corpus partitions, not what sits behind the failed NIAH gate.

The chain is made tiny through ``KEXAONE_PRESET_OVERRIDES`` (the daemon loads the code location from
workspace.yaml, so the overrides travel in the environment): every training stage two steps, a one-cell NIAH
grid. A two-step model fails the blocking NIAH gate of ``context_ext_stage1`` for real, so the reachable
checkpoints are ``pretrain_stage1..3`` and ``context_ext_stage1`` (recorded, its gate failed): the test
asserts that the automation stops there too and never builds on a failed gate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, AssetSelection, DagsterInstance, DagsterRunStatus
from dagster._core.scheduler.instigation import InstigatorType

from assets.corpus import observe_source
from kexaone_dag.definitions import build_definitions
from resources.corpus_sources import CorpusSources
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]

# every training stage 2 steps (pre-training 3 x 2 x 8 x 128 tokens; context 2 x 2 x 512 and 2 x 1 x 4096),
# the NIAH grid one cell with one trial
TINY_CHAIN = {
    "pretrain.total_tokens": 6144,
    "context.stages.stage1.tokens": 2048,
    "context.stages.stage2.tokens": 8192,
    "eval.niah_num_lengths": 1,
    "eval.niah_num_depths": 1,
    "eval.niah_trials": 1,
}
GATED = "context_ext_stage1"
ACTIVE = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)


def sensor_ticks(instance, name: str) -> list:
    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == name]
    return [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=50)]


def materializations_after(instance, graph, cursor: int) -> list[tuple[int, str, str | None]]:
    """(storage id, asset, partition) of every materialization recorded after ``cursor``, in order."""
    out = []
    for key in graph.materializable_asset_keys:
        for r in instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, after_storage_id=cursor), 100
        ).records:
            out.append((r.storage_id, key.to_user_string(), r.partition_key))
    return sorted(out)


def drop_changed_file(folder: Path, scratch: Path) -> None:
    """What a user does: a new version of a corpus file, written elsewhere and moved into the folder."""
    path = sorted(folder.glob("*.jsonl"))[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    record["text"] += " 새로 추가된 문장입니다."
    staged = scratch / path.name
    staged.write_text("\n".join([json.dumps(record, ensure_ascii=False), *lines[1:]]) + "\n", encoding="utf-8")
    os.replace(staged, path)


def test_a_dropped_file_rebuilds_exactly_what_is_downstream_of_its_source(kexaone_env, monkeypatch):
    started = time.monotonic()
    monkeypatch.setenv("KEXAONE_PRESET_OVERRIDES", json.dumps(TINY_CHAIN))
    monkeypatch.setenv("KEXAONE_AUTOMATION", "observe")  # the production default: watch on, automation off
    monkeypatch.setenv("KEXAONE_EXECUTOR", "in_process")
    tmp, corpus = kexaone_env["tmp"], kexaone_env["corpus"]
    log_path = tmp / "daemon.log"

    def daemon_log() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    log = open(log_path, "w")
    # started first: its code server loads while the chain trains (the watch sensor only observes meanwhile)
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        defs = build_definitions()
        graph = defs.resolve_asset_graph()
        with DagsterInstance.get() as instance:
            # the chain, materialized once (as `kexaone demo` does); the gate of context stage 1 fails for real
            assert defs.resolve_job_def("observe_raw_corpus").execute_in_process(instance=instance).success
            built = defs.resolve_job_def("demo").execute_in_process(instance=instance, raise_on_error=False)
            failed = {e.step_key for e in built.all_events if e.event_type_value == "STEP_FAILURE"}
            assert failed == {GATED}, failed
            before = {r.run_id for r in instance.get_runs()}
            baseline = instance.event_log_storage.get_maximum_record_id()
            built_s = time.monotonic() - started

            # the one switch
            switch = subprocess.run(
                [str(Path(sys.executable).parent / "dagster"), "sensor", "start", "kexaone_automation"]
                + ["-w", str(REPO / "workspace.yaml")],
                cwd=REPO,
                env=dict(os.environ),
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert switch.returncode == 0, switch.stdout + switch.stderr
            switched_on = time.time()

            def ticks_since(name: str, since: float) -> list:
                return [t for t in sensor_ticks(instance, name) if t.timestamp > since and t.status.value != "STARTED"]

            # turned on over a built chain, nothing changed: its first tick requests nothing (the assets behind the
            # failed gate are missing, but blocked)
            deadline = time.monotonic() + 120
            while not ticks_since("kexaone_automation", switched_on):
                assert daemon.poll() is None, daemon_log()
                assert time.monotonic() < deadline, "no kexaone_automation tick within 120 s:\n" + daemon_log()
                time.sleep(1)
            assert {r.run_id for r in instance.get_runs()} == before, "requested runs with nothing changed"
            assert not ticks_since("kexaone_automation", switched_on)[0].run_ids

            drop_changed_file(corpus / "ko", tmp)
            dropped = time.time()
            expected_version = observe_source(CorpusSources(root=str(corpus)), "ko").data_version.value

            # wait: the new observation, the runs, and a tick after the last run ended that requests nothing
            deadline = time.monotonic() + 420
            while True:
                assert daemon.poll() is None, daemon_log()
                assert time.monotonic() < deadline, "the loop did not settle within 420 s:\n" + daemon_log()
                runs = [r for r in instance.get_runs() if r.run_id not in before]
                if runs and not any(r.status in ACTIVE for r in runs):
                    last_end = max(instance.get_run_record_by_id(r.run_id).end_time or 0 for r in runs)
                    if any(not t.run_ids for t in ticks_since("kexaone_automation", last_end + 1)):
                        break
                time.sleep(2)
            settled_s = time.time() - dropped

            # raw_corpus_ko (only) got a new observation, runless (the sensor's), with its source's own version
            observed = {
                key.to_user_string(): [
                    r
                    for r in instance.fetch_observations(
                        AssetRecordsFilter(asset_key=key, after_storage_id=baseline), 100
                    ).records
                ]
                for key in graph.get_all_asset_keys()
                if graph.get(key).is_observable
            }
            assert {k: len(v) for k, v in observed.items() if v} == {"raw_corpus_ko": 1}
            (ko,) = observed["raw_corpus_ko"]
            assert not ko.run_id  # runless: recorded by raw_corpus_watch, no observation run
            assert ko.event_log_entry.asset_observation.tags == {"dagster/data_version": expected_version}

            # exactly what is downstream of raw_corpus_ko (its own corpus partition only), up to the gate
            downstream = AssetSelection.assets("raw_corpus_ko").downstream(include_self=False).resolve(graph)
            behind_gate = AssetSelection.assets(GATED).downstream(include_self=False).resolve(graph)
            expected = {
                (k.to_user_string(), "ko" if graph.get(k).is_partitioned else None) for k in downstream - behind_gate
            }
            mats = materializations_after(instance, graph, baseline)
            assert sorted((a, p) for _, a, p in mats) == sorted(expected), (
                f"materialized {sorted((a, p) for _, a, p in mats)}\nexpected {sorted(expected)}"
            )
            # in dependency order: every parent built in this loop before its child
            at = {(a, p): sid for sid, a, p in mats}
            for (asset, partition), sid in at.items():
                for parent in graph.get(AssetKey(asset)).parent_keys:
                    for p in (partition, None):
                        if (parent.to_user_string(), p) in at:
                            assert at[(parent.to_user_string(), p)] < sid, (asset, parent)

            # new checkpoints: every training stage retrained (new artifact versions), the gate failed again
            for checkpoint in ("pretrain_stage1", "pretrain_stage2", "pretrain_stage3", GATED):
                records = instance.fetch_materializations(AssetKey(checkpoint), 2).records
                versions = [r.asset_materialization.metadata["artifact_version"].value for r in records]
                assert len(versions) == 2 and versions[0] != versions[1], (checkpoint, versions)
                assert not records[0].asset_materialization.metadata["reused"].value
            # the run that carried the checkpoints failed at the gate and only there
            runs = [r for r in instance.get_runs() if r.run_id not in before]
            assert not instance.get_backfills()
            assert sorted(r.status.value for r in runs).count("FAILURE") == 1
            corpus_runs = [r for r in runs if r.tags.get("dagster/partition")]
            assert corpus_runs and {r.tags["dagster/partition"] for r in corpus_runs} == {"ko"}
            print(
                f"\nchain built in {built_s:.0f} s; loop settled {settled_s:.0f} s after the drop; "
                f"{len(runs)} runs; total {time.monotonic() - started:.0f} s"
            )
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
        log.close()
