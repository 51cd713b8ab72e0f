"""Context parallelism: the load-balanced sequence split and its inverse (pure tensors, CPU), the trainer's
one-line refusal where TransformerEngine attention is missing, and the pipeline-parallel layout checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from config import get_preset
from model import data
from model.parallel import (
    context_parallel_chunks,
    gather_from_context_parallel,
    split_for_context_parallel,
)
from model.stages import TrainingSetupError, stage_plan
from model.train import validate_inputs

REPO = Path(__file__).resolve().parents[2]
TINY = get_preset("tiny")


def test_chunk_pairing_is_the_load_balanced_one():
    # 2*CP chunks; rank r holds chunk r and its mirror 2*CP-1-r: each rank one early and one late chunk
    assert [context_parallel_chunks(2, r) for r in range(2)] == [(0, 3), (1, 2)]
    assert [context_parallel_chunks(4, r) for r in range(4)] == [(0, 7), (1, 6), (2, 5), (3, 4)]
    for cp in (1, 2, 3, 8):
        held = sorted(c for r in range(cp) for c in context_parallel_chunks(cp, r))
        assert held == list(range(2 * cp))  # every chunk exactly once
        # causal attention work of chunk c is ~ (c + 1/2): every rank gets the same total
        work = {sum(c + 0.5 for c in context_parallel_chunks(cp, r)) for r in range(cp)}
        assert work == {2 * cp}
    with pytest.raises(ValueError):
        context_parallel_chunks(2, 2)


@pytest.mark.parametrize("cp", [1, 2, 4])
def test_split_then_gather_restores_the_sequence(cp):
    seq = 16 * cp
    tokens = torch.arange(3 * seq).reshape(3, seq)  # [batch, seq]
    parts = [split_for_context_parallel(tokens, cp, r) for r in range(cp)]
    for r, part in enumerate(parts):
        assert part.shape == (3, seq // cp)
        first, second = context_parallel_chunks(cp, r)
        chunk = seq // (2 * cp)
        expected = torch.cat(
            [tokens[:, first * chunk : (first + 1) * chunk], tokens[:, second * chunk : (second + 1) * chunk]], 1
        )
        assert torch.equal(part, expected)
    assert torch.equal(gather_from_context_parallel(parts), tokens)
    # any sequence dimension ([seq, batch, hidden] activations too)
    hidden = torch.randn(seq, 2, 5)
    back = gather_from_context_parallel(
        [split_for_context_parallel(hidden, cp, r, seq_dim=0) for r in range(cp)], seq_dim=0
    )
    assert torch.equal(back, hidden)


def test_cp2_rank_shares_of_an_8_token_sequence():
    seq = torch.arange(8).unsqueeze(0)
    assert split_for_context_parallel(seq, 2, 0).tolist() == [[0, 1, 6, 7]]
    assert split_for_context_parallel(seq, 2, 1).tolist() == [[2, 3, 4, 5]]
    with pytest.raises(ValueError, match="does not split into 2 x 3"):
        split_for_context_parallel(seq, 3, 0)


def _manifest(plan) -> data.MixtureManifest:
    return data.MixtureManifest(
        stage=plan.stage,
        seq_length=plan.seq_length,
        num_samples=plan.num_samples,
        seed=0,
        eod_id=1,
        pad_id=2,
        vocab_size=TINY.tokenizer.vocab_size,
        sources=(data.SourceStats("en", 1.0, 3, 100, 100),),
    )


def _validate(tmp_path, **kwargs):
    plan = stage_plan(TINY, "stage1")
    base = dict(output=tmp_path / "out", init_from=None, world_size=2, tensor_parallel=1, expert_parallel=1)
    validate_inputs(TINY, plan, _manifest(plan), **{**base, **kwargs})


def test_context_parallel_refused_in_one_line_without_transformer_engine(tmp_path, monkeypatch):
    import model.train as train

    monkeypatch.setattr(train, "context_parallel_available", lambda: False)
    with pytest.raises(TrainingSetupError) as err:
        _validate(tmp_path, context_parallel=2)
    message = str(err.value)
    assert "context parallelism 2 is not supported on this machine" in message
    assert "TransformerEngine" in message and "\n" not in message
    _validate(tmp_path, context_parallel=1)  # CP=1 passes


def test_context_parallel_layout_checks_where_it_is_available(tmp_path, monkeypatch):
    import model.train as train

    monkeypatch.setattr(train, "context_parallel_available", lambda: True)
    _validate(tmp_path, context_parallel=2)  # 128 tokens in 4 chunks; heads and KV groups divide
    with pytest.raises(TrainingSetupError) as err:
        _validate(tmp_path, context_parallel=3, world_size=3)
    assert "does not split into 2 x 3" in str(err.value)
    assert "must divide the" in str(err.value)
    with pytest.raises(TrainingSetupError, match="do not divide into TP=1 x EP=1 x CP=4"):
        _validate(tmp_path, context_parallel=4, world_size=2)


def test_pipeline_parallel_layout_checks(tmp_path):
    _validate(tmp_path, pipeline_parallel=2)
    with pytest.raises(TrainingSetupError, match="pipeline parallelism 3 does not divide the model's 4 layers"):
        _validate(tmp_path, pipeline_parallel=3, world_size=3)
    with pytest.raises(TrainingSetupError, match="do not divide into TP=1 x EP=2 x PP=2"):
        _validate(tmp_path, pipeline_parallel=2, expert_parallel=2)
    with pytest.raises(TrainingSetupError, match="NIAH evaluation after training"):
        _validate(tmp_path, pipeline_parallel=2, niah=True)


@pytest.mark.timeout(120)
def test_the_gpu_comparison_runs_its_two_phases(tmp_path):
    """``compare_context_parallel`` at CP=1 on CPU (one process): both phases, the weight copy and the reset
    of Megatron's parallel state run; identical phases give identical numbers. (CP=2 needs GPUs + TE.)"""
    code = (
        "import json, sys; from model.training import compare_context_parallel; "
        "r = compare_context_parallel('tiny', context_parallel=1, steps=2, batch_size=2, seq_length=32); "
        "json.dump(r, open(sys.argv[1], 'w'))"
    )
    out = tmp_path / "cp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ok"] and result["max_lm_loss_diff"] == 0.0 and result["max_grad_norm_rel_diff"] == 0.0
    assert len(result["cp1"]) == len(result["cp"]) == 2 and result["cp1"][0]["lm_loss"] > 0
