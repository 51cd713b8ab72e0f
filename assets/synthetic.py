"""[synthetic] group: thinking_augmented_data and multilingual_synthetic_data (report §3.1).

Both read ``deduplicated_corpus`` partitions named by the preset's ``synthetic`` section and call the pure
functions of ``synthetic.pipeline`` with the ``teacher`` resource (offline programmatic by default, an
OpenAI-compatible endpoint when ``KEXAONE_TEACHER_BASE_URL`` is set). The artifact version hashes the
partitions read, the teacher identity, the template version and the preset slice, so switching teacher
re-versions both assets. Artifacts: ``samples.jsonl`` / ``documents.jsonl``, ``rejected.jsonl`` (each
with its reason) and ``stats.json``.
"""

import hashlib
import json
from pathlib import Path

from dagster import AssetDep, AssetExecutionContext, asset

from assets import keys
from assets.corpus_pipeline import deduplicated_documents
from assets.metadata import table
from assets.versioning import BuildResult, Upstream, materialize_versioned
from config import Preset
from corpus.lid import Py3LangidLID
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from resources.artifact_store import ArtifactStore
from resources.teacher import TeacherLLM
from resources.warehouse import Warehouse
from synthetic.pipeline import (
    Direction,
    multilingual_documents,
    thinking_samples,
)
from synthetic.teacher import TeacherError
from synthetic.templates import TEMPLATE_VERSION

SYNTHETIC_GROUP = "synthetic"
THINK_TAGS = ("<think>", "</think>")


def _read_partitions(
    context: AssetExecutionContext, store: ArtifactStore, partitions: list[str]
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, Upstream]]:
    docs: dict[str, list[tuple[str, str]]] = {}
    upstream: dict[str, Upstream] = {}
    for p in partitions:
        name, upstream[name], stream = deduplicated_documents(context, store, p)
        docs[p] = list(stream())  # the synthetic selection is small: a few documents per partition
    return docs, upstream


def _teacher_upstream(teacher: TeacherLLM, p: Preset) -> Upstream:
    if p.synthetic.template_version != TEMPLATE_VERSION:
        raise TeacherError(
            f"synthetic.template_version={p.synthetic.template_version!r} but synthetic/templates.py "
            f"holds {TEMPLATE_VERSION!r}"
        )
    identity = teacher.identity()
    return Upstream(
        version=hashlib.sha256(f"{identity}|{TEMPLATE_VERSION}".encode()).hexdigest()[:16],
        uri=f"teacher:{identity}" + (f"@{teacher.base_url}" if teacher.base_url else ""),
    )


def _language_of():
    lid = Py3LangidLID()
    return lambda text: lid.classify(text)[0]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


@asset(
    group_name=SYNTHETIC_GROUP,
    deps=[AssetDep(keys.DEDUPLICATED_CORPUS)],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    description="Document-grounded thinking trajectories joined with their source document (report §3.1): "
    "document + question + `<think>` trajectory `</think>` + answer, verified where verifiable.",
)
def thinking_augmented_data(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
    teacher: TeacherLLM,
):
    p = preset.get()
    s = p.synthetic
    think = tuple(t for t in p.tokenizer.special_tokens if t in THINK_TAGS)
    if think != THINK_TAGS:
        raise TeacherError(f"tokenizer.special_tokens must contain {THINK_TAGS[0]} and {THINK_TAGS[1]}")
    upstream = {"teacher": _teacher_upstream(teacher, p)}
    docs, corpus_up = _read_partitions(context, artifact_store, list(s.thinking_sources))
    upstream.update(corpus_up)

    def build(staging: Path) -> BuildResult:
        client = teacher.client(max_tokens=s.teacher_max_tokens, temperature=s.teacher_temperature)
        sources = {src: (p.data.filters[src].lid_language or "", docs[src]) for src in s.thinking_sources}
        try:
            result = thinking_samples(
                sources,
                client,
                template_version=TEMPLATE_VERSION,
                think=THINK_TAGS,
                min_chars=s.thinking_min_chars,
                max_chars=s.thinking_max_chars,
                max_docs_per_source=s.thinking_max_docs_per_source,
                language_of=_language_of(),
            )
        finally:
            client.close()
        write_jsonl(staging / "samples.jsonl", result.samples)
        write_jsonl(staging / "rejected.jsonl", result.rejected)
        by_source = {src: sum(x["source"] == src for x in result.samples) for src in s.thinking_sources}
        metadata = {
            "samples": len(result.samples),
            "rejected": len(result.rejected),
            "verified_samples": sum(x["verified"] is True for x in result.samples),
            "rejection_reasons": result.rejection_counts,
            "samples_by_source": by_source,
            "teacher": client.identity,
            "template_version": TEMPLATE_VERSION,
            **client.stats.as_metadata(),
        }
        (staging / "stats.json").write_text(json.dumps(metadata, indent=2))
        return BuildResult(metadata=metadata)

    return materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("synthetic", "tokenizer.special_tokens", "data.languages"),
        upstream=upstream,
        build=build,
    ).materialize_result()


