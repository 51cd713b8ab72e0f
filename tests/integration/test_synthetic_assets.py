"""The synthetic assets in the DAG on the demo corpus: outputs, metadata, warehouse rows, reuse on the
second run, and a new version when the teacher changes (the HTTP teacher on a local server)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from kexaone_dag.definitions import build_definitions
from resources.warehouse import Warehouse
from tests.chat_server import ChatServer
from tests.conftest import private_demo_env
from tests.synthetic_support import recompute

pytestmark = pytest.mark.slow
SELECTION = [
    AssetKey(k)
    for k in ("filtered_corpus", "deduplicated_corpus", "thinking_augmented_data", "multilingual_synthetic_data")
]


def teacher_answer(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    q = re.search(r"\nQuestion: (.+)$", user)
    if q is None:  # a document without quantities: the teacher asks (and answers) its own question
        return (
            "Question: What is the main topic of the document?\n<think>\nThe title and the first "
            "paragraph name the subject, and the later paragraphs explain it in more detail.\n</think>\n"
            "Answer: the subject named in its title."
        )
    return (
        "<think>\nThe document states the quantities needed; I apply the matching rule to them and "
        f"check the arithmetic again before answering.\n</think>\nAnswer: {recompute(q[1]):.6f}"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic")
    with private_demo_env(tmp) as env:
        for var in ("KEXAONE_TEACHER_BASE_URL", "KEXAONE_TEACHER_MODEL", "KEXAONE_TEACHER_API_KEY"):
            env.delenv(var, raising=False)
        with DagsterInstance.ephemeral() as instance:
            job = build_definitions().resolve_job_def("data")
            first = job.execute_in_process(instance=instance, asset_selection=SELECTION)
            second = job.execute_in_process(instance=instance, asset_selection=SELECTION)
            with ChatServer(teacher_answer) as server:
                env.setenv("KEXAONE_TEACHER_BASE_URL", server.url)
                env.setenv("KEXAONE_TEACHER_MODEL", "teacher-test")
                env.setenv("KEXAONE_TEACHER_API_KEY", "test-key")
                http_job = build_definitions().resolve_job_def("data")
                third = http_job.execute_in_process(
                    instance=instance, asset_selection=[AssetKey("thinking_augmented_data")]
                )
                attempts = server.attempts
        yield {"first": first, "second": second, "third": third, "attempts": attempts, "home": tmp / "home"}


def mat(result, name):
    return result.asset_materializations_for_node(name)[0].metadata


def lines(uri: str, name: str) -> list[dict]:
    return [json.loads(x) for x in (Path(uri) / name).read_text(encoding="utf-8").splitlines()]


def test_thinking_augmented_data_is_built_verified_and_reused(runs):
    md = mat(runs["first"], "thinking_augmented_data")
    assert md["reused"].value is False and md["teacher"].value == "offline-programmatic-v1"
    samples = lines(md["dagster/uri"].value, "samples.jsonl")
    rejected = lines(md["dagster/uri"].value, "rejected.jsonl")
    assert md["samples"].value == len(samples) >= 10 and md["rejected"].value == len(rejected)
    assert md["verified_samples"].value == len(samples)
    assert md["rejection_reasons"].value == {"no_verifiable_quantity": len(rejected)}
    assert md["teacher_tokens_in"].value == 0 and md["teacher_tokens_out"].value == 0
    for s in samples:
        assert {s["source_doc_id"], s["teacher"], s["template_version"]} >= {"offline-programmatic-v1", "v1"}
        assert "<think>\n" in s["text"] and "\n</think>\nAnswer: " in s["text"]
    again = mat(runs["second"], "thinking_augmented_data")
    assert again["reused"].value is True and again["artifact_version"].value == md["artifact_version"].value
    assert again["samples"].value == md["samples"].value


def test_multilingual_synthetic_data_balances_languages_into_the_warehouse(runs):
    md = mat(runs["first"], "multilingual_synthetic_data")
    docs = lines(md["dagster/uri"].value, "documents.jsonl")
    assert {d["language"] for d in docs} == {"de", "ja", "vi", "es"}
    assert all(d["source_language"] in ("en", "ko") and d["rendering"] == "template" for d in docs)
    assert md["documents"].value == len(docs) and md["balance_unit"].value == "characters"
    balance = {r.data["language"]: r.data for r in md["balance"].records}  # a native table
    assert balance["de"]["target_chars"] == 3000 and set(balance) == {"de", "es", "ja", "vi"}
    assert {c.name: c.type for c in md["balance"].schema.columns}["achieved_share"] == "float"
    wh = Warehouse(path=str(runs["home"] / "warehouse.duckdb"))
    rows = wh.query(
        "select language, target_chars, achieved_chars, documents from synthetic_balance "
        "where version = ? order by language",
        [md["artifact_version"].value],
    )
    assert [r["language"] for r in rows] == ["de", "es", "ja", "vi"]
    for r in rows:
        assert r["achieved_chars"] == sum(len(d["text"]) for d in docs if d["language"] == r["language"])
        assert r["achieved_chars"] >= r["target_chars"]  # the demo corpus has enough verifiable facts
    again = mat(runs["second"], "multilingual_synthetic_data")
    assert again["reused"].value is True and again["artifact_version"].value == md["artifact_version"].value
    assert again["balance"] == md["balance"]  # the reused artifact shows the table it was built with


def test_switching_to_the_http_teacher_re_versions_and_counts_its_tokens(runs):
    offline = mat(runs["first"], "thinking_augmented_data")
    http = mat(runs["third"], "thinking_augmented_data")
    assert http["reused"].value is False
    assert http["artifact_version"].value != offline["artifact_version"].value
    assert http["teacher"].value == "http:teacher-test"
    assert runs["attempts"] == http["teacher_requests_sent"].value > offline["samples"].value  # open questions too
    assert http["teacher_tokens_in"].value == 10 * runs["attempts"]
    samples = lines(http["dagster/uri"].value, "samples.jsonl")
    # verifiable problems are checked; open questions (documents without quantities) are kept, unverified
    assert {s["verified"] for s in samples} == {True, None}
    assert http["verified_samples"].value == offline["samples"].value
    assert all(s["question"] == "What is the main topic of the document?" for s in samples if s["verified"] is None)
    assert http["samples"].value + http["rejected"].value == offline["samples"].value + offline["rejected"].value
