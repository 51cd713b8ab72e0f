"""The offline programmatic teacher without Dagster: its answers are recomputed independently here, its
cross-lingual renderings pass the language identifier and keep every number, and the preset's synthetic
section is validated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from config import PresetError, get_preset
from corpus.lid import Py3LangidLID
from synthetic.pipeline import Direction, multilingual_documents, thinking_samples
from synthetic.teacher import OFFLINE_TEACHER, OfflineTeacher, TeacherError, TeacherRequest
from tests.synthetic_support import FACTORS, recompute

DEMO = Path(__file__).resolve().parents[2] / "corpus" / "demo_data"
LID = Py3LangidLID()


def demo_docs(source: str) -> list[tuple[str, str]]:
    return [
        (r["id"], r["text"])
        for f in sorted((DEMO / source).glob("*.jsonl"))
        for r in map(json.loads, f.read_text(encoding="utf-8").splitlines())
    ]


def language_of(text: str) -> str:
    return LID.classify(text)[0]


def test_offline_thinking_answers_are_correct_by_independent_recomputation():
    docs = demo_docs("stem")
    result = thinking_samples(
        {"stem": ("en", docs)},
        OfflineTeacher(),
        template_version="v1",
        think=("<think>", "</think>"),
        min_chars=300,
        max_chars=6000,
        max_docs_per_source=100,
        language_of=language_of,
    )
    assert len(result.samples) >= 10
    assert {s["problem_kind"] for s in result.samples} == {"convert", "add", "linear"}
    by_id = dict(docs)
    for s in result.samples:
        assert s["teacher"] == OFFLINE_TEACHER == "offline-programmatic-v1" and s["template_version"] == "v1"
        assert s["verified"] is True
        text = s["text"]
        assert text.startswith(by_id[s["source_doc_id"]])  # the source document is part of the sample
        question = re.search(r"\nQuestion: (.+)\n<think>\n", text)[1]
        stated = float(re.search(r"</think>\nAnswer: (-?[\d.]+)", text)[1])
        assert stated == pytest.approx(recompute(question), rel=1e-6), question
        trajectory = text[text.index("<think>") : text.index("</think>")]
        assert len(trajectory.splitlines()) >= 3
    # every STEM document without usable quantities is accounted for with its reason
    assert len(result.samples) + len(result.rejected) == len(docs)
    assert set(result.rejection_counts) <= {"no_verifiable_quantity", "too_short"}


def test_offline_crosslingual_renderings_are_in_the_target_language_and_keep_the_numbers():
    directions = {"stem": Direction("stem", "en", demo_docs("stem")), "ko": Direction("ko", "ko", demo_docs("ko"))}
    targets = {"stem": ("de", "ja", "vi", "es"), "ko": ("de", "ja", "vi", "es")}
    wanted = {"de": 1500, "ja": 800, "vi": 1500, "es": 100_000}
    result, balance = multilingual_documents(
        directions,
        targets,
        OfflineTeacher(),
        template_version="v1",
        target_chars=wanted,
        min_chars=120,
        max_chars=4000,
        max_docs_per_source=100,
        language_of=language_of,
        concurrency=1,
    )
    rows = {r["language"]: r for r in balance}
    for lang, row in rows.items():
        docs = [s for s in result.samples if s["language"] == lang]
        assert row["achieved_chars"] == sum(len(s["text"]) for s in docs) and row["documents"] == len(docs)
        for s in docs:
            assert language_of(s["text"]) == lang and s["rendering"] == "template"
            for value in s["facts"]:
                assert value in s["text"]
            for line in s["text"].splitlines()[1:-1]:  # every fact line is arithmetically true
                numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", line)]
                units = re.findall(r"\d (\S+?)(?:\s|[はにと의에를가와]|\.$|$)", line)
                if len(numbers) == 2:
                    assert numbers[1] == pytest.approx(numbers[0] * FACTORS[(units[0], units[1])], rel=1e-5)
                else:
                    assert numbers[2] == pytest.approx(numbers[0] + numbers[1], rel=1e-6)
    # balancing: with concurrency 1 a language stops at the first document that reaches its target
    for lang in ("de", "ja", "vi"):
        last = [s for s in result.samples if s["language"] == lang][-1]
        assert rows[lang]["achieved_chars"] - len(last["text"]) < wanted[lang] <= rows[lang]["achieved_chars"]
    assert rows["es"]["achieved_chars"] < wanted["es"] and rows["es"]["achieved_share"] < 1  # sources ran out


def test_the_offline_teacher_never_answers_an_unverifiable_request():
    with pytest.raises(TeacherError, match="answers only verifiable requests"):
        OfflineTeacher().complete_many([TeacherRequest("thinking", (("user", "hi"),), "v1")])


def test_preset_synthetic_section_is_validated():
    with pytest.raises(PresetError, match=r"synthetic.multilingual_target_chars must give a positive"):
        get_preset("tiny", {"synthetic.multilingual_target_chars": {"de": 0, "ja": 1, "vi": 1, "es": 1}})
    with pytest.raises(PresetError, match=r"synthetic: need 0 < thinking_min_chars < thinking_max_chars"):
        get_preset("tiny", {"synthetic.thinking_min_chars": 10_000})
    with pytest.raises(PresetError, match=r"code has none"):
        get_preset("tiny", {"synthetic.thinking_sources": ["stem", "code"]})
    full = get_preset("k-exaone-236b").synthetic
    assert full.multilingual_directions["de"] == ("en", "ko")  # the reverse direction at scale
