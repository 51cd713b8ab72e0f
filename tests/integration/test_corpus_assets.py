"""filtered_corpus / deduplicated_corpus as Dagster assets: asset checks on the demo corpus, reuse of a
finished pipeline, per-partition versions, the S3 path, and bad input that leaves nothing half-written."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from assets.corpus import raw_corpus_sources
from assets.corpus_pipeline import deduplicated_corpus, filtered_corpus
from config import CORPUS_DOMAINS
from kexaone_dag.definitions import build_definitions
from kexaone_dag.resources_by_env import build_resources
from resources.warehouse import Warehouse
from tests.conftest import S3_CREDS, edit_first_document

CORPUS_ASSETS = ("filtered_corpus", "deduplicated_corpus")


def run_data(defs, instance):
    """The sources observed, then the ``data`` job: everything before training (this module is about the
    corpus; the whole DAG with training is tests/e2e/test_tiny_chain.py)."""
    for job in ("observe_raw_corpus", "data"):
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result


def partition_metadata(result, asset: str) -> dict[str, dict]:
    return {
        m.partition: {k: v.value for k, v in m.metadata.items()} for m in result.asset_materializations_for_node(asset)
    }


def inline_png(markdown: str) -> bytes:
    """The PNG behind an inline plot: markdown ``![...](data:image/png;base64,...)``."""
    assert markdown.startswith("![") and markdown.endswith(")")
    png = base64.b64decode(markdown.split("(data:image/png;base64,", 1)[1][:-1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 60_000
    return png


def committed(home, asset: str, partition: str) -> list[str]:
    folder = home / "artifacts" / f"{asset}__{partition}"
    return sorted(p.name for p in folder.iterdir() if (p / "provenance.json").exists()) if folder.exists() else []


@pytest.mark.slow
def test_demo_corpus_checks_pass_rerun_reuses_and_a_changed_source_rebuilds_only_its_partition(kexaone_env):
    defs = build_definitions()
    home = kexaone_env["home"]
    with DagsterInstance.ephemeral() as instance:
        first = run_data(defs, instance)
        checks = {
            (
                e.event_specific_data.asset_key.to_user_string(),
                e.event_specific_data.check_name,
            ): e.event_specific_data.passed
            for e in first.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert {k: v for k, v in checks.items() if k[0] in CORPUS_ASSETS} == {
            ("filtered_corpus", "non_empty_output"): True,
            ("filtered_corpus", "language_purity"): True,
            ("filtered_corpus", "every_document_accounted_for"): True,
            ("filtered_corpus", "planted_noise_removed"): True,
            ("deduplicated_corpus", "non_empty_output"): True,
            ("deduplicated_corpus", "language_purity"): True,
            ("deduplicated_corpus", "every_document_accounted_for"): True,
            ("deduplicated_corpus", "planted_duplicates_removed"): True,
        }
        built = {a: partition_metadata(first, a) for a in CORPUS_ASSETS}
        for asset in CORPUS_ASSETS:
            assert set(built[asset]) == set(CORPUS_DOMAINS)
            for partition, md in built[asset].items():
                assert md["reused"] is False and md["artifact_version"] in md["dagster/uri"]
                assert md["dagster/uri"] == str(home / "artifacts" / f"{asset}__{partition}" / md["artifact_version"])
                assert committed(home, asset, partition) == [md["artifact_version"]]
                # native tables of the steps and rejections, and an inline chart of the steps
                steps = [r.data for r in md["steps"].records]
                assert steps and all(s["docs_in"] == s["docs_out"] + s["docs_dropped"] for s in steps)
                assert sum(r.data["documents"] for r in md["rejections"].records) == md["docs_excluded"]
                assert [c.name for c in md["rejections"].schema.columns] == ["step", "reason", "documents", "bytes"]
                assert inline_png(md["steps_chart"]) == (Path(md["dagster/uri"]) / "steps.png").read_bytes()
        assert [r.data["step"] for r in built["filtered_corpus"]["ja"]["steps"].records][:3] == [
            "read",
            "url",
            "language_id",
        ]
        dedup_en = built["deduplicated_corpus"]["en"]
        assert (dedup_en["exact_duplicates_removed"], dedup_en["near_duplicates_removed"]) == (2, 2)
        provenance = json.loads(
            (
                home / "artifacts" / "deduplicated_corpus__en" / dedup_en["artifact_version"] / "provenance.json"
            ).read_text()
        )
        assert provenance["upstream"] == {
            "filtered_corpus__en": {
                "version": built["filtered_corpus"]["en"]["artifact_version"],
                "uri": built["filtered_corpus"]["en"]["dagster/uri"],
            }
        }
        assert json.loads(
            (
                home
                / "artifacts"
                / "filtered_corpus__code"
                / built["filtered_corpus"]["code"]["artifact_version"]
                / "provenance.json"
            ).read_text()
        )["upstream"]["planted_labels"]

        wh = Warehouse(path=str(home / "warehouse.duckdb"))
        rows = wh.query(
            "select asset, partition, docs_in, docs_out, language_purity, all_accounted_for from corpus_partition_stats"
        )
        assert len(rows) == 16 and all(r["all_accounted_for"] and r["docs_out"] > 0 for r in rows)
        assert all(r["language_purity"] >= 0.95 for r in rows if r["partition"] != "code")
        steps = wh.query(
            "select step, docs_in, docs_out from corpus_filter_stats where asset = 'filtered_corpus' "
            "and partition = 'ja' order by step_index"
        )
        assert [s["step"] for s in steps] == [
            "read",
            "url",
            "language_id",
            "gopher_repetition",
            "gopher_quality",
            "fineweb_quality",
            "pii",
        ]
        reasons = wh.query(
            "select step, reason, documents from corpus_rejections where partition = 'ko' "
            "and asset = 'deduplicated_corpus' order by step"
        )
        assert reasons == [
            {"step": "exact_dedup", "reason": "exact_duplicate", "documents": 2},
            {"step": "minhash_dedup", "reason": "near_duplicate", "documents": 2},
        ]

        # the same inputs again: every partition is found in the store, nothing is rebuilt
        started = time.monotonic()
        second = run_data(defs, instance)
        for asset in CORPUS_ASSETS:
            again = partition_metadata(second, asset)
            assert {p: (md["reused"], md["artifact_version"]) for p, md in again.items()} == {
                p: (True, md["artifact_version"]) for p, md in built[asset].items()
            }
            for p, md in again.items():  # the reused artifacts show what they were built with
                assert (md["steps"], md["rejections"], md["steps_chart"]) == (
                    built[asset][p]["steps"],
                    built[asset][p]["rejections"],
                    built[asset][p]["steps_chart"],
                )
        assert time.monotonic() - started < 60
        assert sum(len(committed(home, a, p)) for a in CORPUS_ASSETS for p in CORPUS_DOMAINS) == 16

        # one Korean document changes: only the ko partitions get a new version
        edit_first_document(kexaone_env["corpus"] / "ko")
        third = run_data(defs, instance)
        for asset in CORPUS_ASSETS:
            rebuilt = {p for p, md in partition_metadata(third, asset).items() if not md["reused"]}
            assert rebuilt == {"ko"}
            assert len(committed(home, asset, "ko")) == 2 and len(committed(home, asset, "en")) == 1


def test_one_partition_run_records_its_own_data_version(kexaone_env):
    defs = build_definitions()
    assets = [*raw_corpus_sources, filtered_corpus, deduplicated_corpus]
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            assets, partition_key="code", instance=instance, resources=defs.resources, selection=list(CORPUS_ASSETS)
        )
        assert result.success
        for asset in CORPUS_ASSETS:
            record = instance.get_latest_data_version_record(AssetKey(asset), is_source=False, partition_key="code")
            entry = record.event_log_entry
            version = entry.asset_materialization.metadata["artifact_version"].value
            assert entry.dagster_event.event_specific_data.materialization.tags["dagster/data_version"] == version
        checks = {
            e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert checks["planted_duplicates_removed"] and checks["language_purity"]  # n/a for code: passes


def test_a_crash_mid_partition_leaves_no_partial_artifact(kexaone_env):
    """A corrupt file read after good ones fails the step naming the file; the documents already written
    stay in staging, which is removed: no filtered_corpus__es version appears."""
    (kexaone_env["corpus"] / "es" / "zz-broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [*raw_corpus_sources, filtered_corpus],
            partition_key="es",
            instance=instance,
            resources=defs.resources,
            selection=["filtered_corpus"],
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.cause.message
    assert "zz-broken.jsonl.gz: corrupt gzip stream" in message and "CorpusSourceError" in message
    artifacts = kexaone_env["home"] / "artifacts"
    assert committed(kexaone_env["home"], "filtered_corpus", "es") == []
    assert not (artifacts / "filtered_corpus__es").exists() or not any((artifacts / "filtered_corpus__es").iterdir())
    assert list((artifacts / ".staging" / "filtered_corpus__es").iterdir()) == []


def test_parquet_without_text_column_fails_the_step_naming_the_file(kexaone_env):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["de-x"], "body": ["Kein Text."]}), kexaone_env["corpus"] / "de" / "web-02.parquet")
    defs = build_definitions()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [*raw_corpus_sources, filtered_corpus],
            partition_key="de",
            instance=instance,
            resources=defs.resources,
            selection=["filtered_corpus"],
            raise_on_error=False,
        )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "web-02.parquet: Parquet file has no 'text' column (columns: id, body)"
        in failure.event_specific_data.error.cause.message
    )
    assert committed(kexaone_env["home"], "filtered_corpus", "de") == []


@pytest.mark.slow
def test_corpus_and_artifacts_on_s3(kexaone_env, s3_bucket, monkeypatch):
    """Raw corpus read from S3 (Parquet + JSONL through s3fs), artifacts written to S3, reuse on rerun, and
    the credentials appear in no artifact."""
    fs, bucket = s3_bucket["fs"], s3_bucket["bucket"]
    fs.put(str(kexaone_env["corpus"] / "de"), f"{bucket}/corpus/de", recursive=True)
    monkeypatch.setenv("KEXAONE_CORPUS_ROOT", f"s3://{bucket}/corpus")
    monkeypatch.setenv("KEXAONE_ARTIFACT_ROOT", f"s3://{bucket}/artifacts")
    monkeypatch.setenv("KEXAONE_S3_ENDPOINT_URL", s3_bucket["endpoint"])
    resources = build_resources()
    assets = [*raw_corpus_sources, filtered_corpus, deduplicated_corpus]
    with DagsterInstance.ephemeral() as instance:
        first = materialize(
            assets, partition_key="de", instance=instance, resources=resources, selection=list(CORPUS_ASSETS)
        )
        assert first.success
        checks = [
            e.event_specific_data.passed for e in first.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert len(checks) == 8 and all(checks)
        built = {a: partition_metadata(first, a)["de"] for a in CORPUS_ASSETS}
        for asset, md in built.items():
            prefix = f"{bucket}/artifacts/{asset}__de/{md['artifact_version']}"
            assert md["dagster/uri"] == f"s3://{prefix}"
            files = fs.find(prefix)
            assert f"{prefix}/provenance.json" in files and any("/documents/" in f for f in files)
            for path in files:
                assert S3_CREDS["AWS_SECRET_ACCESS_KEY"].encode() not in fs.cat(path), path
        assert built["deduplicated_corpus"]["docs_out"] == 24 and built["filtered_corpus"]["docs_in"] == 31

        second = materialize(
            assets, partition_key="de", instance=instance, resources=resources, selection=list(CORPUS_ASSETS)
        )
        assert all(partition_metadata(second, a)["de"]["reused"] for a in CORPUS_ASSETS)
    assert not (kexaone_env["home"] / "artifacts").exists()
