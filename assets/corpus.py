"""[corpus] group: the raw corpus sources and their inventory.

``raw_corpus_<source>`` are observable source assets (data version = content-manifest hash), one per
language/domain. ``raw_corpus_stats`` is the first materialized asset on top of them: what each source
holds (files, documents, bytes), as an artifact, warehouse rows and a table in the UI.
"""

import json
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    DataVersion,
    ObserveResult,
    asset,
    observable_source_asset,
)

from assets import keys
from assets.metadata import table
from assets.versioning import BuildResult, Upstream, materialize_versioned
from config import CORPUS_DOMAINS
from corpus.stats import source_stats
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from resources.artifact_store import ArtifactStore
from resources.corpus_sources import CorpusSources
from resources.warehouse import Warehouse

CORPUS_GROUP = "corpus"


def raw_corpus_key(source: str) -> AssetKey:
    return AssetKey(keys.raw_corpus(source))


def observe_source(corpus_sources: CorpusSources, source: str) -> ObserveResult:
    """What an observation of ``raw_corpus_<source>`` records: the content-manifest hash as the data version,
    and the folder's URI, file count and bytes. The observable source returns it; ``raw_corpus_watch``
    (``kexaone_dag/sensors.py``) records the same as a runless observation, so both agree by construction."""
    manifest = corpus_sources.manifest(source)
    return ObserveResult(
        data_version=DataVersion(manifest.version),
        metadata={"uri": manifest.uri, "files": len(manifest.files), "bytes": manifest.total_bytes},
    )


def _raw_corpus_source(source: str):
    @observable_source_asset(
        name=keys.raw_corpus(source),
        group_name=CORPUS_GROUP,
        description=f"Raw {source} corpus: a folder or prefix of JSONL / Parquet / text files. "
        "Data version = hash of the content manifest. Observed by the `raw_corpus_watch` sensor within 30 s "
        "of a change (or by the `observe_raw_corpus` job); a new version rebuilds `raw_corpus_stats` and "
        f"partition `{source}` of the corpus assets, then what reads them (docs/operations.md).",
        metadata={"corpus_source": source},
    )
    def _observe(corpus_sources: CorpusSources) -> ObserveResult:
        return observe_source(corpus_sources, source)

    return _observe


raw_corpus_sources = [_raw_corpus_source(s) for s in CORPUS_DOMAINS]


def sources_table(rows: list[dict]) -> dict:
    """One row per source (the columns of the ``raw_corpus_stats`` warehouse table that describe it)."""
    return table(
        [
            {
                **r,
                "mean_document_chars": round(r["mean_document_chars"], 1),
                "formats": ", ".join(f"{k}:{v}" for k, v in r["formats"].items()),
            }
            for r in rows
        ],
        [
            ("source", "string", "language / domain"),
            ("files", "int", "files in the source"),
            ("documents", "int"),
            ("text_bytes", "int", "UTF-8 bytes of the documents' text"),
            ("characters", "int"),
            ("mean_document_chars", "float", "mean characters per document"),
            ("formats", "string", "files per format"),
            ("source_version", "string", "content-manifest hash"),
        ],
    )


@asset(
    group_name=CORPUS_GROUP,
    deps=[raw_corpus_key(s) for s in CORPUS_DOMAINS],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    kinds={"duckdb", "json"},
    check_specs=[AssetCheckSpec("every_source_has_documents", asset=keys.RAW_CORPUS_STATS)],
    description="Inventory of every raw corpus source: files, documents, bytes, formats.",
)
def raw_corpus_stats(
    context: AssetExecutionContext,
    preset: PresetResource,
    corpus_sources: CorpusSources,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
):
    manifests = {s: corpus_sources.manifest(s) for s in CORPUS_DOMAINS}  # validates every source first

    def build(staging: Path) -> BuildResult:
        rows = [source_stats(m, corpus_sources.storage_options(m.uri)) for m in manifests.values()]
        (staging / "stats.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
        (staging / "manifests.json").write_text(
            json.dumps({s: m.to_dict() for s, m in manifests.items()}, indent=2, ensure_ascii=False)
        )
        return BuildResult(
            metadata={
                "documents": sum(r["documents"] for r in rows),
                "text_bytes": sum(r["text_bytes"] for r in rows),
                "documents_per_source": {r["source"]: r["documents"] for r in rows},
            },
            tables={"sources": sources_table(rows)},
            column_schema="sources",
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=preset.get(),
        preset_sections=("data.domains",),
        upstream={keys.raw_corpus(s): Upstream(m.version, m.uri) for s, m in manifests.items()},
        build=build,
    )
    version = result.ref.version
    rows = artifact_store.read_json(keys.RAW_CORPUS_STATS, version, "stats.json")
    warehouse.insert(
        keys.RAW_CORPUS_STATS,
        [
            {
                "source": r["source"],
                "source_version": r["source_version"],
                "stats_version": version,
                "uri": r["uri"],
                "files": r["files"],
                "documents": r["documents"],
                "text_bytes": r["text_bytes"],
                "characters": r["characters"],
                "mean_document_chars": r["mean_document_chars"],
                "formats": json.dumps(r["formats"]),
            }
            for r in rows
        ],
        replace_keys=("source", "stats_version"),
    )

    empty = [r["source"] for r in rows if r["documents"] == 0]
    check = AssetCheckResult(
        check_name="every_source_has_documents",
        passed=not empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={"empty_sources": ", ".join(empty) or "none"},
    )
    return result.materialize_result(check_results=[check])
