"""[corpus] group: ``filtered_corpus`` and ``deduplicated_corpus``, one static partition per language/domain.

Orchestration only: the datatrove pipelines are ``corpus.pipeline.run_filter_partition`` and
``run_dedup_partition`` (tested without Dagster). Each partition is its own versioned artifact,
``<root>/filtered_corpus__<partition>/<version>/`` and ``<root>/deduplicated_corpus__<partition>/<version>/``
(``assets.versioning.partition_artifact_name``), built in staging and committed atomically, with the
documents, the exclusion output, datatrove's logs and ``stats.json``.

A run may cover several partitions (``BackfillPolicy.single_run``; the ``demo`` job runs all eight in one
run). The function then builds each partition in turn; each partition's materialization carries its own
metadata (``artifact_version``, ``dagster/uri``, the statistics), while Dagster records one data version
per run for all of them: the artifact version when the run has one partition, otherwise a hash of the
partitions' versions. Readers downstream take the partition's ``artifact_version`` from its metadata
(``assets.versioning.latest_upstream``). Asset checks are evaluated per run over the partitions it built.
"""

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    DataVersion,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
)

from assets import keys
from assets.corpus import CORPUS_GROUP, raw_corpus_key
from assets.metadata import table
from assets.versioning import (
    BuildResult,
    Upstream,
    UpstreamMissingError,
    VersionedResult,
    artifact_run_key,
    latest_upstream,
    materialize_versioned,
    partition_artifact_name,
)
from config import CORPUS_DOMAINS, Preset
from corpus.pipeline import DOCUMENTS_DIR, STATS_FILE, run_dedup_partition, run_filter_partition
from corpus.plots import pipeline_steps_png
from corpus.sources import SourceFile, file_format, filesystem, iter_documents
from corpus.steps import read_labels
from kexaone_dag.automation import DOWNSTREAM_OF_DATA, OWN_SOURCE_DATA
from kexaone_dag.config import PresetResource
from resources.artifact_store import ArtifactStore
from resources.corpus_pipeline import CorpusPipeline
from resources.corpus_sources import CorpusSources
from resources.warehouse import Warehouse

CORPUS_PARTITIONS = StaticPartitionsDefinition(list(CORPUS_DOMAINS))
LABELS_SIDECAR = "PLANTED_{source}.json"  # demo labels for files without metadata, beside the source folder

# Each partition reads only its own raw source, but Dagster cannot point an unpartitioned asset at one
# partition of a partitioned one: an unpartitioned upstream is always an upstream of every partition (no
# partition mapping applies to it; AllPartitionMapping states that explicitly). So every partition depends
# on all eight sources in the graph. The automation routes instead (OWN_SOURCE_DATA, kexaone_dag/automation.py):
# a new version of raw_corpus_de requests only partition de. The partition's artifact version is computed from
# its own source's manifest only, so a run over all partitions (the demo job) reuses the other seven.
RAW_CORPUS_DEPS = [AssetDep(raw_corpus_key(s), partition_mapping=AllPartitionMapping()) for s in CORPUS_DOMAINS]

_COMMON_CHECKS = {
    "non_empty_output": "every partition in the run kept at least one document",
    "language_purity": "share of kept characters identified as the partition's language >= "
    "data.language_purity_threshold (paragraph-level py3langid; n/a for code)",
    "every_document_accounted_for": "documents in = documents kept + documents in the exclusion output",
}
FILTER_CHECKS = {
    **_COMMON_CHECKS,
    "planted_noise_removed": "no planted low-quality or wrong-language document (demo labels) was kept",
}
DEDUP_CHECKS = {
    **_COMMON_CHECKS,
    "planted_duplicates_removed": "of every planted duplicate pair (demo labels) exactly one document is kept, and no "
    "unlabelled document outside a pair is removed",
}


