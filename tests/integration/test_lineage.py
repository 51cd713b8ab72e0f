"""`kexaone lineage`: the exact artifact versions behind an artifact, checked against the provenance files
it reads and against what the real webserver's GraphQL says about the same instance (its asset graph and
the latest materializations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from config import CORPUS_DOMAINS
from kexaone_dag.definitions import build_definitions
from tests.conftest import REPO, dagster_ui, isolated_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ASSET_NODES = "query { assetNodes { assetKey { path } dependencyKeys { path } isObservable } }"
LATEST = """
query Latest($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 20) { partition metadataEntries { label
        ... on TextMetadataEntry { text } } } }
  }
}
"""
TARGET = "superbpe_tokenizer"


def kexaone(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kexaone"), *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def built_tokenizer(tmp_path_factory):
    """The corpus and both tokenizers materialized on a persistent instance ($DAGSTER_HOME of the env), once
    for the module: both tests only read it."""
    with pytest.MonkeyPatch.context() as mp:
        env = isolated_env(tmp_path_factory.mktemp("lineage"), mp)
        defs = build_definitions()
        with DagsterInstance.get() as instance:
            assert defs.resolve_job_def("observe_raw_corpus").execute_in_process(instance=instance).success
            assert defs.resolve_job_def("data").execute_in_process(instance=instance).success
        yield env


def test_lineage_follows_the_provenance_files_back_to_the_raw_corpus(built_tokenizer):
    out = kexaone("lineage", TARGET, "--json")
    assert out.returncode == 0, out.stderr
    nodes = json.loads(out.stdout)
    assert nodes[0]["artifact"] == TARGET
    store = built_tokenizer["home"] / "artifacts"
    by_name = {n["artifact"]: n for n in nodes}
    assert len(by_name) == len(nodes)  # each artifact once (one version of each in this chain)
    for node in nodes:
        if node["kind"] == "raw source":
            continue
        provenance = json.loads((store / node["artifact"] / node["version"] / "provenance.json").read_text())
        assert provenance["version"] == node["version"]
        expected = sorted((role, up["version"]) for role, up in provenance["upstream"].items())
        assert sorted((role, version) for role, _, version in node["inputs"]) == expected
    sources = sorted(n["artifact"] for n in nodes if n["kind"] == "raw source")
    # every corpus folder, and the planted-label file the code filter's check reads
    assert sources == sorted([*(f"raw_corpus_{d}" for d in CORPUS_DOMAINS), "planted_labels"])
    # the raw sources' versions are the data versions the instance observed
    with DagsterInstance.get() as instance:
        for name in (n for n in sources if n.startswith("raw_corpus_")):
            record = instance.get_latest_data_version_record(AssetKey(name), is_source=True)
            assert record is not None
            assert by_name[name]["version"] == record.event_log_entry.asset_observation.data_version

    # the text form prints the same artifacts, and a partition or an explicit version can be asked for
    text = kexaone("lineage", TARGET)
    assert text.returncode == 0 and all(f"{n['artifact']}@{n['version']}" in text.stdout for n in nodes)
    ko = by_name["deduplicated_corpus__ko"]
    part = kexaone("lineage", "deduplicated_corpus", "--partition", "ko", "--json")
    assert part.returncode == 0 and json.loads(part.stdout)[0]["version"] == ko["version"]
    pinned = kexaone("lineage", "deduplicated_corpus__ko", "--version", ko["version"], "--json")
    assert json.loads(pinned.stdout) == json.loads(part.stdout)
    missing = kexaone("lineage", TARGET, "--version", "0000000000000000")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no committed artifact")


def test_lineage_agrees_with_the_webservers_graph_and_latest_materializations(built_tokenizer):
    import requests

    nodes = json.loads(kexaone("lineage", TARGET, "--json").stdout)
    with dagster_ui(built_tokenizer["tmp"] / "webserver.log", daemon=False) as base:
        url = f"{base}/graphql"

        def gql(query: str, variables: dict | None = None) -> dict:
            response = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60)
            body = response.json()
            assert "errors" not in body, body["errors"]
            return body["data"]

        graph = {
            n["assetKey"]["path"][-1]: [d["path"][-1] for d in n["dependencyKeys"]]
            for n in gql(ASSET_NODES)["assetNodes"]
        }
        # the asset graph's upstream closure of the target = the assets of the lineage
        closure, todo = set(), [TARGET]
        while todo:
            key = todo.pop()
            if key not in closure:
                closure.add(key)
                todo += graph[key]
        lineage_assets = {n["artifact"].split("__")[0] for n in nodes if n["kind"] == "artifact"}
        lineage_sources = {n["artifact"] for n in nodes if n["artifact"].startswith("raw_corpus_")}
        assert lineage_assets | lineage_sources == closure
        # every artifact of the lineage is its asset's latest materialization (per partition), as GraphQL reports
        for node in (n for n in nodes if n["kind"] == "artifact"):
            asset, _, partition = node["artifact"].partition("__")
            mats = gql(LATEST, {"path": [asset]})["assetOrError"]["assetMaterializations"]
            latest = next(m for m in mats if (m["partition"] or "") == partition)
            entries = {e["label"]: e.get("text") for e in latest["metadataEntries"]}
            assert entries["artifact_version"] == node["version"], node["artifact"]
