"""The real Dagster webserver (+ daemon, via `dagster dev`, exactly what `make ui` runs) on 127.0.0.1:
GraphQL lists the asset graph, launches a materialization and reads the result back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.conftest import dagster_ui

pytestmark = pytest.mark.slow

ASSET_NODES = """
query { assetNodes { assetKey { path } dependencyKeys { path } opVersion isObservable isMaterializable } }
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""
MATERIALIZATIONS = """
query Mat($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label
        ... on TextMetadataEntry { text } ... on PathMetadataEntry { path } ... on IntMetadataEntry { intValue } } } }
  }
}
"""


@pytest.fixture
def webserver(kexaone_env):
    with dagster_ui(kexaone_env["tmp"] / "dagster-dev.log") as base:
        yield f"{base}/graphql"


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_graphql_lists_assets_and_launches_a_materialization(webserver, kexaone_env):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in gql(webserver, ASSET_NODES)["assetNodes"]}
    sources = {f"raw_corpus_{s}" for s in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")}
    assert sources | {"raw_corpus_stats"} <= set(nodes)
    assert all(nodes[s]["isObservable"] for s in sources)
    stats = nodes["raw_corpus_stats"]
    assert {"/".join(d["path"]) for d in stats["dependencyKeys"]} == sources
    assert stats["opVersion"] == "1" and stats["isMaterializable"]

    params = {
        "selector": {
            "repositoryLocationName": "kexaone_dag",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["raw_corpus_stats"]}],
        },
        "mode": "default",
        "runConfigData": {},
    }
    launched = gql(webserver, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline, status = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        status = gql(webserver, RUN, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", (kexaone_env["tmp"] / "dagster-dev.log").read_text()[-4000:]

    mats = gql(webserver, MATERIALIZATIONS, {"path": ["raw_corpus_stats"]})["assetOrError"]["assetMaterializations"]
    assert mats and mats[0]["runId"] == run_id
    entries = {e["label"]: e for e in mats[0]["metadataEntries"]}
    uri = entries["dagster/uri"].get("path") or entries["dagster/uri"].get("text")
    assert uri.startswith(str(kexaone_env["home"] / "artifacts" / "raw_corpus_stats"))
    assert (Path(uri) / "provenance.json").exists() and (Path(uri) / "stats.json").exists()
    assert entries["documents"]["intValue"] > 0
