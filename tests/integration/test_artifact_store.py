"""Versioned store on a local folder and on a real S3-compatible server (moto, its own process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resources.artifact_store import (
    PROVENANCE_FILE,
    ArtifactStore,
    ArtifactStoreError,
    base_provenance,
    compute_version,
)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(root=str(tmp_path / "artifacts"))
    bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore(
        root=f"s3://{bucket['bucket']}/prefix",
        endpoint_url=bucket["endpoint"],
        access_key_id="testing-key",
        secret_access_key="testing-secret",
    )


def build_once(store: ArtifactStore, asset: str, upstream: dict, calls: list, payload: str = "data"):
    """What materialize_versioned does, without Dagster: version -> reuse or build -> commit."""
    version = compute_version(asset, "1", upstream, {"model.hidden_size": 64})
    if store.has(asset, version):
        return version, True
    with store.stage(asset, version) as staging:
        calls.append(version)
        (staging / "out.txt").write_text(payload)
        (staging / "sub").mkdir()
        (staging / "sub" / "nested.json").write_text(json.dumps({"x": 1}))
        prov = base_provenance(
            asset=asset,
            version=version,
            code_version="1",
            preset_name="tiny",
            preset_slice={"model.hidden_size": 64},
            upstream={k: {"version": v, "uri": f"mem://{k}"} for k, v in upstream.items()},
        )
        ref = store.commit(staging, asset, version, prov)
    return version, ref.reused


def test_same_inputs_same_path_no_recompute(store):
    calls: list = []
    v1, reused1 = build_once(store, "thing", {"raw_corpus_en": "aaa"}, calls)
    v2, reused2 = build_once(store, "thing", {"raw_corpus_en": "aaa"}, calls)
    assert v1 == v2 and not reused1 and reused2
    assert calls == [v1]  # built once
    assert store.versions("thing") == [v1]
    with store.open("thing", v1, "sub/nested.json") as f:
        assert json.load(f) == {"x": 1}


def test_a_local_copy_has_the_files_and_leaves_nothing_behind(store):
    v, _ = build_once(store, "thing", {"raw_corpus_en": "aaa"}, [])
    with store.local_copy("thing", v) as copy:
        assert (copy / "out.txt").read_text() == "data" and json.loads((copy / "sub" / "nested.json").read_text())
    if store.is_s3:
        assert not copy.exists()  # the download is removed with the block
    else:
        assert copy == Path(store.path("thing", v)) and copy.exists()  # the artifact itself, untouched
    with pytest.raises(ArtifactStoreError, match="no committed artifact thing/nope"):
        with store.local_copy("thing", "nope"):
            pass


def test_changed_upstream_or_code_or_preset_gives_a_new_path(store):
    calls: list = []
    v1, _ = build_once(store, "thing", {"raw_corpus_en": "aaa"}, calls)
    v2, _ = build_once(store, "thing", {"raw_corpus_en": "bbb"}, calls)
    assert v1 != v2 and sorted(store.versions("thing")) == sorted([v1, v2])
    assert store.uri("thing", v1) != store.uri("thing", v2)
    assert compute_version("thing", "2", {"raw_corpus_en": "aaa"}, {"model.hidden_size": 64}) != v1
    assert compute_version("thing", "1", {"raw_corpus_en": "aaa"}, {"model.hidden_size": 128}) != v1


def test_provenance_records_what_built_it(store):
    v, _ = build_once(store, "thing", {"raw_corpus_en": "aaa"}, [])
    prov = store.read_provenance("thing", v)
    assert prov["asset"] == "thing" and prov["version"] == v and prov["code_version"] == "1"
    assert prov["upstream"] == {"raw_corpus_en": {"version": "aaa", "uri": "mem://raw_corpus_en"}}
    assert prov["preset"] == "tiny" and prov["preset_slice"] == {"model.hidden_size": 64}
    assert prov["git_commit"] and prov["created_at"] and prov["host"]
    assert set(prov["files"]) == {"out.txt", "sub/nested.json"}
    assert prov["files"]["out.txt"]["bytes"] == 4 and len(prov["files"]["out.txt"]["sha256"]) == 64


def test_exception_during_build_leaves_nothing_visible(store):
    version = compute_version("thing", "1", {}, {})
    with pytest.raises(RuntimeError, match="boom"):
        with store.stage("thing", version) as staging:
            (staging / "half.bin").write_bytes(b"x" * 1000)
            raise RuntimeError("boom")
    assert not store.has("thing", version) and store.versions("thing") == []
    assert not staging.exists()  # the staging folder is cleaned up too


def test_finished_artifact_is_never_overwritten(store):
    v, _ = build_once(store, "thing", {}, [], payload="first")
    with store.stage("thing", v) as staging:
        (staging / "out.txt").write_text("second")
        ref = store.commit(staging, "thing", v, {"asset": "thing"})
    assert ref.reused
    with store.open("thing", v, "out.txt") as f:
        assert f.read() == b"first"
    with pytest.raises(ArtifactStoreError, match="immutable"):
        store.open("thing", v, "out.txt", "wb")


def test_leftovers_of_a_crashed_upload_are_invisible_and_repaired(store):
    """A commit killed after some files but before provenance.json: not an artifact; a retry fixes it."""
    version = compute_version("thing", "1", {"u": "1"}, {"model.hidden_size": 64})
    target = store.path("thing", version)
    store.fs.makedirs(target, exist_ok=True)
    with store.fs.open(f"{target}/out.txt", "wb") as f:
        f.write(b"partial")
    assert not store.has("thing", version) and store.versions("thing") == []
    with pytest.raises(ArtifactStoreError, match="no committed artifact"):
        store.open("thing", version, "out.txt")
    v, reused = build_once(store, "thing", {"u": "1"}, [])
    assert v == version and not reused
    with store.open("thing", v, "out.txt") as f:
        assert f.read() == b"data"


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    from resources.artifact_store import ArtifactStore
    store = ArtifactStore(root=sys.argv[1], endpoint_url=sys.argv[2] or None,
                          access_key_id="testing-key", secret_access_key="testing-secret")
    with store.stage("thing", "v1") as staging:
        (staging / "big.bin").write_bytes(b"x" * 100_000)
        if sys.argv[3] == "during-commit":
            # die after the data file is uploaded/moved but before the commit finishes
            real_put = store.fs.put_file
            def put_then_die(src, dst, **kw):
                real_put(src, dst, **kw)
                os._exit(9)
            store.fs.put_file = put_then_die
            store.commit(staging, "thing", "v1", {"asset": "thing"})
        os._exit(9)  # SIGKILL-like: no cleanup handlers run
""")