@asset(
    name=keys.FILTERED_CORPUS,
    group_name=CORPUS_GROUP,
    partitions_def=CORPUS_PARTITIONS,
    deps=RAW_CORPUS_DEPS,
    code_version="1",
    automation_condition=OWN_SOURCE_DATA,  # partition p: only raw_corpus_<p>
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"datatrove", "duckdb"},
    check_specs=[AssetCheckSpec(name, asset=keys.FILTERED_CORPUS, description=d) for name, d in FILTER_CHECKS.items()],
    description="The raw source of one language/domain through its datatrove filter chain (language ID, "
    "Gopher, C4, FineWeb or code heuristics, URL and PII), with every rejected document kept "
    "in `excluded/<step>/` with its reason.",
)
def filtered_corpus(
    context: AssetExecutionContext,
    preset: PresetResource,
    corpus_sources: CorpusSources,
    corpus_pipeline: CorpusPipeline,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
):
    p = preset.get()
    manifests = {key: corpus_sources.manifest(key) for key in context.partition_keys}  # all sources first
    results = {}
    for key, manifest in manifests.items():
        args = p.data.filters[key]
        storage = corpus_sources.storage_options(manifest.uri)
        labels, labels_upstream = _labels_sidecar(key, manifest.uri, storage)
        threshold = p.data.language_score_threshold[args.lid_language] if args.lid_language else None

        sections = [f"data.filters.{key}", "data.pipeline"]
        if args.lid_language:
            sections.append(f"data.language_score_threshold.{args.lid_language}")
        upstream = {raw_corpus_key(key).to_user_string(): Upstream(manifest.version, manifest.uri), **labels_upstream}
        run_key = artifact_run_key(context, preset=p, preset_sections=sections, upstream=upstream, partition=key)

        def build(
            staging: Path,
            key=key,
            manifest=manifest,
            args=args,
            storage=storage,
            labels=labels,
            threshold=threshold,
            run_key=run_key,
        ) -> BuildResult:
            return _build_result(
                staging,
                f"{keys.FILTERED_CORPUS} {key}",
                run_filter_partition(
                    partition=key,
                    source_uri=manifest.uri,
                    files=manifest.files,
                    storage_options=storage,
                    args=args,
                    language_threshold=threshold,
                    pipeline=p.data.pipeline,
                    out_dir=staging,
                    settings=corpus_pipeline.settings(),
                    labels=labels,
                    log=context.log.info,
                    run_key=run_key,
                ),
            )

        results[key] = materialize_versioned(
            context,
            store=artifact_store,
            warehouse=warehouse,
            preset=p,
            preset_sections=sections,
            upstream=upstream,
            build=build,
            partition=key,
        )
    return _partitioned_result(
        context,
        p,
        results,
        {k: m.version for k, m in manifests.items()},
        keys.FILTERED_CORPUS,
        FILTER_CHECKS,
        artifact_store,
        warehouse,
    )


