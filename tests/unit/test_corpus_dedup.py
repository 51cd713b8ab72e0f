"""Exact + MinHash dedup (datatrove signature -> buckets -> cluster -> filter) on real documents: copies with
a few edited words are removed, exact copies are removed, distinct documents are all kept."""

from __future__ import annotations

import random

import pytest

from config import get_preset
from corpus.executors import ExecutorSettings
from corpus.pipeline import run_dedup_partition
from corpus.tokenizers import JapaneseScriptTokenizer, SpaceDelimitedTokenizer
from tests.corpus_samples import clean_records, read_documents, write_documents

PRESET = get_preset("tiny")


def edit_words(text: str, n: int, language: str, seed: int) -> str:
    """Replace ``n`` words of ``text`` by other words of the same document (a planted near-duplicate)."""
    tokenizer = JapaneseScriptTokenizer() if language == "ja" else SpaceDelimitedTokenizer(language)
    words = [w for w in tokenizer.word_tokenize(text) if w.isalnum() and len(w) > 1]
    rng = random.Random(seed)
    out = text
    for old in rng.sample(sorted(set(words)), n):
        new = rng.choice([w for w in words if w != old])
        out = out.replace(old, new, 1)
    assert out != text
    return out


def dedup(partition_docs: list[list[dict]], language: str, tmp_path, tasks: int = 2):
    folder = write_documents(tmp_path / "filtered", partition_docs)
    args = PRESET.data.filters[language]
    pipeline = PRESET.data.pipeline.__class__(**{**PRESET.data.pipeline.__dict__, "tasks": tasks})
    summary = run_dedup_partition(
        partition=language,
        input_folder=str(folder),
        word_tokenizer=args.word_tokenizer,
        language=args.lid_language,
        minhash=PRESET.data.minhash,
        minhash_threshold=PRESET.data.minhash_threshold,
        pipeline=pipeline,
        out_dir=tmp_path / "dedup",
        settings=ExecutorSettings(),
    )
    return summary, {d["id"] for d in read_documents(tmp_path / "dedup" / "documents")}


@pytest.mark.parametrize("language", ["en", "de", "ko", "ja", "vi"])
def test_near_and_exact_duplicates_are_removed_and_distinct_documents_kept(language, tmp_path):
    originals = [{"id": r["id"], "text": r["text"]} for r in clean_records(language)]
    assert len(originals) >= 20
    near = [
        {
            "id": f"near-{i}",
            "text": edit_words(originals[i]["text"], 3 + i % 4, language, seed=i),
            "metadata": {"planted": "near_duplicate", "duplicate_of": originals[i]["id"]},
        }
        for i in range(0, 12, 2)
    ]
    exact = [
        {
            "id": f"exact-{i}",
            "text": originals[i]["text"] + "\n",
            "metadata": {"planted": "exact_duplicate", "duplicate_of": originals[i]["id"]},
        }
        for i in (1, 5)
    ]
    # copies sit both in the same task as their original and in the other task
    shards = [originals[:10] + near[:2], originals[10:] + near[2:] + exact]
    summary, kept = dedup(shards, language, tmp_path)
    assert kept == {d["id"] for d in originals}
    assert summary["exact_duplicates_removed"] == 2 and summary["near_duplicates_removed"] == len(near)
    assert summary["planted"]["passed"] and summary["planted"]["handled"] == len(near) + len(exact)
    assert summary["totals"]["all_accounted_for"]
    reasons = {(r["step"], r["reason"]): r["documents"] for r in summary["rejections"]}
    assert reasons == {("exact_dedup", "exact_duplicate"): 2, ("minhash_dedup", "near_duplicate"): len(near)}
    excluded = read_documents(tmp_path / "dedup" / "excluded" / "minhash_dedup")
    assert {d["id"] for d in excluded} == {d["id"] for d in near}
    assert all(d["metadata"]["minhash_cluster_id"] >= 0 for d in excluded)  # the cluster it was merged into


def test_documents_sharing_boilerplate_are_not_merged(tmp_path):
    """Distinct articles with the same header and footer (~15 % of their shingles) collide in some LSH
    buckets; the full-signature candidate check rejects every such pair, so all stay distinct."""
    header = (
        "Example News | Local | Weather | Sports | Contact us\n\nWelcome to the community pages of Example "
        "News, where our reporters cover the neighbourhood every day of the week.\n\n"
    )
    footer = (
        "\n\nShare this article with your friends and neighbours. Subscribe to our newsletter for more "
        "local stories every morning, and follow us for updates from the city council and the schools."
    )
    docs = [{"id": r["id"], "text": header + r["text"] + footer} for r in clean_records("en")]
    summary, kept = dedup([docs[:12], docs[12:]], "en", tmp_path)
    assert kept == {d["id"] for d in docs} and summary["dedup_rate"] == 0.0
    candidates = summary["minhash_candidates"]
    assert (
        candidates["candidates"] > 0 and candidates["kept"] == 0 and candidates["rejected"] == candidates["candidates"]
    )


def test_one_task_and_empty_tasks(tmp_path):
    """Fewer inputs than tasks: a task that got no file writes nothing, and indices stay aligned."""
    docs = [{"id": r["id"], "text": r["text"]} for r in clean_records("es")]
    copy = {"id": "copy", "text": edit_words(docs[3]["text"], 4, "es", seed=7)}
    summary, kept = dedup([docs + [copy]], "es", tmp_path, tasks=3)
    assert kept == {d["id"] for d in docs} and summary["near_duplicates_removed"] == 1