def run_killed_writer(store: ArtifactStore, when: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, store.root, store.endpoint_url or "", when],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr


def test_a_writer_killed_mid_build_leaves_no_visible_artifact(store):
    run_killed_writer(store, "during-build")
    assert not store.has("thing", "v1") and store.versions("thing") == []


def test_a_writer_killed_mid_upload_leaves_no_visible_artifact(s3_bucket):
    # S3 has no rename: data objects land before provenance.json; dying in between must not publish.
    store = ArtifactStore(
        root=f"s3://{s3_bucket['bucket']}/p",
        endpoint_url=s3_bucket["endpoint"],
        access_key_id="testing-key",
        secret_access_key="testing-secret",
    )
    run_killed_writer(store, "during-commit")
    assert store.fs.exists(store.path("thing", "v1", "big.bin"))  # the upload really was cut short
    assert not store.has("thing", "v1") and store.versions("thing") == []


def test_s3_without_credentials_is_a_clear_error():
    store = ArtifactStore(root="s3://bucket/prefix")
    with pytest.raises(ArtifactStoreError, match="has no S3 credentials: set AWS_ACCESS_KEY_ID"):
        store.has("thing", "v1")


def test_bad_names_are_refused(tmp_path):
    store = ArtifactStore(root=str(tmp_path))
    for bad in ("", "../up", ".staging", "a/b"):
        with pytest.raises(ArtifactStoreError, match="invalid"):
            store.path(bad, "v1")
    assert PROVENANCE_FILE == "provenance.json"