@asset(
    name=keys.DEDUPLICATED_CORPUS,
    group_name=CORPUS_GROUP,
    partitions_def=CORPUS_PARTITIONS,
    deps=[AssetDep(keys.FILTERED_CORPUS)],  # same partitions: partition p reads filtered_corpus p
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"datatrove", "duckdb"},
    check_specs=[
        AssetCheckSpec(name, asset=keys.DEDUPLICATED_CORPUS, description=d) for name, d in DEDUP_CHECKS.items()
    ],
    description="filtered_corpus without duplicates: datatrove exact dedup, then MinHash (signature -> "
    "buckets -> cluster -> filter); removed documents are kept in excluded/ with their cluster.",
)
def deduplicated_corpus(
    context: AssetExecutionContext,
    preset: PresetResource,
    corpus_pipeline: CorpusPipeline,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
):
    p = preset.get()
    inputs = {}
    for key in context.partition_keys:  # every input must exist before anything is built
        upstream = latest_upstream(context, keys.FILTERED_CORPUS, partition=key)
        if not artifact_store.has(partition_artifact_name(keys.FILTERED_CORPUS, key), upstream.version):
            raise UpstreamMissingError(
                f"{keys.FILTERED_CORPUS} partition {key!r}: artifact {upstream.uri} is not in "
                f"the artifact store {artifact_store.root}; materialize it again"
            )
        inputs[key] = upstream
    results = {}
    for key, upstream in inputs.items():
        args = p.data.filters[key]
        documents = (
            artifact_store.path(partition_artifact_name(keys.FILTERED_CORPUS, key), upstream.version, DOCUMENTS_DIR),
            artifact_store.fs,
        )

        sections = [
            "data.minhash",
            "data.minhash_threshold",
            "data.pipeline",
            f"data.filters.{key}.word_tokenizer",
            f"data.filters.{key}.lid_language",
        ]
        versioned_upstream = {partition_artifact_name(keys.FILTERED_CORPUS, key): upstream}
        run_key = artifact_run_key(
            context, preset=p, preset_sections=sections, upstream=versioned_upstream, partition=key
        )

        def build(staging: Path, key=key, args=args, documents=documents, run_key=run_key) -> BuildResult:
            return _build_result(
                staging,
                f"{keys.DEDUPLICATED_CORPUS} {key}",
                run_dedup_partition(
                    partition=key,
                    input_folder=documents,
                    word_tokenizer=args.word_tokenizer,
                    language=args.lid_language,
                    minhash=p.data.minhash,
                    minhash_threshold=p.data.minhash_threshold,
                    pipeline=p.data.pipeline,
                    out_dir=staging,
                    settings=corpus_pipeline.settings(),
                    log=context.log.info,
                    run_key=run_key,
                ),
            )

        results[key] = materialize_versioned(
            context,
            store=artifact_store,
            warehouse=warehouse,
            preset=p,
            preset_sections=sections,
            upstream=versioned_upstream,
            build=build,
            partition=key,
        )
    return _partitioned_result(
        context,
        p,
        results,
        {k: u.version for k, u in inputs.items()},
        keys.DEDUPLICATED_CORPUS,
        DEDUP_CHECKS,
        artifact_store,
        warehouse,
    )


def deduplicated_documents(
    context: AssetExecutionContext, store: ArtifactStore, partition: str
) -> tuple[str, Upstream, Callable[[], Iterator[tuple[str, str]]]]:
    """What a downstream asset reads of one deduplicated_corpus partition: its artifact name, its version
    (for lineage) and a re-iterable stream of ``(doc_id, text)`` read lazily, file by file."""
    name = partition_artifact_name(keys.DEDUPLICATED_CORPUS, partition)
    upstream = latest_upstream(context, keys.DEDUPLICATED_CORPUS, partition=partition)
    if not store.has(name, upstream.version):
        raise UpstreamMissingError(f"{name}: artifact {upstream.uri} is not in the artifact store {store.root}")
    folder = store.path(name, upstream.version, DOCUMENTS_DIR)

    def documents() -> Iterator[tuple[str, str]]:
        for path in sorted(store.fs.find(folder)):
            fmt = file_format(path)
            if fmt is None:
                continue
            file = SourceFile(path=path, relpath=path[len(folder) :].lstrip("/"), size=0, fingerprint="", format=fmt)
            for doc in iter_documents(store.fs, file):
                yield doc.id, doc.text

    return name, upstream, documents


# -- helpers (orchestration glue) ------------------------------------------------------------------


def _labels_sidecar(source: str, uri: str, storage: Mapping[str, Any]) -> tuple[dict, dict[str, Upstream]]:
    """The demo's planted labels for files without metadata (PLANTED_CODE.json beside code/), if present.
    It is an input of the artifact (the labels end up in the documents' metadata), so it is versioned."""
    fs, root = filesystem(uri, storage)
    path = f"{root.rsplit('/', 1)[0]}/{LABELS_SIDECAR.format(source=source.upper())}"
    if not fs.exists(path):
        return {}, {}
    text = fs.cat_file(path).decode("utf-8")
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    return read_labels(text, source), {"planted_labels": Upstream(version, path)}


STEPS_PLOT = "steps.png"


