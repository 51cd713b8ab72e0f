"""Pipeline parallelism on CPU/gloo: the tiny model trained with PP=2 (two processes, Megatron's 1F1B schedule)
follows the PP=1 curve, and its checkpoint resumes exactly and loads into PP=1.

The same file is the worker: ``torchrun --nproc-per-node N tests/integration/test_pipeline_parallel.py --pp N``
trains the tiny preset's model on fixed synthetic token batches (the stage's batch and sequence shape), saves
a checkpoint after ``SAVE_AFTER`` steps, trains on, then rebuilds the model from that checkpoint and redoes the
remaining steps; rank 0 writes every step's metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
SAVE_AFTER = 2
MICRO_BATCH = 2  # PP runs: 4 micro-batches of 2 sequences through the 2 stages


def _batch(step: int, batch: int, seq: int, vocab: int):
    import torch

    from model.training import batch_from_tokens

    g = torch.Generator().manual_seed(1000 + step)
    return batch_from_tokens(torch.randint(0, vocab, (batch, seq + 1), generator=g))


def _row(result) -> dict:
    from dataclasses import asdict

    return asdict(result)


def worker(pp: int, out: Path, ckpt: Path, load_from: Path | None, init: Path) -> None:
    import torch

    from config import get_preset
    from model import checkpoint, parallel, training
    from model.architecture import build_model

    preset = get_preset("tiny")
    parallel.initialize(pipeline_parallel=pp, seed=preset.pretrain.seed)
    rank = torch.distributed.get_rank()
    vocab, seq, batch = preset.tokenizer.vocab_size, preset.pretrain.seq_length, preset.pretrain.global_batch_size

    def fresh():
        model = build_model(preset)
        optimizer = training.build_optimizer(model, preset)
        return model, optimizer, training.wsd_scheduler(optimizer, preset)

    def step(model, optimizer, scheduler, i):
        return _row(
            training.train_step(
                model,
                optimizer,
                scheduler,
                _batch(i, batch, seq, vocab),
                grad_clip=preset.pretrain.grad_clip,
                micro_batch_size=MICRO_BATCH,
            )
        )

    model, optimizer, scheduler = fresh()
    # one set of initial weights for both layouts: a stage initialises only its own layers, so PP=2 draws
    # other random numbers than PP=1 (Megatron's init is not layout-invariant either); PP=1 writes them,
    # PP=2 loads them re-sharded, as a stage starts from the previous stage's checkpoint
    if (init / "metadata.json").exists():
        checkpoint.load_model(init, model)
    else:
        checkpoint.save_model(init, model)
    report: dict = {"pp": pp, "stages": {}, "steps": [], "resumed": [], "loaded": []}
    layers = [m.layer_number for m in model.decoder.layers]
    report["stages"][rank] = {
        "layers": layers,
        "pre_process": model.pre_process,
        "post_process": model.post_process,
        "mtp": bool(getattr(model, "mtp_process", False)),
    }
    for i in range(STEPS):
        report["steps"].append(step(model, optimizer, scheduler, i))
        if i + 1 == SAVE_AFTER:
            position = {"stage": "pp-test", "stage_step": SAVE_AFTER}
            checkpoint.save(ckpt, model, optimizer, scheduler, data_position=position)
    model, optimizer, scheduler = fresh()
    checkpoint.load(ckpt, model, optimizer, scheduler, restore_rng=True)
    for i in range(SAVE_AFTER, STEPS):
        report["resumed"].append(step(model, optimizer, scheduler, i))
    if load_from is not None:  # another layout's checkpoint (no RNG: it was written by another world size)
        model, optimizer, scheduler = fresh()
        checkpoint.load(load_from, model, optimizer, scheduler, restore_rng=False)
        for i in range(SAVE_AFTER, STEPS):
            report["loaded"].append(step(model, optimizer, scheduler, i))
    every = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, report["stages"])
    if rank == 0:
        report["stages"] = {k: v for part in every for k, v in part.items()}
        out.write_text(json.dumps(report, indent=1))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _run(tmp_path: Path, pp: int, load_from: Path | None = None) -> dict:
    out, ckpt = tmp_path / f"pp{pp}.json", tmp_path / f"ckpt_pp{pp}"
    init = tmp_path / "init"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={pp}",
        str(Path(__file__).resolve()),
        "--pp",
        str(pp),
        "--out",
        str(out),
        "--ckpt",
        str(ckpt),
        "--init",
        str(init),
    ]
    if load_from is not None:
        command += ["--load-from", str(load_from)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.timeout(240)
def test_two_stage_pipeline_matches_one_stage_and_resumes(tmp_path):
    one = _run(tmp_path, 1)
    two = _run(tmp_path, 2, load_from=tmp_path / "ckpt_pp1")

    # the layer split keeps global layer numbers (window/global and dense/MoE patterns); MTP on the last stage
    assert two["stages"]["0"] == {"layers": [1, 2], "pre_process": True, "post_process": False, "mtp": False}
    assert two["stages"]["1"] == {"layers": [3, 4], "pre_process": False, "post_process": True, "mtp": True}
    for a, b in zip(one["steps"], two["steps"], strict=True):
        for key in ("lm_loss", "mtp_loss", "loss"):
            assert abs(a[key] - b[key]) <= 1e-5, (key, a, b)
        assert abs(a["seq_aux_loss"] - b["seq_aux_loss"]) <= 1e-7, (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-5 * max(1.0, a["grad_norm"]), (a, b)
        assert abs(a["expert_load_imbalance"] - b["expert_load_imbalance"]) <= 1e-6, (a, b)
        assert a["lr"] == b["lr"]
    # PP=2 resumed from its own checkpoint = PP=2 uninterrupted (RNG included: bit-identical)
    for a, b in zip(two["resumed"], two["steps"][SAVE_AFTER:], strict=True):
        assert a == b, (a, b)
    # PP=2 from the PP=1 checkpoint (re-sharded into two stages) continues the PP=1 curve
    for a, b in zip(two["loaded"], one["steps"][SAVE_AFTER:], strict=True):
        assert abs(a["lm_loss"] - b["lm_loss"]) <= 1e-5 and abs(a["grad_norm"] - b["grad_norm"]) <= 1e-5, (a, b)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pp", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--load-from", type=Path, default=None)
    ap.add_argument("--init", type=Path, required=True, help="initial weights: written if absent, else loaded")
    a = ap.parse_args()
    worker(a.pp, a.out, a.ckpt, a.load_from, a.init)
