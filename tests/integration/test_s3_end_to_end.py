"""The same code location pointed at S3 by environment variables only: credentials through EnvVar,
artifacts and provenance on a real S3-compatible server, reuse on the second run."""

from __future__ import annotations

import json

from dagster import AssetKey, DagsterInstance

from kexaone_dag.definitions import build_definitions
from resources.artifact_store import ArtifactStore

# the corpus chain: raw stats, then filter -> dedup reading each other's artifacts back from S3
CHAIN = [AssetKey(k) for k in ("raw_corpus_stats", "filtered_corpus", "deduplicated_corpus")]


def test_dag_on_s3_builds_then_reuses(kexaone_env, s3_bucket, monkeypatch):
    root = f"s3://{s3_bucket['bucket']}/kexaone"
    monkeypatch.setenv("KEXAONE_ARTIFACT_ROOT", root)
    monkeypatch.setenv("KEXAONE_S3_ENDPOINT_URL", s3_bucket["endpoint"])
    defs = build_definitions()
    store = defs.resources["artifact_store"]
    assert store.access_key_id.env_var_name == "AWS_ACCESS_KEY_ID"  # an EnvVar, not a copied secret

    with DagsterInstance.ephemeral() as instance:
        first = defs.resolve_job_def("data").execute_in_process(instance=instance, asset_selection=CHAIN)
        assert first.success
        mat = first.asset_materializations_for_node("raw_corpus_stats")[0]
        uri, version = mat.metadata["dagster/uri"].value, mat.metadata["artifact_version"].value
        assert uri == f"{root}/raw_corpus_stats/{version}" and mat.metadata["reused"].value is False

        fs = s3_bucket["fs"]
        listed = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(uri.removeprefix("s3://")))
        assert listed == ["manifests.json", "provenance.json", "stats.json"]
        provenance = json.loads(fs.cat(f"{uri.removeprefix('s3://')}/provenance.json"))
        assert provenance["version"] == version and len(provenance["upstream"]) == 8
        assert not (kexaone_env["home"] / "artifacts").exists()  # nothing went to the local default
        dedup = [m.metadata["dagster/uri"].value for m in first.asset_materializations_for_node("deduplicated_corpus")]
        assert dedup and all(u.startswith(f"{root}/deduplicated_corpus__") for u in dedup)

        second = defs.resolve_job_def("data").execute_in_process(instance=instance, asset_selection=CHAIN)
        again = second.asset_materializations_for_node("raw_corpus_stats")[0]
        assert again.metadata["artifact_version"].value == version and again.metadata["reused"].value is True
        assert all(m.metadata["reused"].value for m in second.asset_materializations_for_node("deduplicated_corpus"))

    resolved = ArtifactStore(
        root=root, endpoint_url=s3_bucket["endpoint"], access_key_id="testing-key", secret_access_key="testing-secret"
    )
    assert resolved.versions("raw_corpus_stats") == [version]
