"""SuperBPE vs plain BPE, side by side in one run, at three vocabulary sizes; and training memory/time at
three corpus sizes.

    .venv/bin/python -m bench.bench_tokenizer              # writes the "tokenizer" section of docs/benchmarks.md

Corpus (built at run time, nothing downloaded): English prose = docstrings of the Python packages
installed in .venv, code = their source files, plus the shipped demo corpus for ko/es/de/ja/vi/STEM.
Training follows the shipped recipe (tokenizer.recipe) with the tiny preset's ratios rescaled to each
vocabulary size: base vocabulary = 2/3 V (100K : 150K), keep 70 %, superwords 20 %.
"""

from __future__ import annotations

import argparse
import ast
import json
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

from bench.report import markdown_table, write_section

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
DEMO = Path(__file__).resolve().parent.parent / "corpus" / "demo_data"


def build_corpus(folder: Path, megabytes: float) -> dict[str, int]:
    """Write en (docstrings) and code (sources) JSONL up to `megabytes` each; copy nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    limit = int(megabytes * 1e6)
    sizes = {"en": 0, "code": 0}
    with open(folder / "en.jsonl", "w") as prose, open(folder / "code.jsonl", "w") as code:
        for path in sorted(SITE_PACKAGES.rglob("*.py")):
            if sizes["en"] >= limit and sizes["code"] >= limit:
                break
            try:
                source = path.read_text(encoding="utf-8")
                with warnings.catch_warnings():  # third-party files with invalid escapes etc.
                    warnings.simplefilter("ignore")
                    tree = ast.parse(source)
            except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
                continue
            rel = str(path.relative_to(SITE_PACKAGES))
            if sizes["code"] < limit and 500 < len(source) < 200_000:
                code.write(json.dumps({"id": f"code:{rel}", "text": source}) + "\n")
                sizes["code"] += len(source.encode())
            if sizes["en"] < limit:
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                        doc = ast.get_docstring(node)
                        if doc and len(doc) > 300:
                            prose.write(
                                json.dumps({"id": f"en:{rel}:{getattr(node, 'lineno', 0)}", "text": doc}) + "\n"
                            )
                            sizes["en"] += len(doc.encode())
    return sizes


def domains_for(folder: Path):
    from corpus.sources import content_manifest, filesystem, iter_documents

    def stream(paths):
        def docs():
            for uri in paths:
                manifest = content_manifest("bench", uri)
                fs, _ = filesystem(uri)
                for f in manifest.files:
                    for d in iter_documents(fs, f):
                        yield f"{uri}:{d.id}", d.text

        return docs

    generated = {"en": [str(folder / "prose")], "code": [str(folder / "src")]}
    return {
        d: stream(generated.get(d, []) + [str(DEMO / d)]) for d in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")
    }


def preset_for(vocab: int):
    from config import get_preset

    padded = -(-vocab // 128) * 128 + 128  # room for the special tokens
    return get_preset(
        "tiny",
        {"tokenizer.vocab_size": vocab, "tokenizer.base_vocab_size": vocab * 2 // 3, "model.padded_vocab_size": padded},
    )


def layout(folder: Path, megabytes: float) -> dict[str, int]:
    (folder / "prose").mkdir(parents=True, exist_ok=True)
    (folder / "src").mkdir(parents=True, exist_ok=True)
    sizes = build_corpus(folder / "tmp", megabytes)
    (folder / "tmp" / "en.jsonl").rename(folder / "prose" / "en.jsonl")
    (folder / "tmp" / "code.jsonl").rename(folder / "src" / "code.jsonl")
    return sizes


def encode_mb_per_s(tok, texts: list[str]) -> float:
    n = sum(len(t.encode()) for t in texts)
    start = time.perf_counter()
    for t in texts:
        tok.encode(t, add_special_tokens=False)
    return n / 1e6 / (time.perf_counter() - start)


def compare_vocab_sizes(folder: Path, vocabs: list[int]) -> str:
    from tokenizer.recipe import (
        REPORT_DOMAINS,
        build_base_tokenizer,
        build_plain_bpe,
        build_superbpe_tokenizer,
        efficiency_rows,
        held_out_texts,
        superword_vocab_share,
    )

    domains = domains_for(folder)
    rows_out = []
    for vocab in vocabs:
        preset = preset_for(vocab)
        held = preset.tokenizer.held_out_fraction
        t0 = time.perf_counter()
        plain = build_plain_bpe(preset, domains)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = build_base_tokenizer(preset, domains)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        superbpe = build_superbpe_tokenizer(preset, base, domains).tokenizer
        t_super = time.perf_counter() - t0
        rows = efficiency_rows({"plain": plain, "superbpe": superbpe}, domains, held)
        by = {(r["tokenizer"], r["domain"]): r["bytes_per_token"] for r in rows}
        mix = list(held_out_texts(domains, list(domains), held)())
        mix_plain = sum(len(t.encode()) for t in mix) / sum(len(plain.encode(t).ids) for t in mix)
        mix_super = sum(len(t.encode()) for t in mix) / sum(len(superbpe.encode(t).ids) for t in mix)
        enc_plain, enc_super = encode_mb_per_s(plain, mix), encode_mb_per_s(superbpe, mix)
        rows_out.append(
            [
                vocab,
                f"{t_plain:.1f}",
                f"{t_super:.1f} (+{t_base:.1f} base)",
                f"{enc_plain:.2f}",
                f"{enc_super:.2f}",
                f"{enc_plain / enc_super:.2f}x",
                f"{mix_plain:.3f}",
                f"{mix_super:.3f}",
                f"{100 * (mix_super / mix_plain - 1):+.1f} %",
                *[f"{100 * (by[('superbpe', d)] / by[('plain', d)] - 1):+.1f} %" for d in REPORT_DOMAINS],
                f"{100 * superword_vocab_share(superbpe):.1f} %",
            ]
        )
        print(f"vocab {vocab}: done", file=sys.stderr)
    columns = [
        "vocab",
        "train plain s",
        "train SuperBPE s",
        "encode plain MB/s",
        "encode SuperBPE MB/s",
        "plain/SuperBPE encode time",
        "held-out mix B/tok plain",
        "B/tok SuperBPE",
        "gain (mix)",
        *[f"gain {d}" for d in REPORT_DOMAINS],
        "superword share of vocab",
    ]
    return markdown_table(columns, rows_out)


def memory_child(folder: str, vocab: int) -> None:
    """Run in a subprocess: train the full recipe, print wall time; the parent reads peak RSS."""
    from tokenizer.recipe import build_base_tokenizer, build_superbpe_tokenizer

    domains = domains_for(Path(folder))
    preset = preset_for(vocab)
    t0 = time.perf_counter()
    base = build_base_tokenizer(preset, domains)
    build_superbpe_tokenizer(preset, base, domains)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": peak_mib}))


def memory_scaling(root: Path, sizes_mb: list[float], vocab: int) -> str:
    rows = []
    for mb in sizes_mb:
        folder = root / f"mem-{mb}"
        sizes = layout(folder, mb)
        proc = subprocess.run(
            [sys.executable, "-m", "bench.bench_tokenizer", "--memory-child", str(folder), "--vocab", str(vocab)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        total_mb = (sizes["en"] + sizes["code"]) / 1e6
        rows.append([f"{total_mb:.0f} MB", vocab, f"{result['seconds']:.0f}", f"{result['peak_mib']:.0f}"])
        print(f"memory {mb} MB: done", file=sys.stderr)
    return markdown_table(["corpus (prose + code, + demo)", "vocab", "train s (base + SuperBPE)", "peak RSS MiB"], rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=15.0, help="MB of prose and of code for the comparison")
    parser.add_argument("--vocabs", default="1536,8192,32768")
    parser.add_argument("--memory-sizes", default="4,12,36", help="MB of prose and of code per scaling run")
    parser.add_argument("--memory-child")
    parser.add_argument("--vocab", type=int, default=32768)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.vocab)
        return
    with tempfile.TemporaryDirectory(prefix="kexaone-bench-tok-") as tmp:
        root = Path(tmp)
        sizes = layout(root / "main", args.mb)
        comparison = compare_vocab_sizes(root / "main", [int(v) for v in args.vocabs.split(",")])
        scaling = memory_scaling(root, [float(m) for m in args.memory_sizes.split(",")], args.vocab)
    body = (
        f"Corpus: {sizes['en'] / 1e6:.1f} MB English prose (docstrings of installed packages) + "
        f"{sizes['code'] / 1e6:.1f} MB Python source + the demo corpus (ko/es/de/ja/vi/STEM, ~30 KB each); "
        "10 % of documents held out. Gains are SuperBPE over a plain BPE of the same vocabulary size trained "
        "on the same data; encode throughput is single-threaded `encode` on the held-out mix.\n\n"
        f"{comparison}\n\nTraining memory and time vs corpus size (the corpus is streamed from disk; "
        f"peak RSS of the training process):\n\n{scaling}\n"
    )
    write_section("tokenizer", "Tokenizer: SuperBPE vs plain BPE", "python -m bench.bench_tokenizer", body)


if __name__ == "__main__":
    main()
