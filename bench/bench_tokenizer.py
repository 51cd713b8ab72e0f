"""SuperBPE vs plain BPE, side by side in one run, at three vocabulary sizes; and training memory/time at
three corpus sizes.

    .venv/bin/python -m bench.bench_tokenizer              # writes the "tokenizer" section of docs/benchmarks.md

Corpus (built at run time, nothing downloaded): English prose = docstrings of the Python packages
installed in .venv, code = their source files, plus the shipped demo corpus for ko/es/de/ja/vi/STEM.
Training follows the shipped recipe (tokenizer.recipe) with the tiny preset's ratios rescaled to each
vocabulary size: base vocabulary = 2/3 V (100K : 150K), keep 70 %, superwords 20 %.

On the real-text benchmark corpus (issue 20; built by ``python -m bench.multilingual_corpus CORPUS``):

    .venv/bin/python -m bench.bench_tokenizer --corpus CORPUS --vocabs 32768 [--train-cap-mb 12] [--out F.md]

trains the previous-generation base tokenizer (2/3 V, NFKC), plain BPE (V) and SuperBPE (V) on the
corpus's train split only, each in its own process (wall time and peak RSS per tokenizer), and measures
bytes per token on its held-out split per language and report domain, the superword share of the
vocabulary against the policy, and the en : ko : other split of the superword merges. It prints the
tables (and writes them to ``--out``); it does not touch docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

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


def preset_for(vocab: int, held_out_fraction: float | None = None):
    from config import get_preset

    return get_preset("tiny", _preset_overrides(vocab, held_out_fraction))


def _preset_overrides(vocab: int, held_out_fraction: float | None = None) -> dict:
    from config import get_preset

    full = get_preset("k-exaone-236b")
    if vocab == full.tokenizer.vocab_size:
        padded = full.model.padded_vocab_size  # 150,000 -> 153,600 as in the HF config
    else:
        padded = -(-vocab // 128) * 128 + 128  # room for the special tokens
    overrides = {
        "tokenizer.vocab_size": vocab,
        "tokenizer.base_vocab_size": vocab * 2 // 3,
        "model.padded_vocab_size": padded,
        "tokenizer.reallocation_split": full.tokenizer.reallocation_split,  # the full preset's recipe
        "tokenizer.keep_base_ancestors": full.tokenizer.keep_base_ancestors,
    }
    if held_out_fraction is not None:
        overrides["tokenizer.held_out_fraction"] = held_out_fraction
    return overrides


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


# -- the real-text corpus (bench.multilingual_corpus) -------------------------------------------------

CORPUS_DOMAINS = ("en", "ko", "es", "de", "ja", "vi", "code", "stem")
# The corpus has its own held-out split (heldout.jsonl, never read for training); the recipe's internal
# split is made (almost) empty so that every train document is trained on. Validation wants it > 0.
NO_INTERNAL_HOLD_OUT = 1e-9


def corpus_streams(folder: Path, split: str, cap_mb: float | None = None):
    from bench.multilingual_corpus import read_split
    from tokenizer.recipe import is_held_out

    stats = json.loads((folder / "stats.json").read_text())

    def stream(domain: str):
        # A cap keeps a deterministic sample (by document id) spread over every part of the domain, not its
        # first parts in file order.
        total = stats[domain]["train_bytes" if split == "train" else "held_out_bytes"]
        keep = 1.0 if cap_mb is None or total <= cap_mb * 1e6 else cap_mb * 1e6 / total

        def docs():
            for doc_id, text in read_split(folder, domain, split):
                if keep >= 1.0 or is_held_out(f"sample:{doc_id}", keep):
                    yield doc_id, text

        return docs

    return {d: stream(d) for d in CORPUS_DOMAINS}


# Recipe variants prototyped here (not in tokenizer/): preset overrides, another reallocation mix (a domain
# named twice is read twice: twice its weight in a pooled stage-1 reallocation; None = the preset's), and
# whether to train with CJK script-run pre-tokenization (bench.tokenizer_variants.cjk_patched). "shipped"
# is the full preset's recipe (tokenizer.reallocation_split = by_need, keep_base_ancestors = counted) at the
# bench's vocabulary size; the other variants change only what they name.
SHIPPED_REALLOC = ("de", "ja", "vi", "stem", "code")
VARIANTS = {
    # the recipe before issue 20 (still the tiny preset's): ancestors on top of the kept 70 %, one BPE over
    # the reallocation domains' pooled texts
    "pooled": ({"tokenizer.reallocation_split": "pooled", "tokenizer.keep_base_ancestors": "extra"}, None, False),
    # issue 20 part 3 before the kept ancestors were counted: by need, ancestors on top of the kept 70 %
    "keep-extra": ({"tokenizer.keep_base_ancestors": "extra"}, None, False),
    "keep60": ({"tokenizer.keep_base_fraction": 0.6}, None, False),
    "realloc-weighted": ({}, ("de", "de", "ja", "ja", "ja", "vi", "stem", "code"), False),
    "keep60-weighted": (
        {"tokenizer.keep_base_fraction": 0.6},
        ("de", "de", "ja", "ja", "ja", "vi", "stem", "code"),
        False,
    ),
    "realloc-all": ({}, ("en", "ko", "es", "de", "ja", "vi", "stem", "code"), False),
    "keep60-balanced": (
        {"tokenizer.keep_base_fraction": 0.6},
        ("ko", "de", "de", "ja", "ja", "ja", "vi", "stem", "code", "code"),
        False,
    ),
    "keep65-balanced": (
        {"tokenizer.keep_base_fraction": 0.65},
        ("ko", "de", "de", "ja", "ja", "ja", "vi", "stem", "code", "code"),
        False,
    ),
    # issue 20, keep 70 % as the report: CJK script runs, then Korean in the reallocation.
    "cjk": ({}, None, True),
    "cjk-ko": ({}, ("ko", "de", "ja", "vi", "stem", "code"), True),
    "cjk-ko-de": ({}, ("ko", "de", "de", "ja", "vi", "stem", "code"), True),
    "cjk-ko2-de-code": ({}, ("ko", "ko", "de", "de", "ja", "vi", "stem", "code", "code"), True),
    "cjk-ko2-de": ({}, ("ko", "ko", "de", "de", "ja", "vi", "stem", "code"), True),
    # keep 70 %, Japanese-heavy reallocation (stem dropped from it: stem is a base domain and has margin).
    "de2-ja4-code2": ({}, ("de", "de", "ja", "ja", "ja", "ja", "vi", "code", "code"), False),
    "ko-de2-ja4-code2": ({}, ("ko", "de", "de", "ja", "ja", "ja", "ja", "vi", "code", "code"), False),
    "de2-ja6-code2": ({}, ("de", "de", *("ja",) * 6, "vi", "code", "code"), False),
    "ja8": ({}, ("de", *("ja",) * 8, "vi", "stem", "code"), False),
    "de2-ja8": ({}, ("de", "de", *("ja",) * 8, "vi", "stem", "code"), False),
}


def corpus_child(folder: str, vocab: int, kind: str, save: str, cap_mb: float | None) -> None:
    """Run in a subprocess: train one tokenizer kind on the train split, save it, print time and peak RSS.

    ``kind`` is plain, superbpe (the shipped recipe) or superbpe:VARIANT (see VARIANTS)."""
    from tokenizer.recipe import (
        build_base_tokenizer,
        build_plain_bpe,
        build_superbpe_tokenizer,
        superbpe_plan,
        training_texts,
    )
    from tokenizer.superbpe import train_superbpe

    domains = corpus_streams(Path(folder), "train", cap_mb)
    variant = kind.partition(":")[2]
    overrides, realloc, cjk = VARIANTS[variant] if variant else ({}, None, False)
    preset = preset_for(vocab, NO_INTERNAL_HOLD_OUT)
    if overrides:
        from config import get_preset

        preset = get_preset("tiny", {**_preset_overrides(vocab, NO_INTERNAL_HOLD_OUT), **overrides})
    out: dict = {}
    t0 = time.perf_counter()
    if kind.startswith("plain"):  # plain:VARIANT = the control under a CJK variant's stage-1 regex
        if cjk:
            from bench.tokenizer_variants import cjk_patched

            with cjk_patched():
                build_plain_bpe(preset, domains).save(str(Path(save) / f"plain-{variant}.json"))
        else:
            build_plain_bpe(preset, domains).save(str(Path(save) / "plain.json"))
    else:
        base = build_base_tokenizer(preset, domains)
        out["base_seconds"] = time.perf_counter() - t0
        base.save(str(Path(save) / "base.json"))
        if cjk:
            from bench.tokenizer_variants import cjk_patched

            patch = cjk_patched()
        else:
            patch = contextlib.nullcontext()
        if realloc is None:
            with patch:
                result = build_superbpe_tokenizer(preset, base, domains)
        else:
            held = preset.tokenizer.held_out_fraction
            languages = preset.data.domains
            other = tuple(d for d in languages if d not in ("en", "ko"))
            groups = {"en": ("en",), "ko": ("ko",), "other": other}
            with patch:
                result = train_superbpe(
                    dataclasses.replace(superbpe_plan(preset), reallocation_split="pooled"),
                    base,
                    all_texts=training_texts(domains, languages, held),
                    reallocation_texts=training_texts(domains, realloc, held),
                    superword_texts={g: training_texts(domains, names, held) for g, names in groups.items()},
                )
        name = "superbpe" + (f"-{variant}" if variant else "")
        result.tokenizer.save(str(Path(save) / f"{name}.json"))
        out |= {
            "superword_merges_by_group": result.superword_merges_by_group,
            "superword_budget": superbpe_plan(preset).superword_budget(),
            "fill_merges": result.fill_merges,
            "reallocated_merges_by_domain": result.reallocated_merges_by_domain,
            "kept_base_merges": result.kept_base_merges,
            "stage1_merges": len(result.stage1_merges),
        }
    out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


EVAL_GROUPS = {
    "en": ("en",),
    "ko": ("ko",),
    "ja": ("ja",),
    "de": ("de",),
    "es": ("es",),
    "vi": ("vi",),
    "multilingual": ("es", "de", "ja", "vi"),
    "stem": ("stem",),
    "code": ("code",),
}


def corpus_comparison(
    folder: Path, vocabs: list[int], cap_mb: float | None, variants: Sequence[str] = ()
) -> tuple[str, dict]:
    from tokenizers import Tokenizer

    from tokenizer.recipe import superword_vocab_share
    from tokenizer.superbpe import bytes_per_token, superword_usage

    held = corpus_streams(folder, "heldout")
    held_texts = {d: [t for _, t in held[d]()] for d in CORPUS_DOMAINS}
    results: dict = {"stats": json.loads((folder / "stats.json").read_text()), "train_cap_mb": cap_mb, "vocabs": {}}
    sections = []
    for vocab in vocabs:
        with tempfile.TemporaryDirectory(prefix="kexaone-bench-tok-") as save:
            runs = {}
            for kind in ("plain", "superbpe", *(f"superbpe:{v}" for v in variants)):
                cmd = [sys.executable, "-m", "bench.bench_tokenizer", "--corpus-child", str(folder)]
                cmd += ["--vocab", str(vocab), "--kind", kind, "--save", save]
                cmd += ["--train-cap-mb", str(cap_mb)] if cap_mb is not None else []
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"vocab {vocab} {kind}: {runs[kind]}", file=sys.stderr)
            toks = {n: Tokenizer.from_file(str(Path(save) / f"{n}.json")) for n in ("base", "plain", "superbpe")}
            variant_toks = {v: Tokenizer.from_file(str(Path(save) / f"superbpe-{v}.json")) for v in variants}
        rows, per = [], {}
        for group, names in EVAL_GROUPS.items():
            texts = [t for n in names for t in held_texts[n]]
            bpt = {n: bytes_per_token(tok, texts) for n, tok in toks.items()}
            usage = superword_usage(toks["superbpe"], texts)
            per[group] = {
                "bytes_per_token": bpt,
                "superword_token_share": usage,
                "bytes": sum(len(t.encode()) for t in texts),
            }
            rows.append(
                [
                    group,
                    f"{per[group]['bytes'] / 1e6:.2f}",
                    f"{bpt['base']:.3f}",
                    f"{bpt['plain']:.3f}",
                    f"{bpt['superbpe']:.3f}",
                    f"{100 * (bpt['superbpe'] / bpt['plain'] - 1):+.1f} %",
                    f"{100 * (bpt['superbpe'] / bpt['base'] - 1):+.1f} %",
                    f"{100 * (bpt['plain'] / bpt['base'] - 1):+.1f} %",
                    f"{100 * usage:.1f} %",
                ]
            )
        sup = runs["superbpe"]
        by_group = sup["superword_merges_by_group"]
        share = superword_vocab_share(toks["superbpe"])
        budget = sup["superword_budget"]
        summary = (
            f"vocab {vocab} (base {vocab * 2 // 3}): superword share of the vocabulary {100 * share:.1f} % "
            f"(policy 20 %); superword merges en/ko/other {by_group.get('en')}/{by_group.get('ko')}/"
            f"{by_group.get('other')} of budget {budget.get('en')}/{budget.get('ko')}/{budget.get('other')} "
            f"(policy 2:3:1); fill merges {sup['fill_merges']}; kept base merges {sup['kept_base_merges']}; "
            f"reallocated merges by domain {sup.get('reallocated_merges_by_domain') or 'pooled'}.\n"
            f"Training: base {sup['base_seconds']:.0f} s + SuperBPE {sup['seconds'] - sup['base_seconds']:.0f} s, "
            f"peak RSS {sup['peak_mib']:.0f} MiB (one process for both); plain BPE {runs['plain']['seconds']:.0f} s, "
            f"peak RSS {runs['plain']['peak_mib']:.0f} MiB."
        )
        table = markdown_table(
            [
                "held-out",
                "MB",
                "B/tok base",
                "B/tok plain",
                "B/tok SuperBPE",
                "SuperBPE vs plain",
                "SuperBPE vs base",
                "plain vs base",
                "superword tokens",
            ],
            rows,
        )
        sections.append(f"### vocab {vocab}\n\n{summary}\n\n{table}\n")
        results["vocabs"][vocab] = {"runs": runs, "per_domain": per, "superword_vocab_share": share}
        if variants:
            sections.append(variant_table(vocab, variants, variant_toks, runs, per, held_texts, results))
    return "\n".join(sections), results


def variant_table(vocab, variants, variant_toks, runs, per, held_texts, results) -> str:
    from tokenizer.recipe import superword_vocab_share
    from tokenizer.superbpe import bytes_per_token

    rows = []
    out = results["vocabs"][vocab].setdefault("variants", {v: {"per_domain": {}} for v in variants})
    for group, names in EVAL_GROUPS.items():
        texts = [t for n in names for t in held_texts[n]]
        plain = per[group]["bytes_per_token"]["plain"]
        row = [group, f"{plain:.3f}", f"{100 * (per[group]['bytes_per_token']['superbpe'] / plain - 1):+.1f} %"]
        for v in variants:
            bpt = bytes_per_token(variant_toks[v], texts)
            out[v]["per_domain"][group] = bpt
            row.append(f"{100 * (bpt / plain - 1):+.1f} %")
        rows.append(row)
    notes = []
    for v in variants:
        run = runs[f"superbpe:{v}"]
        if VARIANTS[v][2]:
            import unicodedata

            from bench import tokenizer_variants as tv

            share = tv.superword_vocab_share(variant_toks[v])
            usage = {g: tv.superword_usage(variant_toks[v], held_texts[g]) for g in ("ja", "ko", "en")}
            ja = held_texts["ja"]
            tok = variant_toks[v]
            bad = sum(
                tok.decode(e.ids, skip_special_tokens=False) != unicodedata.normalize("NFC", t)
                for t, e in zip(ja, tok.encode_batch(ja, add_special_tokens=False))
            )
            out[v]["roundtrip_failures_ja"] = bad
            out[v]["superword_token_share"] = usage
            extra = (
                f", superword tokens emitted ja/ko/en {100 * usage['ja']:.1f}/{100 * usage['ko']:.1f}/"
                f"{100 * usage['en']:.1f} %, ja round trip failures {bad}/{len(ja)} docs"
            )
        else:
            share, extra = superword_vocab_share(variant_toks[v]), ""
        out[v]["superword_vocab_share"] = share
        out[v]["run"] = run
        g = run["superword_merges_by_group"]
        notes.append(
            f"`{v}` {VARIANTS[v]}: superword share {100 * share:.1f} %, superword merges en/ko/other "
            f"{g.get('en')}/{g.get('ko')}/{g.get('other')}, fill {run['fill_merges']}, "
            f"{run['seconds']:.0f} s, peak RSS {run['peak_mib']:.0f} MiB{extra}"
        )
    table = markdown_table(["held-out", "B/tok plain", "shipped vs plain", *[f"{v} vs plain" for v in variants]], rows)
    return (
        f"Recipe variants at {vocab} (prototypes in bench/, gains over plain BPE):\n\n"
        + "\n".join(f"- {n}" for n in notes)
        + f"\n\n{table}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=15.0, help="MB of prose and of code for the comparison")
    parser.add_argument("--vocabs", default="1536,8192,32768")
    parser.add_argument("--memory-sizes", default="4,12,36", help="MB of prose and of code per scaling run")
    parser.add_argument("--memory-child")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--corpus", type=Path, help="a corpus built by bench.multilingual_corpus")
    parser.add_argument("--corpus-child")
    parser.add_argument("--kind", help="plain, superbpe or superbpe:VARIANT")
    parser.add_argument("--save")
    parser.add_argument("--variants", default="", help="recipe variants to prototype: " + ",".join(VARIANTS))
    parser.add_argument("--train-cap-mb", type=float, help="train on at most this many MB per domain")
    parser.add_argument("--out", type=Path, help="also write the corpus tables (markdown) and a .json beside")
    args = parser.parse_args()
    if args.corpus_child:
        corpus_child(args.corpus_child, args.vocab, args.kind, args.save, args.train_cap_mb)
        return
    if args.corpus:
        variants = [v for v in args.variants.split(",") if v]
        text, results = corpus_comparison(
            args.corpus, [int(v) for v in args.vocabs.split(",")], args.train_cap_mb, variants
        )
        print(text)
        if args.out:
            args.out.write_text(text)
            args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
        return
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