@asset(
    group_name=SYNTHETIC_GROUP,
    deps=[AssetDep(keys.DEDUPLICATED_CORPUS)],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"duckdb"},
    description="Cross-lingual synthesis (report §3.1): en/ko (and STEM) knowledge propagated into de, ja, vi "
    "and es through the teacher until each language reaches its character target.",
)
def multilingual_synthetic_data(
    context: AssetExecutionContext,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
    teacher: TeacherLLM,
):
    p = preset.get()
    s = p.synthetic
    upstream = {"teacher": _teacher_upstream(teacher, p)}
    docs, corpus_up = _read_partitions(context, artifact_store, sorted(s.multilingual_directions))
    upstream.update(corpus_up)

    def build(staging: Path) -> BuildResult:
        client = teacher.client(max_tokens=s.teacher_max_tokens, temperature=s.teacher_temperature)
        directions = {
            src: Direction(src, p.data.filters[src].lid_language or "", docs[src]) for src in s.multilingual_directions
        }
        try:
            result, balance = multilingual_documents(
                directions,
                s.multilingual_directions,
                client,
                template_version=TEMPLATE_VERSION,
                target_chars=s.multilingual_target_chars,
                min_chars=s.multilingual_min_chars,
                max_chars=s.multilingual_max_chars,
                max_docs_per_source=s.multilingual_max_docs_per_source,
                language_of=_language_of(),
                concurrency=teacher.concurrency,
            )
        finally:
            client.close()
        write_jsonl(staging / "documents.jsonl", result.samples)
        write_jsonl(staging / "rejected.jsonl", result.rejected)
        (staging / "balance.json").write_text(json.dumps(balance, indent=2))
        metadata = {
            "documents": len(result.samples),
            "rejected": len(result.rejected),
            "rejection_reasons": result.rejection_counts,
            "balance_unit": "characters",
            "achieved_chars": {r["language"]: r["achieved_chars"] for r in balance},
            "teacher": client.identity,
            "template_version": TEMPLATE_VERSION,
            **client.stats.as_metadata(),
        }
        (staging / "stats.json").write_text(json.dumps(metadata, indent=2))
        return BuildResult(metadata=metadata, tables={"balance": balance_table(balance)})

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("synthetic", "data.languages"),
        upstream=upstream,
        build=build,
    )
    version = result.ref.version
    balance = artifact_store.read_json(keys.MULTILINGUAL_SYNTHETIC_DATA, version, "balance.json")
    warehouse.insert(
        "synthetic_balance",
        [
            {
                "asset": keys.MULTILINGUAL_SYNTHETIC_DATA,
                "version": version,
                "teacher": result.build.metadata.get("teacher"),
                **r,
            }
            for r in balance
        ],
        replace_keys=("asset", "version"),
    )
    return result.materialize_result()


def balance_table(rows: list[dict]) -> dict:
    """One row per target language: characters asked for and reached, documents kept and rejected."""
    return table(
        rows,
        [
            ("language", "string", "target language"),
            ("target_chars", "int", "characters asked for"),
            ("achieved_chars", "int", "characters of the documents kept"),
            ("achieved_share", "float", "achieved / target"),
            ("documents", "int", "documents kept"),
            ("rejected", "int", "teacher outputs rejected"),
        ],
    )


synthetic_assets = [thinking_augmented_data, multilingual_synthetic_data]
