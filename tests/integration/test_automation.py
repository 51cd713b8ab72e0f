"""Declarative automation on a real instance (``evaluate_automation_conditions``, no daemon; the daemon runs
the same loop in tests/e2e/test_automation_daemon.py): a changed corpus folder -> ``raw_corpus_watch``
records a new observation of exactly that source, with the version the observable source reports -> its
own corpus partition and ``raw_corpus_stats`` are requested, then what reads them; nothing for an unchanged
folder; turned on, automation catches up on missing and stale assets."""

from __future__ import annotations

import shutil

import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, evaluate_automation_conditions, materialize

from config import CORPUS_DOMAINS
from kexaone_dag.definitions import build_definitions
from kexaone_dag.sensors import watch_raw_corpus
from resources.corpus_sources import CorpusSources
from tests.conftest import edit_first_document

pytestmark = pytest.mark.timeout(600)

STATS = AssetKey("raw_corpus_stats")
FILTERED, DEDUP = AssetKey("filtered_corpus"), AssetKey("deduplicated_corpus")
from kexaone_dag.jobs import POST_TRAINING_DATA, TRAINING_GROUPS  # noqa: E402


def observe(defs, instance) -> dict[str, str]:
    result = defs.resolve_job_def("observe_raw_corpus").execute_in_process(instance=instance)
    assert result.success
    return {
        obs.asset_key.to_user_string(): obs.data_version
        for obs in (
            e.asset_observation_data.asset_observation
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        )
    }


def latest_observation(instance, source: str):
    record = instance.get_latest_data_version_record(AssetKey(f"raw_corpus_{source}"), is_source=True)
    return record.event_log_entry.asset_observation if record else None


def watch(instance, corpus, cursor=None):
    """One tick of raw_corpus_watch, its events recorded as the sensor daemon records them."""
    result = watch_raw_corpus(instance, CorpusSources(root=str(corpus)), cursor)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def requested(result) -> dict[str, set]:
    """{asset: requested partition keys (None: unpartitioned)} of one evaluation."""
    keys = build_definitions().resolve_asset_graph().get_all_asset_keys()
    return {k.to_user_string(): set(result.get_requested_partitions(k)) for k in keys if result.get_num_requested(k)}


def materialize_partitions(defs, instance, asset: AssetKey, partitions) -> None:
    for p in partitions:
        result = materialize(
            list(defs.assets),
            instance=instance,
            resources=defs.resources,
            selection=AssetSelection.assets(asset),
            partition_key=p,
        )
        assert result.success


def test_the_watch_sensor_records_what_the_observable_source_reports_for_exactly_the_changed_source(kexaone_env):
    corpus = kexaone_env["corpus"]
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        first = watch(instance, corpus)
        assert sorted(e.asset_key.to_user_string() for e in first.asset_events) == [
            f"raw_corpus_{s}" for s in sorted(CORPUS_DOMAINS)
        ]
        assert watch(instance, corpus, first.cursor).asset_events == []  # nothing changed: nothing recorded

        # the observable source (observe_raw_corpus) reports the same data version, metadata and tags
        by_sensor = {s: latest_observation(instance, s) for s in CORPUS_DOMAINS}
        by_source = observe(defs, instance)
        for s in CORPUS_DOMAINS:
            from_job = latest_observation(instance, s)
            assert by_source[f"raw_corpus_{s}"] == by_sensor[s].tags["dagster/data_version"]
            assert by_sensor[s].tags == from_job.tags == {"dagster/data_version": by_source[f"raw_corpus_{s}"]}
            assert by_sensor[s].metadata == from_job.metadata
        # the job's observations carry the same versions: the sensor sees no change
        second = watch(instance, corpus, first.cursor)
        assert second.asset_events == []

        edit_first_document(corpus / "ko")
        third = watch(instance, corpus, second.cursor)
        assert [e.asset_key.to_user_string() for e in third.asset_events] == ["raw_corpus_ko"]
        assert observe(defs, instance)["raw_corpus_ko"] == third.asset_events[0].tags["dagster/data_version"]

        # a broken source is named in the tick's skip reason; the others are still watched
        shutil.rmtree(corpus / "de")
        edit_first_document(corpus / "en")
        fourth = watch(instance, corpus, third.cursor)
        assert [e.asset_key.to_user_string() for e in fourth.asset_events] == ["raw_corpus_en"]
        skipped = fourth.skip_reason.skip_message
        assert "raw_corpus_de: source folder" in skipped and "does not exist" in skipped


