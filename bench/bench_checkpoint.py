"""Does writing a checkpoint slow the training steps that follow it? (CPU, tiny preset)

    .venv/bin/python -m bench.bench_checkpoint            # writes the "checkpoint" section of docs/benchmarks.md

One process, one tiny model with Muon + AdamW, 2 x 512-token steps of random tokens, timed in blocks:

1. before any checkpoint;
2. after ``dist_checkpointing.save`` of the model alone, then of the optimizer alone (what
   ``model.checkpoint.save`` does: two calls);
3. after one joint ``dist_checkpointing.save`` of model + optimizer (what it did before).

The joint call is kept last because what it does to the process lasts (the cause was not found: not
threads, CPU affinity, denormals, malloc, GC or torch.compile recompiles).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bench.report import markdown_table, write_section

BLOCK_STEPS = 15
WARMUP_STEPS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from megatron.core import dist_checkpointing

    from config import get_preset
    from model import checkpoint, parallel, training
    from model.architecture import build_model

    parallel.initialize(seed=0)
    preset = get_preset("tiny")
    model = build_model(preset, vocab_size=preset.tokenizer.vocab_size)
    optimizer = training.build_optimizer(model, preset)
    scheduler = training.wsd_scheduler(optimizer, preset)
    generator = torch.Generator().manual_seed(0)

    def block() -> float:
        seconds = []
        for _ in range(BLOCK_STEPS):
            tokens = torch.randint(0, preset.tokenizer.vocab_size, (2, 513), generator=generator)
            batch = training.batch_from_tokens(tokens)
            start = time.perf_counter()
            training.train_step(model, optimizer, scheduler, batch, grad_clip=preset.pretrain.grad_clip)
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds[WARMUP_STEPS:])

    rows = [("no checkpoint yet", block())]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = checkpoint._sharded_state(model, optimizer, with_rng=False)
        (root / "model").mkdir()
        dist_checkpointing.save({"model": state["model"]}, str(root / "model"))
        rows.append(("after a model-only save", block()))
        state = checkpoint._sharded_state(model, optimizer, with_rng=False)
        (root / "optimizer").mkdir()
        dist_checkpointing.save({"optimizer": state["optimizer"]}, str(root / "optimizer"))
        rows.append(("after an optimizer-only save (= model.checkpoint.save)", block()))
        state = checkpoint._sharded_state(model, optimizer, with_rng=False)
        (root / "joint").mkdir()
        dist_checkpointing.save(state, str(root / "joint"))
        rows.append(("after one joint model + optimizer save", block()))
    base = rows[0][1]
    table = markdown_table(
        ["when", "median s/step", "vs before any checkpoint"],
        [(label, round(s, 4), f"{s / base:.2f}x") for label, s in rows],
    )
    body = (
        f"Tiny model, Muon + AdamW, 2 x 512 tokens per step, median of {BLOCK_STEPS - WARMUP_STEPS} steps per "
        f"block, all blocks in one process in this order.\n\n{table}\n"
    )
    if args.no_write:
        print(body)
    else:
        write_section(
            "checkpoint", "Training steps after a checkpoint save (CPU)", "python -m bench.bench_checkpoint", body
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