def _build_result(staging: Path, title: str, summary: Mapping[str, Any]) -> BuildResult:
    """The partition's metadata: totals, the steps and rejections tables and a chart of the documents every
    step kept and dropped (``steps.png`` in the artifact)."""
    totals = summary["totals"]
    metadata = {
        "partition": summary["partition"],
        "docs_in": totals["docs_in"],
        "docs_out": totals["docs_out"],
        "bytes_in": totals["bytes_in"],
        "bytes_out": totals["bytes_out"],
        "docs_excluded": totals["docs_excluded"],
        "all_accounted_for": totals["all_accounted_for"],
        "language_purity": summary["language_purity"] if summary["language_purity"] is not None else "n/a",
    }
    if "dedup_rate" in summary:
        metadata.update({k: summary[k] for k in ("dedup_rate", "exact_duplicates_removed", "near_duplicates_removed")})
    pipeline_steps_png(summary["steps"], staging / STEPS_PLOT, title=f"{title}: documents per step")
    return BuildResult(
        metadata=metadata,
        tables={"steps": steps_table(summary), "rejections": rejections_table(summary)},
        plots={"steps_chart": STEPS_PLOT},
    )


def steps_table(summary: Mapping[str, Any]) -> dict:
    """Documents and bytes in / out of every step of one partition run (filtered or deduplicated)."""
    return table(
        summary["steps"],
        [
            ("step", "string"),
            ("docs_in", "int", "documents in"),
            ("docs_out", "int", "documents kept"),
            ("docs_dropped", "int", "documents dropped (in the exclusion output)"),
            ("bytes_in", "int", "UTF-8 bytes in"),
            ("bytes_out", "int", "UTF-8 bytes kept"),
        ],
    )


def rejections_table(summary: Mapping[str, Any]) -> dict:
    """Documents and bytes each step dropped, per reason (empty when nothing was rejected)."""
    return table(
        summary.get("rejections", []),
        [("step", "string"), ("reason", "string"), ("documents", "int"), ("bytes", "int")],
    )


def _partitioned_result(
    context: AssetExecutionContext,
    preset: Preset,
    results: Mapping[str, VersionedResult],
    upstream_versions: Mapping[str, str],
    asset_name: str,
    checks: Mapping[str, str],
    store: ArtifactStore,
    warehouse: Warehouse,
) -> MaterializeResult:
    summaries = {key: store.read_json(r.ref.asset, r.ref.version, STATS_FILE) for key, r in results.items()}
    for key, result in results.items():
        _record(warehouse, asset_name, key, result.ref.version, upstream_versions[key], summaries[key])
        context.add_asset_metadata(result.metadata(), partition_key=key)
    versions = {key: r.ref.version for key, r in results.items()}
    if len(versions) == 1:
        data_version = next(iter(versions.values()))
    else:
        data_version = hashlib.sha256(repr(sorted(versions.items())).encode()).hexdigest()[:16]
    return MaterializeResult(
        data_version=DataVersion(data_version), check_results=[_CHECKS[name](preset, summaries) for name in checks]
    )


def _record(
    warehouse: Warehouse, asset_name: str, partition: str, version: str, upstream: str, summary: Mapping[str, Any]
) -> None:
    key = {"asset": asset_name, "partition": partition, "version": version}
    totals = summary["totals"]
    warehouse.insert(
        "corpus_partition_stats",
        [
            {
                **key,
                "upstream_version": upstream,
                "docs_in": totals["docs_in"],
                "docs_out": totals["docs_out"],
                "bytes_in": totals["bytes_in"],
                "bytes_out": totals["bytes_out"],
                "docs_excluded": totals["docs_excluded"],
                "all_accounted_for": totals["all_accounted_for"],
                "language_purity": summary.get("language_purity"),
                "dedup_rate": summary.get("dedup_rate"),
                "exact_duplicates_removed": summary.get("exact_duplicates_removed"),
                "near_duplicates_removed": summary.get("near_duplicates_removed"),
            }
        ],
        replace_keys=("asset", "partition", "version"),
    )
    warehouse.insert(
        "corpus_filter_stats",
        [
            {
                **key,
                "step_index": i,
                "step": s["step"],
                "docs_in": s["docs_in"],
                "docs_out": s["docs_out"],
                "docs_dropped": s["docs_dropped"],
                "bytes_in": s["bytes_in"],
                "bytes_out": s["bytes_out"],
            }
            for i, s in enumerate(summary["steps"])
        ],
        replace_keys=("asset", "partition", "version"),
    )
    warehouse.insert(
        "corpus_rejections",
        [
            {
                **key,
                "step": r["step"],
                "reason": r["reason"],
                "documents": r["documents"],
                "bytes": r["bytes"],
            }
            for r in summary["rejections"]
        ],
        replace_keys=("asset", "partition", "version"),
    )


