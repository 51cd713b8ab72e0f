"""Can the tiny K-EXAONE model be trained to pass the NIAH gate, and with what recipe?
``python -m bench.tune_niah --name base ...``  (an experiment, not a test)

1. builds the tiny model (``model.architecture.build_model``) with the trained SuperBPE tokenizer;
2. simulates the pre-trained start point: ``--pretrain-steps`` steps (default the tiny preset's 192) at
   seq 128, gbs 8 on corpus text (cached under ``--cache`` so variants share it);
3. context stage 1 and stage 2: each its own AdamW + WSD schedule (``model.training``), batches mixing
   ``evaluation.niah.retrieval_training_documents`` (share ``--share``) with corpus windows (rehearsal);
   ``--answer-weight`` > 1 up-weights the answered values in the loss mask (1 = plain LM loss);
4. NIAH grids (``preset.eval`` sizes) after each stage with greedy ``model.inference.generate`` (KV cache):
   stage-1 grid from pretrain length to stage-1 length, stage-2 grid from stage-1 length to stage-2 length.

Prints markdown tables and writes ``<out>/<name>.json`` (timings, per-cell accuracy, gate).
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / ".kexaone" / "artifacts"
CORPUS_PARTS = ("en", "ko", "es", "de", "ja", "vi", "code", "stem")


def _latest(pattern: str) -> Path:
    paths = sorted(glob.glob(str(ARTIFACTS / pattern)), key=lambda p: Path(p).stat().st_mtime)
    if not paths:
        sys.exit(f"nothing matches {ARTIFACTS / pattern}; materialize the tiny DAG first (make demo)")
    return Path(paths[-1])


def load_inputs():
    from tokenizers import Tokenizer

    from evaluation import niah

    tokenizer = Tokenizer.from_file(str(_latest("superbpe_tokenizer/*/tokenizer.json")))
    texts = {part: niah.read_filler_texts(_latest(f"deduplicated_corpus__{part}/*")) for part in CORPUS_PARTS}
    return tokenizer, texts


class Rehearsal:
    """Random windows of the concatenated corpus (all partitions), for pre-training and rehearsal."""

    def __init__(self, tokenizer, texts, seed: int):
        ids: list[int] = []
        docs = [t for part in CORPUS_PARTS for t in texts[part]]
        random.Random(seed).shuffle(docs)
        for d in docs:
            ids.extend(tokenizer.encode(d + "\n\n").ids)
        self.ids = torch.tensor(ids, dtype=torch.long)
        self.rng = random.Random(seed)

    def window(self, n: int) -> list[int]:
        if n > len(self.ids):  # cycle a short corpus
            reps = n // len(self.ids) + 1
            ids = self.ids.repeat(reps)
        else:
            ids = self.ids
        start = self.rng.randrange(len(ids) - n + 1)
        return ids[start : start + n].tolist()


def stage_preset(preset, *, steps: int, seq: int, gbs: int, lr: float, warmup: float, decay: float):
    return preset.with_overrides(
        {
            "pretrain.total_tokens": steps * seq * gbs,
            "pretrain.seq_length": seq,
            "pretrain.global_batch_size": gbs,
            "pretrain.max_lr": lr,
            "pretrain.min_lr": lr / 10,
            "pretrain.warmup_fraction": warmup,
            "pretrain.decay_fraction": decay,
        }
    )


def run_stage(
    model,
    preset,
    *,
    name,
    steps,
    seq,
    gbs,
    lr,
    share,
    answer_weight,
    tokens_per_needle,
    fillers,
    quote_share=0.0,
    quote_weight=1.0,
    encode,
    rehearsal,
    seed,
    warmup=0.05,
    decay=0.2,
    log_every=10,
    probe_every=0,
    probe_fn=None,
):
    from evaluation import niah
    from model import training

    sp = stage_preset(preset, steps=steps, seq=seq, gbs=gbs, lr=lr, warmup=warmup, decay=decay)
    optimizer = training.adamw(model, sp)
    scheduler = training.wsd_scheduler(optimizer, sp)
    rng = random.Random(f"{name}:{seed}")
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = []
    for step in range(steps):
        rows, masks = [], []
        n_retrieval = sum(rng.random() < share for _ in range(gbs))
        docs = (
            niah.retrieval_training_documents(
                rng, fillers, n_retrieval, seq + 1, encode, tokens_per_needle=tokens_per_needle, quote_share=quote_share
            )
            if n_retrieval
            else []
        )
        for doc in docs:
            rows.append(doc.ids)
            mask = torch.ones(seq)
            for s, e in doc.answer_spans:  # label index = token index - 1
                mask[s - 1 : e - 1] = answer_weight
            for s, e in doc.copy_spans:
                mask[s - 1 : e - 1] = quote_weight
            masks.append(mask)
        while len(rows) < gbs:
            rows.append(rehearsal.window(seq + 1))
            masks.append(torch.ones(seq))
        batch = training.batch_from_tokens(torch.tensor(rows, dtype=torch.long))
        batch["loss_mask"] = torch.stack(masks)
        result = training.train_step(model, optimizer, scheduler, batch, grad_clip=sp.pretrain.grad_clip)
        losses.append(result.lm_loss)
        if probe_fn is not None and probe_every and (step + 1) % probe_every == 0:
            probe_fn()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(
                f"  [{name}] step {step + 1}/{steps} loss {result.lm_loss:.3f} lr {result.lr:.2e} "
                f"{time.perf_counter() - start:.0f}s wall {time.process_time() - cpu_start:.0f}s cpu",
                flush=True,
            )
    return time.perf_counter() - start, losses, (time.process_time() - cpu_start) / max(1, torch.get_num_threads())


def run_grid(model, tokenizer, fillers, *, lengths, preset, seed, label):
    from evaluation import niah
    from model.inference import generate

    e = preset.eval
    vocab = tokenizer.get_vocab_size()
    cases = niah.make_cases(
        lambda s: tokenizer.encode(s).ids, fillers, lengths, niah.grid_depths(e.niah_num_depths), e.niah_trials, seed
    )

    def generate_fn(ids):
        return tokenizer.decode(generate(model, ids, niah.MAX_NEW_TOKENS, vocab_size=vocab))

    start, cpu_start = time.perf_counter(), time.process_time()
    results = niah.evaluate(cases, generate_fn)
    seconds = time.perf_counter() - start
    cpu = (time.process_time() - cpu_start) / max(1, torch.get_num_threads())
    passed, failing = niah.gate(results, e.niah_threshold)
    print(
        f"\n### {label}: NIAH {lengths[0]}..{lengths[-1]} ({seconds:.0f}s wall, {cpu:.0f}s cpu/thread) -> "
        f"{'PASS' if passed else 'FAIL'}, overall {results.accuracy:.1%}\n"
    )
    print(niah.markdown_table(results))
    bad = [r for r in results.cases if not r.correct][:6]
    for r in bad:
        print(f"  miss: len {r.length} depth {r.depth:.2f} {r.language} {r.key}={r.value} got {r.generated!r}")
    return {
        "label": label,
        "lengths": lengths,
        "seconds": seconds,
        "cpu_per_thread_s": cpu,
        "passed": passed,
        "accuracy": results.accuracy,
        "cells": results.rows(),
        "failing": [c.describe() for c in failing],
        "table": niah.markdown_table(results),
    }


@torch.no_grad()
def probe(model, tokenizer, fillers, *, lengths, preset, seed, label, n=40):
    """Teacher-forced accuracy of each answer token (sep, digit 1, digit 2, ...) on eval cases."""
    from megatron.core.inference.utils import InferenceMode

    from evaluation import niah

    encode = lambda s: tokenizer.encode(s).ids  # noqa: E731
    cases = niah.make_cases(encode, fillers, lengths, niah.grid_depths(preset.eval.niah_num_depths), 1, seed + 1)
    hits: dict[int, list[int]] = {}
    model.eval()
    with InferenceMode.active():
        for case in cases[:n]:
            answer = encode(niah.TEMPLATES[case.language].answer(case.value))
            ids = list(case.prompt_ids) + answer
            x = torch.tensor([ids])
            logits = model(x, torch.arange(len(ids)).unsqueeze(0), None, runtime_gather_output=True)
            pred = logits[0, len(case.prompt_ids) - 1 : len(ids) - 1].argmax(-1).tolist()
            for i, (p_, t_) in enumerate(zip(pred, answer)):
                hits.setdefault(i, []).append(int(p_ == t_))
    model.train()
    accs = " ".join(f"{i}:{sum(h) / len(h):.2f}" for i, h in sorted(hits.items()))
    print(f"  probe {label}: teacher-forced accuracy per answer token: {accs}", flush=True)
    return accs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pretrain-steps", type=int, default=192)
    ap.add_argument("--s0-len", type=int, default=128, help="stage-1 part A: short retrieval warm-up length")
    ap.add_argument("--s0-steps", type=int, default=0)
    ap.add_argument("--s0-gbs", type=int, default=8)
    ap.add_argument("--s0-lr", type=float, default=3e-3)
    ap.add_argument("--init", default="", help="start from these saved weights instead of pre-training")
    ap.add_argument("--save", default="", help="save the weights after stage 1 (part A and B) here")
    ap.add_argument("--save-final", default="", help="save the weights after stage 2 here")
    ap.add_argument("--eval-seeds", default="", help="extra NIAH seeds for the last grid, comma-separated")
    ap.add_argument("--s1-len", type=int, default=512)
    ap.add_argument("--s1-steps", type=int, default=150)
    ap.add_argument("--s1-gbs", type=int, default=4)
    ap.add_argument("--s1-lr", type=float, default=3e-3)
    ap.add_argument("--s2-len", type=int, default=4096)
    ap.add_argument("--s2-steps", type=int, default=10)
    ap.add_argument("--s2-gbs", type=int, default=1)
    ap.add_argument("--s2-lr", type=float, default=1e-3)
    ap.add_argument("--share", type=float, default=1.0, help="retrieval documents' share of each batch")
    ap.add_argument("--answer-weight", type=float, default=1.0)
    ap.add_argument("--tokens-per-needle", type=int, default=128)
    ap.add_argument(
        "--eval",
        default="s1,s2",
        help="which grids: s1 (after stage 1: s1 grid + s2 grid "
        "for length generalisation), s2 (after stage 2), comma-separated",
    )
    ap.add_argument("--probe-every", type=int, default=0)
    ap.add_argument("--quote-share", type=float, default=0.0)
    ap.add_argument("--quote-weight", type=float, default=1.0)
    ap.add_argument("--lengths1", default="", help="stage-1 grid lengths override, comma-separated")
    ap.add_argument("--cache", default="/tmp/niah_cache")
    ap.add_argument("--out", default="/tmp/niah_runs")
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from config import get_preset
    from evaluation import niah
    from model import training  # noqa: F401
    from model.architecture import build_model

    preset = get_preset("tiny")
    tokenizer, texts = load_inputs()
    encode = lambda s: tokenizer.encode(s).ids  # noqa: E731
    fillers = niah.FillerPool(encode, {lang: texts[lang] for lang in niah.LANGUAGES})
    rehearsal = Rehearsal(tokenizer, texts, args.seed)
    model = build_model(preset, vocab_size=tokenizer.get_vocab_size())
    report: dict = {"args": vars(args), "stages": {}, "grids": []}

    p = preset.pretrain
    cache = Path(args.cache) / f"pretrain_{args.pretrain_steps}_{args.seed}.pt"
    if args.init:
        model.load_state_dict(torch.load(args.init), strict=False)
        print(f"weights from {args.init}")
    elif args.pretrain_steps and cache.exists():
        model.load_state_dict(torch.load(cache), strict=False)
        print(f"pretrained weights from {cache}")
    elif args.pretrain_steps:
        seconds, losses, cpu = run_stage(
            model,
            preset,
            name="pretrain",
            steps=args.pretrain_steps,
            seq=p.seq_length,
            gbs=p.global_batch_size,
            lr=p.max_lr,
            share=0.0,
            answer_weight=1.0,
            tokens_per_needle=128,
            fillers=fillers,
            encode=encode,
            rehearsal=rehearsal,
            seed=args.seed,
            warmup=p.warmup_fraction,
            decay=p.decay_fraction,
            log_every=48,
        )
        report["stages"]["pretrain"] = {"seconds": seconds, "cpu_per_thread_s": cpu, "final_loss": losses[-1]}
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)

    evals = set(args.eval.split(","))
    grid = dict(preset=preset, seed=args.seed)
    s1_lo = p.seq_length if args.s1_len > p.seq_length else args.s1_len // 2
    s1_lengths = niah.stage_lengths(args.s1_len, preset.eval.niah_num_lengths, s1_lo)
    s2_lengths = niah.stage_lengths(args.s2_len, preset.eval.niah_num_lengths, args.s1_len)
    common = dict(
        share=args.share,
        answer_weight=args.answer_weight,
        quote_share=args.quote_share,
        quote_weight=args.quote_weight,
        tokens_per_needle=args.tokens_per_needle,
        fillers=fillers,
        encode=encode,
        rehearsal=rehearsal,
        seed=args.seed,
    )
    if args.s0_steps:
        seconds, losses, cpu = run_stage(
            model,
            preset,
            name="stage1a",
            steps=args.s0_steps,
            seq=args.s0_len,
            gbs=args.s0_gbs,
            lr=args.s0_lr,
            **common,
        )
        report["stages"]["stage1a"] = {
            "seconds": seconds,
            "cpu_per_thread_s": cpu,
            "final_loss": sum(losses[-5:]) / len(losses[-5:]),
        }
        print(f"stage1a: {seconds:.0f}s")
        probe(
            model, tokenizer, fillers, lengths=niah.stage_lengths(args.s0_len, 5, args.s0_len // 2), label="s0", **grid
        )
    if args.s1_steps:
        seconds, losses, cpu = run_stage(
            model,
            preset,
            name="stage1",
            steps=args.s1_steps,
            seq=args.s1_len,
            gbs=args.s1_gbs,
            lr=args.s1_lr,
            probe_every=args.probe_every,
            probe_fn=lambda: probe(model, tokenizer, fillers, lengths=s1_lengths, label="s1", n=25, **grid),
            **common,
        )
        report["stages"]["stage1"] = {
            "seconds": seconds,
            "cpu_per_thread_s": cpu,
            "final_loss": sum(losses[-5:]) / len(losses[-5:]),
        }
        print(f"stage1: {seconds:.0f}s")
    if args.save:
        torch.save(model.state_dict(), args.save)
    if "p1" in evals:
        report["probe_s1"] = probe(model, tokenizer, fillers, lengths=s1_lengths, label="s1", **grid)
    if "s1" in evals:
        report["grids"].append(
            run_grid(model, tokenizer, fillers, lengths=s1_lengths, label="after stage1, s1 grid", **grid)
        )
    if "s1x" in evals:
        report["grids"].append(
            run_grid(model, tokenizer, fillers, lengths=s2_lengths, label="after stage1, s2 grid", **grid)
        )
    if args.s2_steps:
        seconds, losses, cpu = run_stage(
            model,
            preset,
            name="stage2",
            steps=args.s2_steps,
            seq=args.s2_len,
            gbs=args.s2_gbs,
            lr=args.s2_lr,
            log_every=2,
            **common,
        )
        report["stages"]["stage2"] = {
            "seconds": seconds,
            "cpu_per_thread_s": cpu,
            "final_loss": sum(losses[-3:]) / len(losses[-3:]),
        }
        print(f"stage2: {seconds:.0f}s")
    if args.save_final:
        torch.save(model.state_dict(), args.save_final)
    if "s2" in evals:
        report["grids"].append(
            run_grid(model, tokenizer, fillers, lengths=s2_lengths, label="after stage2, s2 grid", **grid)
        )
        for extra in filter(None, args.eval_seeds.split(",")):
            report["grids"].append(
                run_grid(
                    model,
                    tokenizer,
                    fillers,
                    lengths=s2_lengths,
                    preset=preset,
                    seed=int(extra),
                    label=f"after stage2, s2 grid, seed {extra}",
                )
            )
    if "s2s1" in evals:
        report["grids"].append(
            run_grid(model, tokenizer, fillers, lengths=s1_lengths, label="after stage2, s1 grid", **grid)
        )
    out = Path(args.out) / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(
        "\nstages: "
        + ", ".join(
            f"{k} {v['seconds']:.0f}s wall/{v['cpu_per_thread_s']:.0f}s cpu loss {v['final_loss']:.3f}"
            for k, v in report["stages"].items()
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
