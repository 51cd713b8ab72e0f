"""Real inputs for the corpus tests, read from the shipped demo corpus (see corpus/demo_data/ABOUT.md)."""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path

from config import get_preset
from corpus.executors import ExecutorSettings
from corpus.pipeline import run_filter_partition
from corpus.sources import content_manifest, filesystem, iter_documents

DEMO = Path(__file__).resolve().parent.parent / "corpus" / "demo_data"
TEXT_LANGUAGES = ("en", "es", "de", "vi", "ko", "ja")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


@lru_cache(maxsize=None)
def demo_records(source: str) -> tuple[dict, ...]:
    """Every document of a demo source: {"id", "text", **metadata}."""
    manifest = content_manifest(source, str(DEMO / source))
    fs, _ = filesystem(manifest.uri)
    return tuple({"id": d.id, "text": d.text, **d.meta} for f in manifest.files for d in iter_documents(fs, f))


def clean_records(source: str) -> list[dict]:
    """Documents without a planted label (good, distinct documents)."""
    return [r for r in demo_records(source) if not r.get("planted")]


def planted(source: str, kind: str) -> list[dict]:
    return [r for r in demo_records(source) if r.get("planted") == kind]


def short_samples(max_chars: int) -> list[tuple[str, str]]:
    """(true language, text) snippets: every sentence of every clean document cut to ``max_chars``, plus the
    sentences of the planted wrong-language documents labelled with their real language."""
    wrong = {"en": "fr", "ko": "ja", "es": "en", "de": "it", "ja": "ko", "vi": "en"}
    out = []
    for lang in TEXT_LANGUAGES:
        for record in demo_records(lang):
            if record.get("planted") == "low_quality":
                continue
            truth = wrong[lang] if record.get("planted") == "wrong_language" else lang
            for sentence in _SENTENCE_END.split(record["text"].replace("\n", " ")):
                if len(sentence.strip()) >= 8:
                    out.append((truth, sentence.strip()[:max_chars]))
    return out


def write_documents(folder: Path, shards: list[list[dict]]) -> Path:
    """datatrove JSONL files ``00000.jsonl.gz`` ... (one per task), as the filter stage writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    for rank, docs in enumerate(shards):
        lines = [
            json.dumps({"text": d["text"], "id": d["id"], "metadata": d.get("metadata", {})}, ensure_ascii=False)
            for d in docs
        ]
        (folder / f"{rank:05d}.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return folder


def read_documents(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        out += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]
    return out


def filter_source(source: str, folder: Path, out: Path, settings: ExecutorSettings | None = None) -> dict:
    manifest = content_manifest(source, str(folder))
    preset = get_preset("tiny")
    args = preset.data.filters[source]
    return run_filter_partition(
        partition=source,
        source_uri=manifest.uri,
        files=manifest.files,
        storage_options=None,
        args=args,
        language_threshold=preset.data.language_score_threshold.get(args.lid_language or "", None),
        pipeline=preset.data.pipeline,
        out_dir=out,
        settings=settings or ExecutorSettings(),
    )
