"""Corpus pipeline benchmark: throughput per core of the filter chain and of dedup, and MinHash
recall / precision on planted near-duplicates at several edit rates. Not a test: it measures.

    .venv/bin/python -m bench.bench_corpus            # ~56 MB generated corpus, writes docs/benchmarks.md
    .venv/bin/python -m bench.bench_corpus --mb 8     # a quicker run, same tables
    .venv/bin/python -m bench.bench_corpus --workers  # only: the local process pool, 2 workers vs 1

The corpus is generated at bench time into a temporary folder (nothing is committed): documents are made of
demo-corpus sentences (corpus/demo_data) in which 40 % of the words are replaced by words of the same
language, so every document is new text in that language with the demo's sentence shapes; code files are
demo files with their identifiers renamed. Planted duplicates: 3 % exact copies and 3 % copies with 5 % of
their words edited.

Throughput runs the real pipelines (corpus.pipeline.run_filter_partition / run_dedup_partition) with the
tiny preset and one worker, so tasks run one after the other on one core: docs/s and MB/s are per core.
Recall / precision: for each language and edit rate, 1,000 distinct documents of one "site" (they share a
header and a footer sentence) plus 200 copies with that share of words replaced; a copy counts as found when
it or its original is removed, a removal is correct when the removed document belongs to a planted pair.
Measured for the tiny and the full preset's MinHash.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import regex

from bench.report import markdown_table, write_section
from config import CORPUS_DOMAINS, MinhashArgs, get_preset
from corpus.executors import ExecutorSettings
from corpus.pipeline import read_documents, run_dedup_partition, run_filter_partition
from corpus.sources import content_manifest, filesystem, iter_documents

DEMO = Path(__file__).resolve().parent.parent / "corpus" / "demo_data"
SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")
WORDS = regex.compile(r"[\p{L}\p{M}]+(?:['’-][\p{L}\p{M}]+)*")
JAPANESE_WORDS = regex.compile(r"\p{Han}+|[\p{Katakana}ー]+|\p{Hiragana}+")
IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{2,}\b")
KEYWORDS = {
    "def",
    "return",
    "class",
    "import",
    "from",
    "for",
    "while",
    "if",
    "else",
    "elif",
    "try",
    "except",
    "with",
    "as",
    "in",
    "not",
    "and",
    "or",
    "None",
    "True",
    "False",
    "self",
    "fn",
    "let",
    "mut",
    "pub",
    "struct",
    "impl",
    "func",
    "package",
    "const",
    "var",
    "function",
    "int",
    "char",
    "void",
    "static",
    "include",
    "SELECT",
    "FROM",
    "WHERE",
    "CREATE",
    "TABLE",
    "echo",
    "then",
    "done",
    "local",
    "new",
}


def demo_documents(source: str) -> list[dict]:
    manifest = content_manifest(source, str(DEMO / source))
    fs, _ = filesystem(manifest.uri)
    return [
        {"id": d.id, "text": d.text, **d.meta}
        for f in manifest.files
        for d in iter_documents(fs, f)
        if not d.meta.get("planted")
    ]


class Mutator:
    """Replaces words of a language's text by random words of the same language (from the demo corpus)."""

    def __init__(self, language: str, texts: list[str]):
        self.joiner = "" if language == "ja" else " "
        self.word = JAPANESE_WORDS if language == "ja" else WORDS
        self.vocabulary = [w for t in texts for w in self.word.findall(t) if not w.isspace()]
        self.sentences = [s.strip() for t in texts for s in SENTENCE.split(t.replace("\n", " ")) if len(s.strip()) > 15]

    def mutate(self, text: str, rate: float, rng: random.Random) -> str:
        def swap(m: regex.Match) -> str:
            if rng.random() >= rate:
                return m.group(0)
            new = rng.choice(self.vocabulary)
            while new == m.group(0):
                new = rng.choice(self.vocabulary)
            return new

        return self.word.sub(swap, text)

    def document(self, rng: random.Random, rate: float = 0.4) -> str:
        title = self.mutate(rng.choice(self.sentences), rate, rng).rstrip(".。!?！？")[:60]
        paragraphs = [
            self.joiner.join(self.mutate(rng.choice(self.sentences), rate, rng) for _ in range(rng.randint(3, 5)))
            for _ in range(rng.randint(2, 4))
        ]
        return title + "\n\n" + "\n\n".join(paragraphs)


