"""Which context-stage recipe passes the tiny model's NIAH gates, and with what margin?
``python -m bench.tune_niah --name base [--s1-steps N --s1-lr X ...]``  (an experiment, not a test)

One invocation = one variant of the tiny preset's context stages. The flags are preset overrides of
``context.stages.stage1`` / ``stage2`` (``--overrides`` takes any other dotted path), so a variant that
passes is a preset change and nothing else. The variant trains exactly as the DAG does:

1. a fresh home ``<out>/<name>/`` starts from the data and pre-training artifacts of a materialized tiny
   DAG (``--reuse-from``, default ``.kexaone`` of ``make demo``), so only the context stages train (an
   artifact whose inputs changed since is rebuilt, as in any materialization: ``chain.log`` says which);
2. the demo job runs there with the overrides (``bench.niah_margin``'s chain child): the
   ``context_mixture_stageN`` assets pack the stage's data and ``context_ext_stageN`` trains it with
   ``model.train`` (the Pipes trainer), then answers the gate's NIAH grid (``eval.niah_*``; ``--trials``
   draws fewer cases per cell for a quicker, noisier look);
3. each stage's ``niah.json`` is read back and scored with the gate (``eval.niah_threshold``).

A failed stage-1 gate blocks stage 2, as in the DAG. Prints markdown tables and writes ``<out>/<name>.json``
(overrides, per-stage training time and loss, per-cell accuracy, gate). For the margin of a recipe over
float-kernel configurations and fresh grid seeds, run ``bench.niah_margin --overrides ...`` on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.niah_margin import CONTEXT_STAGES, _child, _seed_home

REPO = Path(__file__).resolve().parent.parent
# flag prefix -> context stage; each stage's flags are overrides of context.stages.<stage>.*
STAGE_FLAGS = {"s1": "stage1", "s2": "stage2"}


def variant_overrides(args: argparse.Namespace) -> dict:
    """The variant as dotted preset overrides; ``--sN-steps`` becomes the stage's token budget (the trainer
    runs ceil(tokens / (batch x length)) steps, batch = pre-training tokens per step / length)."""
    from config import get_preset
    from model.stages import CONTEXT_PREFIX, stage_plan

    overrides: dict = {}
    for flag, stage in STAGE_FLAGS.items():
        knobs = {
            "seq_length": getattr(args, f"{flag}_len"),
            "lr": getattr(args, f"{flag}_lr"),
            "retrieval_min_length": getattr(args, f"{flag}_min_len"),
            "retrieval_share": args.share,
            "answer_loss_weight": args.answer_weight,
        }
        overrides |= {f"context.stages.{stage}.{k}": v for k, v in knobs.items() if v is not None}
    if args.trials is not None:
        overrides["eval.niah_trials"] = args.trials
    overrides |= json.loads(args.overrides)
    preset = get_preset("tiny", overrides)
    for flag, stage in STAGE_FLAGS.items():
        steps = getattr(args, f"{flag}_steps")
        if steps is None:
            continue
        plan = stage_plan(preset, CONTEXT_PREFIX + stage)
        overrides[f"context.stages.{stage}.tokens"] = steps * plan.global_batch_size * plan.seq_length
        preset = get_preset("tiny", overrides)
        assert stage_plan(preset, CONTEXT_PREFIX + stage).steps == steps
    return overrides


def score_stage(artifacts: Path, stage: str, threshold: float) -> dict | None:
    """The stage's gate from the answers its trainer wrote (None: not trained, an earlier gate blocked it)."""
    from evaluation import niah

    folders = sorted((artifacts / f"context_ext_{stage}").glob("*/niah.json"), key=lambda f: f.stat().st_mtime)
    if not folders:
        return None
    folder = folders[-1].parent
    results = niah.results_from_cases(niah.CaseResult(**r) for r in json.loads((folder / "niah.json").read_text()))
    summary = json.loads((folder / "summary.json").read_text())
    passed, failing = niah.gate(results, threshold)
    return {
        "artifact": str(folder),
        "steps": summary["steps"],
        "seq_length": summary["seq_length"],
        "train_seconds": summary["train_seconds_this_run"],
        "loss_final": summary["loss_final"],
        "passed": passed,
        "accuracy": results.accuracy,
        "cells": results.rows(),
        "failing": [c.describe() for c in failing],
        "table": niah.markdown_table(results),
        "misses": [
            f"len {r.length} depth {r.depth:.2f} {r.language} {r.key}={r.value} got {r.generated!r}"
            for r in results.cases
            if not r.correct
        ][:6],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.tune_niah", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--name", default="run", help="the variant's name: <out>/<name>.json and its home <out>/<name>/")
    for flag, stage in STAGE_FLAGS.items():
        ap.add_argument(f"--{flag}-len", type=int, default=None, help=f"context.stages.{stage}.seq_length")
        ap.add_argument(f"--{flag}-steps", type=int, default=None, help=f"{stage} optimizer steps (sets its tokens)")
        ap.add_argument(f"--{flag}-lr", type=float, default=None, help=f"context.stages.{stage}.lr (peak)")
        ap.add_argument(
            f"--{flag}-min-len", type=int, default=None, help=f"context.stages.{stage}.retrieval_min_length"
        )
    ap.add_argument("--share", type=float, default=None, help="retrieval_share of both stages' long documents")
    ap.add_argument("--answer-weight", type=int, default=None, help="answer_loss_weight of both stages")
    ap.add_argument("--trials", type=int, default=None, help="eval.niah_trials: NIAH cases per grid cell")
    ap.add_argument("--overrides", default="{}", help="JSON object of further dotted preset overrides")
    ap.add_argument(
        "--reuse-from",
        type=Path,
        default=REPO / ".kexaone",
        help="a KEXAONE_HOME with the tiny DAG materialized: its data and pre-training artifacts are reused",
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/niah_runs"))
    args = ap.parse_args(argv)

    from config import get_preset

    overrides = variant_overrides(args)
    preset = get_preset("tiny", overrides)
    if not any((args.reuse_from / "artifacts").glob("pretrain_stage3/*/checkpoint")):
        sys.exit(f"no pretrain_stage3 checkpoint under {args.reuse_from / 'artifacts'}; materialize the tiny DAG first")
    home = args.out / args.name
    if home.exists():
        shutil.rmtree(home)
    (home / "artifacts").mkdir(parents=True)
    (home / "dagster_home").mkdir()
    _seed_home(home, args.reuse_from, with_pretraining=True)
    env = {k: v for k, v in os.environ.items() if k not in ("KEXAONE_PRESET", "DAGSTER_HOME")}
    env.update(KEXAONE_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))
    print(f"[{args.name}] overrides {json.dumps(overrides)}; chain log {home / 'chain.log'}", flush=True)

    started = time.monotonic()
    chain = _child(["--run-chain", "--overrides", json.dumps(overrides)], env, home / "chain.log")
    seconds = time.monotonic() - started
    stages = {s: score_stage(home / "artifacts", s, preset.eval.niah_threshold) for s in CONTEXT_STAGES}
    if stages["stage1"] is None:
        raise SystemExit(f"[{args.name}] context_ext_stage1 did not train; see {home / 'chain.log'}")
    for stage, r in stages.items():
        if r is None:
            print(f"\n### {stage}: not trained (blocked by the stage-1 gate)")
            continue
        print(
            f"\n### {stage}: {r['steps']} steps at {r['seq_length']} in {r['train_seconds']:.0f}s, final loss "
            f"{r['loss_final']:.3f}; NIAH {'PASS' if r['passed'] else 'FAIL'}, overall {r['accuracy']:.1%}\n"
        )
        print(r["table"])
        for miss in r["misses"]:
            print(f"  miss: {miss}")
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "overrides": overrides, "chain": chain}
    report |= {"chain_seconds": seconds, "stages": stages}
    out = args.out / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nchain {seconds:.0f}s, gates {chain['gates']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
