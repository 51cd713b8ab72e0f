"""The two corpus pipelines of one partition, built from datatrove steps and run by a datatrove executor.

``run_filter_partition``  raw source -> [URL] -> [language ID] -> [Gopher repetition] -> [Gopher quality]
                          -> [C4] -> [FineWeb quality] -> [code quality] -> [PII] -> documents/
``run_dedup_partition``   filtered documents -> exact dedup (signature -> find -> filter)
                          -> MinHash (signature -> buckets -> [candidate check] -> cluster -> filter)
                          -> documents/

Which bracketed steps run, and every threshold, come from the preset (``DataArgs.filters[partition]``,
``DataArgs.minhash``). Both write into ``out_dir``::

    documents/00000.jsonl.gz ...        kept documents, one file per task (datatrove JsonlWriter format)
    excluded/<step>/00000.jsonl.gz ...  every rejected document with excluded_by and filter_reason
    logs/<stage>/                       datatrove's logging dir per stage: per-task logs and stats
    stats.json                          docs and bytes in/out per step, rejections by reason, purity, ...

With a shared ``work_dir`` (Slurm, Ray) a run works in ``<work_dir>/run-<run_key>/`` and names its Slurm
jobs after ``run_key``. The assets pass the artifact's name and version, so a materialization whose step
was killed is resumed by the next one with the same inputs: it waits for the earlier attempt's jobs that
are still queued or running, then runs only the tasks without a completion marker.

No Dagster here: the assets in assets/corpus_pipeline.py call these functions inside a versioned build.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import uuid
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import orjson
from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
)
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.hashing import HashConfig

from config import CorpusPipelineArgs, DomainFilterArgs, MinhashArgs
from corpus.executors import ExecutorSettings, Stage, run_stages
from corpus.lid import OfflineLanguageFilter
from corpus.sources import SourceFile
from corpus.steps import (
    CodeQualityFilter,
    ExclusionWriter,
    Meter,
    MinhashCandidateCheck,
    OfflineURLFilter,
    PurityMeter,
    RankFileReader,
    Secret,
    SourceReader,
)
from corpus.tokenizers import make_tokenizer

STATS_FILE = "stats.json"
DOCUMENTS_DIR = "documents"
EXCLUDED_DIR = "excluded"
LOGS_DIR = "logs"
PLANTED_DUPLICATES = ("exact_duplicate", "near_duplicate")


def exact_dedup_content(doc: Document) -> str:
    """What exact dedup hashes: the text without surrounding whitespace."""
    return doc.text.strip()


def filter_chain(
    args: DomainFilterArgs,
    language_threshold: float | None,
    url_domain_blocklist: bool,
    exclusion_writer: Callable[[str], ExclusionWriter],
) -> list[tuple[str, Any]]:
    """The (step key, datatrove step) chain of one partition, in order. Keys name the exclusion folders
    and the rows of the statistics."""
    tokenizer = make_tokenizer(args.word_tokenizer, args.lid_language or "code")
    steps: list[tuple[str, Any]] = []
    if args.url_filter:
        steps.append(
            ("url", OfflineURLFilter(domain_blocklist=url_domain_blocklist, exclusion_writer=exclusion_writer("url")))
        )
    if args.lid_language:
        steps.append(
            (
                "language_id",
                OfflineLanguageFilter(
                    languages=[args.lid_language],
                    language_threshold=language_threshold,
                    exclusion_writer=exclusion_writer("language_id"),
                ),
            )
        )
    if (r := args.gopher_repetition) is not None:
        steps.append(
            (
                "gopher_repetition",
                GopherRepetitionFilter(
                    dup_line_frac=r.dup_line_frac,
                    dup_para_frac=r.dup_para_frac,
                    dup_line_char_frac=r.dup_line_char_frac,
                    dup_para_char_frac=r.dup_para_char_frac,
                    top_n_grams=tuple(map(tuple, r.top_n_grams)),
                    dup_n_grams=tuple(map(tuple, r.dup_n_grams)),
                    exclusion_writer=exclusion_writer("gopher_repetition"),
                    language=tokenizer,
                ),
            )
        )
    if (q := args.gopher_quality) is not None:
        steps.append(
            (
                "gopher_quality",
                GopherQualityFilter(
                    min_doc_words=q.min_doc_words,
                    max_doc_words=q.max_doc_words,
                    min_avg_word_length=q.min_avg_word_length,
                    max_avg_word_length=q.max_avg_word_length,
                    max_symbol_word_ratio=q.max_symbol_word_ratio,
                    max_bullet_lines_ratio=q.max_bullet_lines_ratio,
                    max_ellipsis_lines_ratio=q.max_ellipsis_lines_ratio,
                    max_non_alpha_words_ratio=q.min_alpha_words_ratio,
                    min_stop_words=q.min_stop_words,
                    stop_words=list(q.stop_words),
                    exclusion_writer=exclusion_writer("gopher_quality"),
                    language=tokenizer,
                ),
            )
        )
    if (c := args.c4) is not None:
        steps.append(
            (
                "c4",
                C4QualityFilter(
                    split_paragraph=True,
                    remove_citations=True,
                    filter_no_terminal_punct=c.filter_no_terminal_punct,
                    min_num_sentences=c.min_num_sentences,
                    min_words_per_line=c.min_words_per_line,
                    max_word_length=c.max_word_length,
                    filter_lorem_ipsum=c.filter_lorem_ipsum,
                    filter_javascript=c.filter_javascript,
                    filter_curly_bracket=c.filter_curly_bracket,
                    filter_policy=c.filter_policy,
                    exclusion_writer=exclusion_writer("c4"),
                    language=tokenizer,
                ),
            )
        )
    if (w := args.fineweb_quality) is not None:
        steps.append(
            (
                "fineweb_quality",
                FineWebQualityFilter(
                    line_punct_thr=w.line_punct_thr,
                    short_line_thr=w.short_line_thr,
                    short_line_length=w.short_line_length,
                    char_duplicates_ratio=w.char_duplicates_ratio,
                    new_line_ratio=w.new_line_ratio,
                    exclusion_writer=exclusion_writer("fineweb_quality"),
                    language=tokenizer,
                ),
            )
        )
    if (k := args.code_quality) is not None:
        steps.append(
            (
                "code_quality",
                CodeQualityFilter(
                    max_line_length=k.max_line_length,
                    max_mean_line_length=k.max_mean_line_length,
                    min_alphanum_fraction=k.min_alphanum_fraction,
                    min_lines=k.min_lines,
                    max_bytes=k.max_bytes,
                    autogenerated_markers=k.autogenerated_markers,
                    autogenerated_header_lines=k.autogenerated_header_lines,
                    exclusion_writer=exclusion_writer("code_quality"),
                ),
            )
        )
    if args.pii:
        steps.append(("pii", PIIFormatter()))
    return steps


def run_filter_partition(
    *,
    partition: str,
    source_uri: str,
    files: Sequence[SourceFile],
    storage_options: Mapping[str, Any] | None,
    args: DomainFilterArgs,
    language_threshold: float | None,
    pipeline: CorpusPipelineArgs,
    out_dir: Path,
    settings: ExecutorSettings,
    labels: Mapping[str, Mapping[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    run_key: str | None = None,
) -> dict[str, Any]:
    """Filter one raw source into ``out_dir`` and return (and write) its statistics."""
    run = _RunFolders(out_dir, settings, run_key)
    chain = filter_chain(args, language_threshold, pipeline.url_domain_blocklist, run.exclusion_writer)
    steps: list[Any] = [
        SourceReader(
            partition,
            source_uri,
            files,
            Secret(storage_options),
            exclusion_writer=run.exclusion_writer("read"),
            labels=labels,
        ),
        Meter("read"),
    ]
    for key, step in chain:
        steps += [step, Meter(key)]
    if args.lid_language:
        steps.append(PurityMeter(args.lid_language, pipeline.purity_min_chars))
    steps.append(JsonlWriter(run.path(DOCUMENTS_DIR)))
    stage = Stage("filter", steps, pipeline.tasks, run.path(LOGS_DIR, "filter"))
    run_stages(settings, [stage], log=log, job_prefix=run.job_prefix(f"kexaone-filter-{partition}"))
    run.finish()
    stats = filter_step_stats(
        out_dir / LOGS_DIR / "filter", ["read", *(key for key, _ in chain)], out_dir / EXCLUDED_DIR
    )
    summary = {
        "partition": partition,
        "stage": "filter",
        **stats,
        "language": args.lid_language,
        **purity_from(out_dir / LOGS_DIR / "filter"),
    }
    summary["planted"] = planted_noise_report(out_dir) if stats["planted_labels"] else None
    (out_dir / STATS_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


def run_dedup_partition(
    *,
    partition: str,
    input_folder: DataFolderLike,
    word_tokenizer: str,
    language: str | None,
    minhash: MinhashArgs,
    minhash_threshold: float,
    pipeline: CorpusPipelineArgs,
    out_dir: Path,
    settings: ExecutorSettings,
    log: Callable[[str], None] = print,
    run_key: str | None = None,
) -> dict[str, Any]:
    """Exact then MinHash dedup of one filtered partition into ``out_dir``; returns its statistics.
    With ``minhash.candidate_check``, LSH candidates below ``minhash_threshold`` full-signature
    similarity are dropped before clustering."""
    run = _RunFolders(out_dir, settings, run_key)
    exact = ExactDedupConfig(content_getter=exact_dedup_content, hash_config=HashConfig(precision=64))
    config = MinhashConfig(
        n_grams=minhash.n_grams,
        num_buckets=minhash.num_buckets,
        hashes_per_bucket=minhash.hashes_per_bucket,
        seed=minhash.seed,
        hash_config=HashConfig(precision=64),
    )
    tokenizer = make_tokenizer(word_tokenizer, language or "code")
    scratch = run.scratch
    tasks = pipeline.tasks
    final: list[Any] = [
        RankFileReader(scratch("exact_kept")),
        MinhashDedupFilter(
            scratch("minhash_remove"),
            load_cluster_ids=True,
            exclusion_writer=run.exclusion_writer("minhash_dedup", "near_duplicate"),
        ),
        Meter("minhash_dedup"),
    ]
    if language:
        final.append(PurityMeter(language, pipeline.purity_min_chars))
    final.append(JsonlWriter(run.path(DOCUMENTS_DIR)))
    stages = [
        Stage(
            "exact_signatures",
            [RankFileReader(input_folder), Meter("read"), ExactDedupSignature(scratch("exact_sigs"), config=exact)],
            tasks,
            run.path(LOGS_DIR, "exact_signatures"),
        ),
        Stage(
            "exact_find",
            [ExactFindDedups(scratch("exact_sigs"), scratch("exact_dups"), config=exact)],
            1,
            run.path(LOGS_DIR, "exact_find"),
        ),
        Stage(
            "exact_filter_minhash_signatures",
            [
                RankFileReader(input_folder),
                ExactDedupFilter(
                    scratch("exact_dups"),
                    config=exact,
                    exclusion_writer=run.exclusion_writer("exact_dedup", "exact_duplicate"),
                ),
                Meter("exact_dedup"),
                JsonlWriter(scratch("exact_kept")),
                MinhashDedupSignature(scratch("minhash_sigs"), config=config, language=tokenizer),
            ],
            tasks,
            run.path(LOGS_DIR, "exact_filter_minhash_signatures"),
        ),
        Stage(
            "minhash_buckets",
            [MinhashDedupBuckets(scratch("minhash_sigs"), scratch("minhash_buckets"), config=config)],
            minhash.num_buckets,
            run.path(LOGS_DIR, "minhash_buckets"),
        ),
        *(
            [
                Stage(
                    "minhash_candidate_check",
                    [
                        MinhashCandidateCheck(
                            scratch("minhash_sigs"),
                            scratch("minhash_buckets"),
                            scratch("minhash_checked"),
                            config=config,
                            threshold=minhash_threshold,
                        )
                    ],
                    1,
                    run.path(LOGS_DIR, "minhash_candidate_check"),
                )
            ]
            if minhash.candidate_check
            else []
        ),
        Stage(
            "minhash_cluster",
            [
                MinhashDedupCluster(
                    scratch("minhash_checked" if minhash.candidate_check else "minhash_buckets"),
                    scratch("minhash_remove"),
                    config=config,
                    save_cluster_id=True,
                )
            ],
            1,
            run.path(LOGS_DIR, "minhash_cluster"),
        ),
        Stage("minhash_filter", final, tasks, run.path(LOGS_DIR, "minhash_filter")),
    ]
    for name in ("exact_dups", "minhash_remove"):  # datatrove lists these even when nothing was found
        Path(scratch(name)).mkdir(parents=True, exist_ok=True)
    run_stages(settings, stages, log=log, job_prefix=run.job_prefix(f"kexaone-dedup-{partition}"))
    run.finish()
    logs = out_dir / LOGS_DIR
    meters = {
        **load_stage_stats(logs / "exact_signatures"),
        **load_stage_stats(logs / "exact_filter_minhash_signatures"),
        **load_stage_stats(logs / "minhash_filter"),
    }
    read = meters.get(Meter.stats_name("read"), {})
    steps = meter_steps(
        meters, ["read", "exact_dedup", "minhash_dedup"], int(read.get("documents", 0)), int(read.get("bytes", 0))
    )
    rejections = exclusion_summary(out_dir / EXCLUDED_DIR)
    docs_in, docs_out = steps[0]["docs_in"], steps[-1]["docs_out"]
    summary = {
        "partition": partition,
        "stage": "dedup",
        "steps": steps,
        "rejections": rejections,
        "totals": _totals(steps, rejections),
        "exact_duplicates_removed": steps[1]["docs_dropped"],
        "near_duplicates_removed": steps[2]["docs_dropped"],
        "dedup_rate": (docs_in - docs_out) / docs_in if docs_in else 0.0,
        "minhash": asdict(minhash),
        "minhash_threshold": minhash_threshold,
        "minhash_candidates": _candidate_counts(logs / "minhash_candidate_check"),
        "language": language,
        **purity_from(logs / "minhash_filter"),
        "planted_labels": int(read.get("planted", 0)),
    }
    summary["planted"] = (
        planted_duplicates_report(read_documents(input_folder), out_dir / DOCUMENTS_DIR)
        if summary["planted_labels"]
        else None
    )
    (out_dir / STATS_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


# -- statistics ------------------------------------------------------------------------------------


def load_stage_stats(logging_dir: Path) -> dict[str, dict[str, float]]:
    """Sum of every task's datatrove stats of one stage: step name -> stat label -> total."""
    merged: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for path in sorted((logging_dir / "stats").glob("*.json")):
        for step in json.loads(path.read_text()):
            for label, value in step.get("stats", {}).items():
                merged[step["name"]][label] += value["total"] if isinstance(value, dict) else value
    return {k: dict(v) for k, v in merged.items()}