def code_document(source: str, rng: random.Random) -> str:
    names: dict[str, str] = {}

    def rename(m: re.Match) -> str:
        word = m.group(0)
        if word in KEYWORDS:
            return word
        if word not in names:
            names[word] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 10)))
        return names[word]

    return IDENTIFIER.sub(rename, source)


def generate_source(source: str, folder: Path, target_bytes: int, rng: random.Random, files: int = 4) -> dict:
    """One raw source folder of JSONL.gz files; 3 % exact and 3 % near (5 % words edited) duplicates."""
    demo = demo_documents(source)
    mutator = None if source == "code" else Mutator("en" if source == "stem" else source, [d["text"] for d in demo])
    docs, size = [], 0
    while size < target_bytes:
        if docs and rng.random() < 0.06:
            original = rng.choice(docs)
            exact = rng.random() < 0.5
            text = original["text"] if exact or mutator is None else mutator.mutate(original["text"], 0.05, rng)
        else:
            text = code_document(rng.choice(demo)["text"], rng) if mutator is None else mutator.document(rng)
        docs.append(
            {"id": f"{source}-{len(docs):07d}", "text": text, "url": f"https://example.com/{source}/{len(docs)}"}
        )
        size += len(text.encode("utf-8"))
    folder.mkdir(parents=True)
    per_file = -(-len(docs) // files)
    for i in range(files):
        lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs[i * per_file : (i + 1) * per_file])
        (folder / f"part-{i:02d}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), compresslevel=1))
    return {"documents": len(docs), "bytes": size}


def throughput(root: Path, work: Path, mb: float, log) -> list[list]:
    preset = get_preset("tiny")
    rng = random.Random(1234)
    rows = []
    total = defaultdict(float)
    for source in CORPUS_DOMAINS:
        generated = generate_source(source, root / source, int(mb * 1e6 / len(CORPUS_DOMAINS)), rng)
        manifest = content_manifest(source, str(root / f"{source}-{mb:g}"))
        args = preset.data.filters[source]
        started = time.perf_counter()
        summary = run_filter_partition(
            partition=source,
            source_uri=manifest.uri,
            files=manifest.files,
            storage_options=None,
            args=args,
            language_threshold=preset.data.language_score_threshold.get(args.lid_language or "", None),
            pipeline=preset.data.pipeline,
            out_dir=work / source / "filter",
            settings=ExecutorSettings(),
            log=lambda _: None,
        )
        filter_s = time.perf_counter() - started
        stage_s: dict[str, float] = {}

        def timed(line: str) -> None:
            m = re.match(r"stage (\S+): .* in ([\d.]+)s", line)
            if m:
                stage_s[m.group(1)] = float(m.group(2))

        started = time.perf_counter()
        dedup = run_dedup_partition(
            partition=source,
            input_folder=str(work / source / "filter" / "documents"),
            word_tokenizer=args.word_tokenizer,
            language=args.lid_language,
            minhash=preset.data.minhash,
            minhash_threshold=preset.data.minhash_threshold,
            pipeline=preset.data.pipeline,
            out_dir=work / source / "dedup",
            settings=ExecutorSettings(),
            log=timed,
        )
        dedup_s = time.perf_counter() - started
        minhash_s = sum(v for k, v in stage_s.items() if k.startswith("minhash")) + stage_s.get(
            "exact_filter_minhash_signatures", 0.0
        )
        t = summary["totals"]
        d = dedup["totals"]
        rows.append(
            [
                source,
                generated["documents"],
                f"{t['bytes_in'] / 1e6:.1f}",
                round(t["docs_in"] / filter_s),
                f"{t['bytes_in'] / 1e6 / filter_s:.2f}",
                f"{t['docs_out'] / t['docs_in']:.3f}",
                round(d["docs_in"] / dedup_s),
                f"{d['bytes_in'] / 1e6 / dedup_s:.2f}",
                round(d["docs_in"] / minhash_s),
                f"{dedup['dedup_rate']:.3f}",
            ]
        )
        for key, value in (
            ("docs", t["docs_in"]),
            ("bytes", t["bytes_in"]),
            ("filter_s", filter_s),
            ("dedup_docs", d["docs_in"]),
            ("dedup_bytes", d["bytes_in"]),
            ("dedup_s", dedup_s),
            ("minhash_s", minhash_s),
            ("kept", t["docs_out"]),
            ("removed", d["docs_in"] - d["docs_out"]),
        ):
            total[key] += value
        log(f"{source}: {generated['documents']} docs, filter {filter_s:.1f}s, dedup {dedup_s:.1f}s")
    rows.append(
        [
            "**all**",
            int(total["docs"]),
            f"{total['bytes'] / 1e6:.1f}",
            round(total["docs"] / total["filter_s"]),
            f"{total['bytes'] / 1e6 / total['filter_s']:.2f}",
            f"{total['kept'] / total['docs']:.3f}",
            round(total["dedup_docs"] / total["dedup_s"]),
            f"{total['dedup_bytes'] / 1e6 / total['dedup_s']:.2f}",
            round(total["dedup_docs"] / total["minhash_s"]),
            f"{total['removed'] / total['dedup_docs']:.3f}",
        ]
    )
    return rows


def worker_import_seconds() -> float:
    """Wall time of a fresh interpreter that imports what a spawned corpus worker imports (fastest of 3)."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import corpus.pipeline"], check=True)
        runs.append(time.perf_counter() - started)
    return min(runs)


def workers_rows(root: Path, work: Path, sizes_mb: list[float], log) -> list[list]:
    """The same partitions through the real pipelines with 1 and with 2 local workers (spawned pool), side by
    side on this machine: wall time of filter + dedup, speed-up, and whether the outputs are identical."""
    preset = get_preset("tiny")
    rows = []
    for mb, source in ((mb, source) for mb in sizes_mb for source in ("en", "ko", "code")):
        rng = random.Random(f"{source}-{mb}")
        generated = generate_source(source, root / f"{source}-{mb:g}", int(mb * 1e6 / 3), rng)
        manifest = content_manifest(source, str(root / f"{source}-{mb:g}"))
        args = preset.data.filters[source]
        seconds, outputs = {}, {}
        for workers in (1, 2):
            out = work / f"{source}-{mb:g}-{workers}"
            started = time.perf_counter()
            run_filter_partition(
                partition=source,
                source_uri=manifest.uri,
                files=manifest.files,
                storage_options=None,
                args=args,
                language_threshold=preset.data.language_score_threshold.get(args.lid_language or "", None),
                pipeline=preset.data.pipeline,
                out_dir=out / "filter",
                settings=ExecutorSettings(workers=workers),
                log=lambda _: None,
            )
            run_dedup_partition(
                partition=source,
                input_folder=str(out / "filter" / "documents"),
                word_tokenizer=args.word_tokenizer,
                language=args.lid_language,
                minhash=preset.data.minhash,
                minhash_threshold=preset.data.minhash_threshold,
                pipeline=preset.data.pipeline,
                out_dir=out / "dedup",
                settings=ExecutorSettings(workers=workers),
                log=lambda _: None,
            )
            seconds[workers] = time.perf_counter() - started
            outputs[workers] = sorted((d["id"], d["text"]) for d in read_documents(str(out / "dedup" / "documents")))
        rows.append(
            [
                source,
                generated["documents"],
                f"{generated['bytes'] / 1e6:.1f}",
                f"{seconds[1]:.1f}",
                f"{seconds[2]:.1f}",
                f"{seconds[1] / seconds[2]:.2f}x",
                "yes" if outputs[1] == outputs[2] else "NO",
                len(outputs[1]),
            ]
        )
        log(f"workers {source}: 1 worker {seconds[1]:.1f}s, 2 workers {seconds[2]:.1f}s")
    return rows


def recall_precision(
    work: Path,
    configs: dict[str, tuple[MinhashArgs, float]],
    rates: list[float],
    languages: list[str],
    originals: int,
    copies: int,
    log,
) -> list[list]:
    rows = []
    tiny = get_preset("tiny")
    for preset_name, (m, threshold) in configs.items():
        for rate in rates:
            found = removed = correct = pairs = 0
            for language in languages:
                rng = random.Random(f"{language}-{rate}")
                mutator = Mutator(language, [d["text"] for d in demo_documents(language)])
                # every page of a site shares a header and a footer sentence: distinct documents with ~5-10 %
                # of their shingles in common, the case that costs MinHash precision
                header, footer = rng.choice(mutator.sentences), rng.choice(mutator.sentences)
                docs = [
                    {"id": f"o{i}", "text": f"{header}\n\n{mutator.document(rng)}\n\n{footer}"}
                    for i in range(originals)
                ]
                planted = {}
                for i in range(copies):
                    source = docs[i]
                    planted[f"c{i}"] = source["id"]
                    docs.append({"id": f"c{i}", "text": mutator.mutate(source["text"], rate, rng)})
                rng.shuffle(docs)
                folder = work / f"{preset_name}-{m.n_grams}-{m.num_buckets}-{m.hashes_per_bucket}-{language}-{rate}"
                half = len(docs) // 2
                _write(folder / "in", [docs[:half], docs[half:]])
                args = tiny.data.filters[language]
                run_dedup_partition(
                    partition=language,
                    input_folder=str(folder / "in"),
                    word_tokenizer=args.word_tokenizer,
                    language=None,
                    minhash=m,
                    minhash_threshold=threshold,
                    pipeline=tiny.data.pipeline,
                    out_dir=folder / "out",
                    settings=ExecutorSettings(),
                    log=lambda _: None,
                )
                kept = {d["id"] for d in read_documents(str(folder / "out" / "documents"))}
                in_pairs = set(planted) | set(planted.values())
                gone = {d["id"] for d in docs} - kept
                found += sum(1 for c, o in planted.items() if c not in kept or o not in kept)
                pairs += len(planted)
                removed += len(gone)
                correct += len(gone & in_pairs)
            check = f", check >= {threshold}" if m.candidate_check else ""
            rows.append(
                [
                    preset_name,
                    f"{m.n_grams}-grams, {m.num_buckets}x{m.hashes_per_bucket}{check}",
                    f"{rate:.0%}",
                    f"{found / pairs:.3f}",
                    f"{correct / removed if removed else 1.0:.4f}",
                    removed - correct,
                ]
            )
            log(f"{preset_name} edit {rate:.0%}: recall {found / pairs:.3f}")
    return rows


def _write(folder: Path, shards: list[list[dict]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rank, docs in enumerate(shards):
        lines = "".join(
            json.dumps({"text": d["text"], "id": d["id"], "metadata": {}}, ensure_ascii=False) + "\n" for d in docs
        )
        (folder / f"{rank:05d}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), compresslevel=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=56.0, help="size of the generated corpus (MB of text)")
    parser.add_argument("--originals", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    parser.add_argument(
        "--workers", action="store_true", help="only the 1-worker vs 2-worker comparison (section corpus_workers)"
    )
    parser.add_argument("--workers-mb", default="8,48", help="corpus sizes (MB, comma-separated) for --workers")
    args = parser.parse_args()
    log = lambda line: print(line, flush=True)  # noqa: E731
    started = time.perf_counter()
    if args.workers:
        sizes = [float(x) for x in args.workers_mb.split(",")]
        with tempfile.TemporaryDirectory(prefix="kexaone-bench-workers-") as tmp:
            rows = workers_rows(Path(tmp) / "raw", Path(tmp) / "work", sizes, log)
        imports = worker_import_seconds()
        body = "\n".join(
            [
                f"Generated corpora as above ({' and '.join(f'{mb:g}' for mb in sizes)} MB, each a third en, ko, code; "
                "tiny preset: 2 tasks per stage). Each partition's filter + dedup through `corpus.pipeline` with "
                "`ExecutorSettings(workers=1)` (tasks one after the other in the calling process) and `workers=2` (a "
                "pool of two *spawned* worker processes, `corpus.executors.SpawnPoolPipelineExecutor`), one after the "
                "other in one run. 'same output' compares every kept document (id and text).",
                "",
                markdown_table(
                    ["partition", "docs", "MB", "1 worker s", "2 workers s", "speed-up", "same output", "kept"], rows
                ),
                "",
                f"Total bench time {time.perf_counter() - started:.0f} s. Each stage with more than one task (5 per "
                "partition: filter; exact signatures; exact filter + MinHash signatures; MinHash buckets; MinHash "
                "filter) starts its own pool: a manager and two fresh interpreters, each "
                f"importing what a worker needs, {imports:.1f} s here (`python -c 'import corpus.pipeline'`, fastest "
                "of 3), on 2 cores. The pool pays off only when a stage's work is many times that.",
            ]
        )
        if args.no_write:
            print(body)
        else:
            write_section(
                "corpus_workers",
                "Corpus pipeline: 2 local workers vs 1",
                f".venv/bin/python -m bench.bench_corpus --workers --workers-mb {args.workers_mb}",
                body,
            )
        return
    with tempfile.TemporaryDirectory(prefix="kexaone-bench-corpus-") as tmp:
        tmp_path = Path(tmp)
        speed = throughput(tmp_path / "raw", tmp_path / "work", args.mb, log)
        configs = {
            name: (get_preset(name).data.minhash, get_preset(name).data.minhash_threshold)
            for name in ("tiny", "k-exaone-236b")
        }
        quality = recall_precision(
            tmp_path / "rp",
            configs,
            [0.02, 0.05, 0.10, 0.15, 0.20],
            ["en", "ko", "ja"],
            args.originals,
            args.copies,
            log,
        )
    tiny = get_preset("tiny").data.minhash
    body = "\n".join(
        [
            f"Generated corpus: {speed[-1][2]} MB of text in {speed[-1][1]} documents over the 8 partitions (tiny "
            "preset, one worker = one core, 2 tasks per partition run one after the other). Filter = the partition's "
            "whole chain (read, URL, language ID, Gopher, C4, FineWeb or code heuristics, PII, write, purity meter); "
            "dedup = exact (signature, find, filter) + MinHash (signature, buckets, candidate check, cluster, "
            "filter); MinHash = its stages only.",
            "",
            markdown_table(
                [
                    "partition",
                    "docs",
                    "MB",
                    "filter docs/s",
                    "filter MB/s",
                    "kept",
                    "dedup docs/s",
                    "dedup MB/s",
                    "MinHash docs/s",
                    "dedup rate",
                ],
                speed,
            ),
            "",
            f"MinHash recall / precision: {args.originals} distinct documents sharing a header and a footer sentence "
            f"+ {args.copies} copies with the given share of words replaced, in each of en, ko (eojeol), ja (script "
            "runs); both dedup stages. 'false' = removed documents that were in no planted pair. Targets at <= 10 % "
            "edited words: recall >= 0.95, "
            f"precision >= 0.99. tiny = {tiny.n_grams}-grams, {tiny.num_buckets} buckets x {tiny.hashes_per_bucket} "
            f"(candidate similarity {tiny.lsh_threshold:.2f}); k-exaone-236b = FineWeb's 5-grams, 14 x 8 (0.72).",
            "",
            markdown_table(["preset", "MinHash", "edited words", "recall", "precision", "false"], quality),
            "",
            f"Total bench time {time.perf_counter() - started:.0f} s.",
        ]
    )
    if args.no_write:
        print(body)
    else:
        write_section(
            "corpus",
            "Corpus pipeline: filter and dedup throughput, MinHash recall / precision",
            ".venv/bin/python -m bench.bench_corpus",
            body,
        )


if __name__ == "__main__":
    main()
