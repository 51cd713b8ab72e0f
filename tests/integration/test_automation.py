"""Declarative automation: a changed corpus folder -> new observation -> downstream requested."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance, evaluate_automation_conditions

from kexaone_dag.definitions import build_definitions
from tests.conftest import edit_first_document

STATS = AssetKey("raw_corpus_stats")


def observe(defs, instance):
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


def test_changed_corpus_requests_downstream_and_unchanged_requests_nothing(kexaone_env):
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        first = observe(defs, instance)
        assert len(first) == 8 and all(first.values())
        assert defs.resolve_job_def("data").execute_in_process(instance=instance).success

        cursor = evaluate_automation_conditions(defs=defs, instance=instance).cursor
        # re-observing an unchanged corpus records the same data versions: nothing is requested
        assert observe(defs, instance) == first
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert result.total_requested == 0 and result.get_num_requested(STATS) == 0
        cursor = result.cursor

        # edit one document in the Korean folder -> new data version for raw_corpus_ko only
        edit_first_document(kexaone_env["corpus"] / "ko")
        second = observe(defs, instance)
        assert [k for k in first if first[k] != second[k]] == ["raw_corpus_ko"]

        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert result.get_num_requested(STATS) == 1
        # the partitioned corpus assets depend on every raw source (Dagster maps an unpartitioned upstream
        # onto all partitions), so all 8 partitions of filtered_corpus and deduplicated_corpus are requested;
        # only the ko partition gets a new artifact version (tests/integration/test_corpus_assets.py checks the reuse)
        assert result.get_num_requested(AssetKey("filtered_corpus")) == 8
        assert result.get_num_requested(AssetKey("deduplicated_corpus")) == 8
        assert result.total_requested == 1 + 8 + 8