def filter_step_stats(logging_dir: Path, keys: Sequence[str], excluded_dir: Path) -> dict[str, Any]:
    """Docs and bytes in/out of each filter step (from the Meters), rejections by reason, totals."""
    stats = load_stage_stats(logging_dir)
    reader = stats.get(f"{SourceReader.type}: {SourceReader.name}", {})
    rejections = exclusion_summary(excluded_dir)
    read_rejected = [r for r in rejections if r["step"] == "read"]
    # what came out of the files: documents read plus the records rejected while reading
    docs_in = int(reader.get("documents", 0)) + sum(r["documents"] for r in read_rejected)
    bytes_in = int(stats.get(Meter.stats_name("read"), {}).get("bytes", 0)) + sum(r["bytes"] for r in read_rejected)
    steps = meter_steps(stats, keys, docs_in, bytes_in)
    return {
        "steps": steps,
        "rejections": rejections,
        "totals": _totals(steps, rejections),
        "planted_labels": int(reader.get("planted_labels", 0)),
    }


def meter_steps(
    stats: Mapping[str, Mapping[str, float]], keys: Sequence[str], docs_in: int, bytes_in: int
) -> list[dict[str, Any]]:
    """One row per step: what its Meter saw come out, against what the previous one saw."""
    steps = []
    for key in keys:
        meter = stats.get(Meter.stats_name(key), {})
        docs_out, bytes_out = int(meter.get("documents", 0)), int(meter.get("bytes", 0))
        steps.append(
            {
                "step": key,
                "docs_in": docs_in,
                "docs_out": docs_out,
                "docs_dropped": docs_in - docs_out,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
            }
        )
        docs_in, bytes_in = docs_out, bytes_out
    return steps


