"""The HTTP teacher against a real chat-completions server on 127.0.0.1: retries (429 + Retry-After, 500,
a timeout, a malformed body), the persistent cache, resuming an interrupted run, clear errors, and the
language filter rejecting a wrong-language answer."""

from __future__ import annotations

import re
import time

import pytest

from corpus.lid import Py3LangidLID
from kexaone_dag.resources_by_env import teacher_from_env
from resources.teacher import TeacherLLM
from synthetic.http_teacher import HttpTeacher, ResponseCache
from synthetic.pipeline import Direction, multilingual_documents, thinking_samples
from synthetic.teacher import TeacherError, TeacherRequest
from tests.chat_server import ChatServer

LID = Py3LangidLID()
THINK = ("<think>", "</think>")


def language_of(text: str) -> str:
    return LID.classify(text)[0]


def echo(messages: list[dict]) -> str:
    return "echo: " + messages[-1]["content"]


def requests_for(n: int) -> list[TeacherRequest]:
    return [TeacherRequest("thinking", (("user", f"question number {i}"),), "v1") for i in range(n)]


def client(server: ChatServer, tmp_path, **kw) -> HttpTeacher:
    args = dict(
        base_url=server.url,
        model="teacher-test",
        api_key="test-key",
        cache_path=tmp_path / "cache.sqlite",
        concurrency=2,
        timeout_s=0.5,
        max_retries=4,
        backoff_s=0.05,
        max_backoff_s=1.0,
    )
    return HttpTeacher(**{**args, **kw})


def test_retries_on_429_500_timeout_and_malformed_body_then_succeed(tmp_path):
    with ChatServer(echo) as server:
        server.faults = ["429", "500", "stall", "malformed"]
        teacher = client(server, tmp_path, concurrency=1)
        started = time.monotonic()
        [out] = teacher.complete_many(requests_for(1))
        assert out.text == "echo: question number 0"
        assert server.attempts == 5 and teacher.stats.retries == 4 and teacher.stats.sent == 1
        assert time.monotonic() - started >= 0.2 + 0.5  # waited Retry-After and the timeout
        assert (out.tokens_in, out.tokens_out) == (10, 5)


def test_malformed_bodies_beyond_the_retries_fail_with_one_clear_line(tmp_path):
    with ChatServer(echo) as server:
        server.faults = ["malformed"] * 10
        teacher = client(server, tmp_path, concurrency=1, max_retries=2)
        with pytest.raises(TeacherError, match=r"failed after 3 attempts: malformed response body") as err:
            teacher.complete_many(requests_for(1))
        assert "\n" not in str(err.value)
        assert server.attempts == 3 and ResponseCache(tmp_path / "cache.sqlite").count() == 0


def test_cache_hits_on_rerun_send_nothing(tmp_path):
    with ChatServer(echo) as server:
        first = client(server, tmp_path).complete_many(requests_for(6))
        assert server.attempts == 6
        again = client(server, tmp_path)  # a new process would open the same file
        second = again.complete_many(requests_for(6))
        assert server.attempts == 6, "a cached answer was paid for twice"
        assert [c.text for c in second] == [c.text for c in first]
        assert again.stats.cache_hits == 6 and again.stats.sent == 0
        assert again.stats.tokens_in == 60  # usage is cached with the answer


def test_an_interrupted_run_resumes_with_only_the_missing_requests(tmp_path):
    with ChatServer(echo) as server:
        server.refuse_after = 4  # the run dies midway (the endpoint starts refusing)
        with pytest.raises(TeacherError, match="refused the request: HTTP 400"):
            client(server, tmp_path).complete_many(requests_for(10))
        kept = ResponseCache(tmp_path / "cache.sqlite").count()
        assert kept == 4 == len(server.answered)  # every answer received was persisted at once
        server.refuse_after = None
        answered_before = len(server.answered)
        resumed = client(server, tmp_path)
        out = resumed.complete_many(requests_for(10))
        assert resumed.stats.sent == 10 - kept == len(server.answered) - answered_before
        assert resumed.stats.cache_hits == kept
        assert [c.text for c in out] == [f"echo: question number {i}" for i in range(10)]  # nothing lost
        assert sorted(server.answered) == sorted(f"question number {i}" for i in range(10))  # none paid twice