def _check_non_empty(preset: Preset, summaries: Mapping[str, Mapping[str, Any]]) -> AssetCheckResult:
    kept = {k: s["totals"]["docs_out"] for k, s in summaries.items()}
    empty = [k for k, n in kept.items() if n == 0]
    return AssetCheckResult(
        check_name="non_empty_output",
        passed=not empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={"documents_kept": kept, "empty_partitions": ", ".join(empty) or "none"},
    )


def _check_purity(preset: Preset, summaries: Mapping[str, Mapping[str, Any]]) -> AssetCheckResult:
    threshold = preset.data.language_purity_threshold
    purity = {k: s["language_purity"] for k, s in summaries.items() if s.get("language")}
    failing = [k for k, v in purity.items() if v is None or v < threshold]
    return AssetCheckResult(
        check_name="language_purity",
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "threshold": threshold,
            "purity": purity,
            "below_threshold": ", ".join(failing) or "none",
            "not_applicable": ", ".join(k for k, s in summaries.items() if not s.get("language")) or "none",
        },
    )


def _check_accounted(preset: Preset, summaries: Mapping[str, Mapping[str, Any]]) -> AssetCheckResult:
    missing = [k for k, s in summaries.items() if not s["totals"]["all_accounted_for"]]
    return AssetCheckResult(
        check_name="every_document_accounted_for",
        passed=not missing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "unaccounted_partitions": ", ".join(missing) or "none",
            "excluded": {k: s["totals"]["docs_excluded"] for k, s in summaries.items()},
        },
    )


def _check_planted_noise(preset: Preset, summaries: Mapping[str, Mapping[str, Any]]) -> AssetCheckResult:
    labelled = {k: s["planted"] for k, s in summaries.items() if s.get("planted")}
    kept = {k: sorted(i for ids in p["kept"].values() for i in ids) for k, p in labelled.items()}
    return AssetCheckResult(
        check_name="planted_noise_removed",
        passed=not any(kept.values()),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "kept_planted_noise": kept,
            "rejected": {k: p["rejected"] for k, p in labelled.items()},
            "partitions_without_labels": ", ".join(k for k in summaries if k not in labelled) or "none",
        },
    )


def _check_planted_duplicates(preset: Preset, summaries: Mapping[str, Mapping[str, Any]]) -> AssetCheckResult:
    labelled = {k: s["planted"] for k, s in summaries.items() if s.get("planted")}
    return AssetCheckResult(
        check_name="planted_duplicates_removed",
        passed=all(p["passed"] for p in labelled.values()),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "pairs_handled": {k: f"{p['handled']}/{p['total']}" for k, p in labelled.items()},
            "false_removals": {k: p["false_removals"] for k, p in labelled.items()},
            "partitions_without_labels": ", ".join(k for k in summaries if k not in labelled) or "none",
        },
    )


_CHECKS: dict[str, Callable[[Preset, Mapping[str, Mapping[str, Any]]], AssetCheckResult]] = {
    "non_empty_output": _check_non_empty,
    "language_purity": _check_purity,
    "every_document_accounted_for": _check_accounted,
    "planted_noise_removed": _check_planted_noise,
    "planted_duplicates_removed": _check_planted_duplicates,
}

corpus_pipeline_assets = [filtered_corpus, deduplicated_corpus]