def _totals(steps: Sequence[Mapping[str, Any]], rejections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    if not steps:
        return {}
    excluded = sum(r["documents"] for r in rejections)
    docs_in, docs_out = steps[0]["docs_in"], steps[-1]["docs_out"]
    return {
        "docs_in": docs_in,
        "docs_out": docs_out,
        "bytes_in": steps[0]["bytes_in"],
        "bytes_out": steps[-1]["bytes_out"],
        "docs_excluded": excluded,
        "bytes_excluded": sum(r["bytes"] for r in rejections),
        # nothing silently lost: every input document is either kept or in an exclusion file
        "all_accounted_for": docs_in == docs_out + excluded,
    }


def _candidate_counts(logging_dir: Path) -> dict[str, int] | None:
    stats = load_stage_stats(logging_dir).get(f"{MinhashCandidateCheck.type}: {MinhashCandidateCheck.name}")
    return {k: int(v) for k, v in stats.items()} if stats else None


def purity_from(logging_dir: Path) -> dict[str, Any]:
    meter = load_stage_stats(logging_dir).get(f"{PurityMeter.type}: {PurityMeter.name}", {})
    chars = int(meter.get("purity_chars", 0))
    return {"language_purity": meter.get("purity_matched_chars", 0) / chars if chars else None, "purity_chars": chars}


def exclusion_summary(excluded_dir: Path) -> list[dict[str, Any]]:
    """Rejected documents and bytes per (step, reason), read back from the exclusion files."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for path in sorted(excluded_dir.glob("*/*.jsonl.gz")):
        for record in _read_jsonl_gz(path.read_bytes()):
            meta = record.get("metadata", {})
            key = (meta.get("excluded_by", path.parent.name), str(meta.get("filter_reason", path.parent.name)))
            counts[key][0] += 1
            counts[key][1] += len(record.get("text", "").encode("utf-8"))
    return [
        {"step": step, "reason": reason, "documents": n, "bytes": b}
        for (step, reason), (n, b) in sorted(counts.items())
    ]


def read_documents(folder: DataFolderLike) -> Iterator[dict[str, Any]]:
    """Records of a documents/ folder (local path, URL or (path, fs) pair), file by file in rank order."""
    datafolder = get_datafolder(folder)
    if not datafolder.exists(""):
        return
    for name in sorted(datafolder.list_files(glob_pattern="*.jsonl.gz")):
        with datafolder.open(name, "rb") as f:
            yield from _read_jsonl_gz(f.read())


def _read_jsonl_gz(raw: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(raw).splitlines():
        if line.strip():
            yield orjson.loads(line)


def planted_noise_report(out_dir: Path) -> dict[str, Any]:
    """Planted low-quality / wrong-language documents (demo labels) that the filters kept."""
    survivors = defaultdict(list)
    for record in read_documents(str(out_dir / DOCUMENTS_DIR)):
        planted = record.get("metadata", {}).get("planted")
        if planted in ("low_quality", "wrong_language"):
            survivors[planted].append(record["id"])
    rejected = defaultdict(int)
    for path in sorted((out_dir / EXCLUDED_DIR).glob("*/*.jsonl.gz")):
        for record in _read_jsonl_gz(path.read_bytes()):
            planted = record.get("metadata", {}).get("planted")
            if planted in ("low_quality", "wrong_language"):
                rejected[planted] += 1
    return {"rejected": dict(rejected), "kept": {k: sorted(v) for k, v in survivors.items()}}


def planted_duplicates_report(input_records: Iterable[Mapping[str, Any]], documents_dir: Path) -> dict[str, Any]:
    """How dedup treated the planted duplicate pairs (``planted``/``duplicate_of`` labels).

    A pair is handled when exactly one of the two documents survives. Unlabelled documents that are not
    part of any pair must all survive (no false removals). Pairs whose documents did not reach dedup
    (filtered out earlier) are counted apart.
    """
    inputs = {}
    for record in input_records:
        meta = record.get("metadata", {})
        inputs[record["id"]] = (meta.get("planted"), meta.get("duplicate_of"))
    kept = {record["id"] for record in read_documents(str(documents_dir))}
    pairs, not_reached = [], 0
    in_pairs: set[str] = set()
    for doc_id, (planted, original) in inputs.items():
        if planted not in PLANTED_DUPLICATES:
            continue
        if original not in inputs:
            not_reached += 1
            continue
        in_pairs |= {doc_id, original}
        pairs.append(
            {
                "id": doc_id,
                "duplicate_of": original,
                "kind": planted,
                "duplicate_kept": doc_id in kept,
                "original_kept": original in kept,
                "handled": (doc_id in kept) != (original in kept),
            }
        )
    false_removals = sorted(
        i for i, (planted, _) in inputs.items() if not planted and i not in in_pairs and i not in kept
    )
    return {
        "pairs": pairs,
        "handled": sum(p["handled"] for p in pairs),
        "total": len(pairs),
        "not_reached": not_reached,
        "false_removals": false_removals,
        "passed": all(p["handled"] for p in pairs) and not false_removals,
    }


class _RunFolders:
    """Where a run writes: straight into ``out_dir`` (local executor), or into a run folder under the
    shared ``work_dir`` (Slurm/Ray) that is moved into ``out_dir`` once every stage has finished. Scratch
    (signatures, buckets, intermediate documents) is deleted at the end either way. ``run_key`` (the
    artifact's name and version) names the run folder and the Slurm jobs, so an attempt resumes the
    folder and adopts the jobs of an earlier one with the same key; without it each run is new."""

    def __init__(self, out_dir: Path, settings: ExecutorSettings, run_key: str | None = None):
        self.out_dir = Path(out_dir)
        self.local = settings.kind == "local" and not settings.work_dir
        self.key = hashlib.sha256(run_key.encode()).hexdigest()[:16] if run_key else uuid.uuid4().hex[:16]
        self.root = self.out_dir if self.local else Path(settings.work_dir) / f"run-{self.key}"
        self.root.mkdir(parents=True, exist_ok=True)

    def job_prefix(self, name: str) -> str:
        return f"{name}-{self.key}"

    def path(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))

    def scratch(self, name: str) -> str:
        return self.path("_scratch", name)

    def exclusion_writer(self, step: str, default_reason: str | None = None) -> ExclusionWriter:
        return ExclusionWriter(self.path(EXCLUDED_DIR, step), step=step, default_reason=default_reason)

    def finish(self) -> None:
        shutil.rmtree(self.root / "_scratch", ignore_errors=True)
        for completions in (self.root / LOGS_DIR).glob("*/completions"):  # empty task markers
            shutil.rmtree(completions, ignore_errors=True)
        if self.root != self.out_dir:
            for child in self.root.iterdir():
                shutil.move(str(child), self.out_dir / child.name)
            self.root.rmdir()
        (self.out_dir / DOCUMENTS_DIR).mkdir(exist_ok=True)  # present even when nothing was kept
        (self.out_dir / EXCLUDED_DIR).mkdir(exist_ok=True)