def test_bad_configuration_fails_before_any_compute(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXAONE_TEACHER_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("KEXAONE_TEACHER_MODEL", "m")
    monkeypatch.delenv("KEXAONE_TEACHER_API_KEY", raising=False)
    with pytest.raises(
        TeacherError,
        match=r"^HTTP teacher at http://127.0.0.1:9/v1: the API key variable "
        r"KEXAONE_TEACHER_API_KEY is not set$",
    ):
        teacher_from_env(tmp_path)
    monkeypatch.setenv("KEXAONE_TEACHER_API_KEY", "k")
    assert teacher_from_env(tmp_path).backend == "http"
    resource = TeacherLLM(
        backend="http", base_url="http://127.0.0.1:9/v1", model="m", api_key="k", cache_path=str(tmp_path / "c.sqlite")
    )
    with pytest.raises(TeacherError, match=r"^teacher endpoint http://127.0.0.1:9/v1 is unreachable: "):
        resource.client(max_tokens=16, temperature=0.0)
    with pytest.raises(TeacherError, match="HTTP teacher needs API key"):
        TeacherLLM(backend="http", base_url="http://x/v1", model="m").client(max_tokens=16, temperature=0.0)


GERMAN = (
    "Die folgenden Werte stammen aus einem Lehrtext über Bewegung. Ein Auto fährt mit {v} Metern pro "
    "Sekunde, das sind {w} Kilometer pro Stunde. Diese Umrechnung lässt sich mit dem Faktor drei Komma "
    "sechs leicht überprüfen, und sie hilft beim Verständnis der Geschwindigkeit im Alltag."
)
ENGLISH = (
    "The following values come from a textbook about motion. A car moves at {v} meters per second, "
    "which is {w} kilometers per hour. This conversion is easy to check with the factor three point six "
    "and it helps to understand speed in everyday life."
)


def test_language_filter_rejects_an_english_answer_to_a_german_request(tmp_path):
    doc = (
        "Speed example\n\nA car moves at 25 m/s on a highway. Engineers often quote speeds in other units, "
        "so it is worth converting the value carefully and checking the result afterwards."
    )

    def answer(messages):
        system = messages[0]["content"]
        text = ENGLISH if "German" in system else GERMAN  # the teacher answers a German request in English
        return text.format(v="25", w="90")

    with ChatServer(answer) as server:
        teacher = client(server, tmp_path)
        result, balance = multilingual_documents(
            {"en": Direction("en", "en", [("doc-1", doc)])},
            {"en": ("de",)},
            teacher,
            template_version="v1",
            target_chars={"de": 100},
            min_chars=50,
            max_chars=4000,
            max_docs_per_source=5,
            language_of=language_of,
        )
        assert result.samples == []
        assert [r["reason"] for r in result.rejected] == ["language_mismatch"]
        assert result.rejected[0]["completion"].startswith("The following values")
        assert balance[0]["achieved_chars"] == 0 and balance[0]["rejected"] == 1
        assert server.attempts == 1

    with ChatServer(lambda m: GERMAN.format(v="25", w="90")) as server:
        result, balance = multilingual_documents(
            {"en": Direction("en", "en", [("doc-1", doc)])},
            {"en": ("de",)},
            client(server, tmp_path / "b"),
            template_version="v1",
            target_chars={"de": 100},
            min_chars=50,
            max_chars=4000,
            max_docs_per_source=5,
            language_of=language_of,
        )
        assert [s["language"] for s in result.samples] == ["de"] and result.samples[0]["rendering"] == "llm"
        assert balance[0]["documents"] == 1


def test_thinking_samples_through_the_http_teacher_are_verified(tmp_path):
    docs = [
        ("d1", "A cyclist rides 12 km in the morning and 8 km in the evening. " * 4),
        ("d2", "A parcel of 3 kg and a box of 5 kg are weighed together on a scale in the warehouse. " * 4),
    ]

    def answer(messages):
        q = re.search(r"Question: (.+)", messages[-1]["content"]).group(1)
        numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", q)]
        if q.startswith("Convert"):
            factor = {"km": 1000, "kg": 1000}[q.split()[2]]
            value = numbers[0] * factor
        elif q.startswith("What is"):
            value = numbers[0] + numbers[1]
        else:
            value = (numbers[2] - numbers[1]) / numbers[0]
        wrong = "parcel" in messages[-1]["content"]  # the teacher gets d2's arithmetic wrong by one
        return (
            f"<think>\nI read the document and compute the requested value step by step from the numbers "
            f"it gives, then I check the arithmetic once more.\n</think>\nAnswer: {value + (1 if wrong else 0)}"
        )

    with ChatServer(answer) as server:
        result = thinking_samples(
            {"en": ("en", docs)},
            client(server, tmp_path),
            template_version="v1",
            think=THINK,
            min_chars=100,
            max_chars=5000,
            max_docs_per_source=10,
            language_of=language_of,
        )
    assert [s["source_doc_id"] for s in result.samples] == ["d1"]
    assert result.samples[0]["verified"] is True and result.samples[0]["teacher"] == "http:teacher-test"
    assert "<think>" in result.samples[0]["text"] and result.samples[0]["text"].startswith(docs[0][1])
    assert [(r["source_doc_id"], r["reason"]) for r in result.rejected] == [("d2", "answer_mismatch")]