def test_a_changed_source_requests_its_own_partition_then_its_readers_and_nothing_else(kexaone_env):
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    training = {
        k.to_user_string() for k in (AssetSelection.groups(*TRAINING_GROUPS) - POST_TRAINING_DATA).resolve(graph)
    }
    with DagsterInstance.ephemeral() as instance:
        first = observe(defs, instance)
        assert len(first) == 8 and all(first.values())
        assert defs.resolve_job_def("data").execute_in_process(instance=instance).success

        # turned on: the missing training assets are requested (catch-up); the data half is current
        result = evaluate_automation_conditions(defs=defs, instance=instance)
        assert requested(result) == {name: {None} for name in training}
        # requested once: the next tick requests nothing (they never ran here: the daemon test runs them)
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 0

        # re-observing an unchanged corpus records the same data versions: nothing is requested
        assert observe(defs, instance) == first
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 0

        # edit one document in the Korean folder -> new data version for raw_corpus_ko only
        edit_first_document(kexaone_env["corpus"] / "ko")
        second = observe(defs, instance)
        assert [k for k in first if first[k] != second[k]] == ["raw_corpus_ko"]

        # its own partition (filtered ko, and dedup ko in the same run) and the inventory; the readers of
        # deduplicated_corpus (unpartitioned: another run) wait for its new data
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert requested(result) == {
            "raw_corpus_stats": {None},
            "filtered_corpus": {"ko"},
            "deduplicated_corpus": {"ko"},
        }

        # what the daemon's runs do: materialize them; then everything that reads deduplicated_corpus follows
        materialize_partitions(defs, instance, FILTERED, ["ko"])
        materialize_partitions(defs, instance, DEDUP, ["ko"])
        assert materialize([*defs.assets], instance=instance, resources=defs.resources, selection=[STATS]).success
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        readers = {
            k.to_user_string() for k in AssetSelection.assets(DEDUP).downstream(include_self=False).resolve(graph)
        }
        assert requested(result) == {name: {None} for name in readers}
        assert "filtered_corpus" not in requested(result) and "raw_corpus_stats" not in requested(result)
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 0


def test_turned_on_it_catches_up_missing_and_stale_partitions_by_their_own_source(kexaone_env):
    """The reported case: a fresh filtered_corpus ko, deduplicated_corpus ko missing, automation turned on ->
    its first tick requests deduplicated_corpus ko. Stale counts per partition: a new raw_corpus_ko makes
    filtered_corpus ko stale, not filtered_corpus de (the UI's staleness, over the graph's edges, says both)."""
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        observe(defs, instance)
        materialize_partitions(defs, instance, FILTERED, ["ko", "de"])
        materialize_partitions(defs, instance, DEDUP, ["de"])
        edit_first_document(kexaone_env["corpus"] / "ko")
        observe(defs, instance)  # while automation was off

        result = evaluate_automation_conditions(defs=defs, instance=instance)
        others = set(CORPUS_DOMAINS) - {"ko", "de"}
        assert result.get_requested_partitions(FILTERED) == others | {"ko"}  # missing, and ko stale; de current
        assert result.get_requested_partitions(DEDUP) == others | {"ko"}  # with its filtered partition, same run
        assert result.get_requested_partitions(STATS) == {None}
        # (and the post-training data roots, missing and independent of the corpus)
        roots = {"tool_use_tasks", "rl_prompts"}
        assert not requested(result).keys() - {"filtered_corpus", "deduplicated_corpus", "raw_corpus_stats", *roots}

    with DagsterInstance.ephemeral() as instance:
        observe(defs, instance)
        materialize_partitions(defs, instance, FILTERED, ["ko"])
        result = evaluate_automation_conditions(defs=defs, instance=instance)
        assert "ko" in result.get_requested_partitions(DEDUP)
