"""model/checkpoint.py: a bit-exact round trip through Megatron dist_checkpointing on CPU."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from model import checkpoint, training
from model.architecture import build_model
from tests.model_support import MEGATRON_QUIET, random_tokens

pytestmark = MEGATRON_QUIET


def _trainer(preset, seed):
    model = build_model(preset, seed=seed)
    optimizer = training.adamw(model, preset)
    return model, optimizer, training.wsd_scheduler(optimizer, preset)


def _snapshot(model, optimizer, scheduler) -> dict:
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "scheduler": scheduler.state_dict(),
        "lr": [g["lr"] for g in optimizer.param_groups],
        "rng": copy.deepcopy(checkpoint.rng_state()),
    }


def _assert_same(a, b, path="") -> None:
    """Exact equality through nested dicts/lists/tuples of tensors, arrays and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (path, set(a) ^ set(b))
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def test_round_trip_is_bit_exact_and_training_resumes_identically(megatron_cpu, tmp_path):
    preset = megatron_cpu
    vocab, clip = preset.tokenizer.vocab_size, preset.pretrain.grad_clip
    batches = [training.batch_from_tokens(random_tokens(2, 65, vocab, seed=s)) for s in range(4)]
    model, optimizer, scheduler = _trainer(preset, seed=1)
    for batch in batches[:3]:
        training.train_step(model, optimizer, scheduler, batch, grad_clip=clip)
    random.random(), np.random.rand(), torch.rand(3)  # move every RNG off its seed
    position = {"stage": "stage1", "consumed_samples": 6, "shard": [3, 17]}

    saved = _snapshot(model, optimizer, scheduler)
    checkpoint.save(tmp_path / "ckpt", model, optimizer, scheduler, data_position=position)
    _assert_same(_snapshot(model, optimizer, scheduler), saved, "unchanged by save")
    assert any(saved["model"][k].abs().sum() > 0 for k in saved["model"] if k.endswith("router.expert_bias"))
    after_save = training.train_step(model, optimizer, scheduler, batches[3], grad_clip=clip)
    draws_after_save = (random.random(), float(np.random.rand()), torch.rand(3))
    params_after_save = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}

    # A differently initialised trainer with different RNG states loads the checkpoint...
    other, other_opt, other_sched = _trainer(preset, seed=2)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    assert checkpoint.load(tmp_path / "ckpt", other, other_opt, other_sched) == position
    _assert_same(_snapshot(other, other_opt, other_sched), saved, "loaded")
    # ...and the next step is the same step.
    after_load = training.train_step(other, other_opt, other_sched, batches[3], grad_clip=clip)
    assert after_load == after_save
    _assert_same((random.random(), float(np.random.rand()), torch.rand(3)), draws_after_save, "draws")
    _assert_same({k: v for k, v in other.state_dict().items() if isinstance(v, torch.Tensor)}, params_after_save)


def test_save_writes_only_into_the_given_directory(megatron_cpu, tmp_path):
    preset = megatron_cpu
    model, optimizer, scheduler = _trainer(preset, seed=3)
    (tmp_path / "unrelated.txt").write_text("x")
    checkpoint.save(tmp_path / "ckpt", model, optimizer, scheduler, data_position={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "unrelated.txt"]
    assert (tmp_path / "ckpt" / "metadata.json").exists()
    with pytest.raises(checkpoint.CheckpointError, match=r"is not empty; save into a fresh directory$"):
        checkpoint.save(tmp_path / "ckpt", model, optimizer, scheduler, data_position={})
    with pytest.raises(checkpoint.CheckpointError, match=r"exists and is not a directory$"):
        checkpoint.save(tmp_path / "unrelated.txt", model, optimizer, scheduler, data_position={})


def test_loading_into_a_differently_shaped_model_fails_before_touching_it(megatron_cpu, tmp_path):
    preset = megatron_cpu
    model, optimizer, scheduler = _trainer(preset, seed=4)
    checkpoint.save(tmp_path / "ckpt", model, optimizer, scheduler, data_position={})
    wider = preset.with_overrides({"model.moe_ffn_hidden_size": 48})
    other, other_opt, other_sched = _trainer(wider, seed=5)
    before = {k: v.clone() for k, v in other.state_dict().items() if isinstance(v, torch.Tensor)}
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(tmp_path / "ckpt", other, other_opt, other_sched)
    message = str(err.value)
    assert "\n" not in message and "differently-shaped model" in message
    assert "experts.experts.linear_fc1.weight is" in message and "(and 5 more)" in message
    _assert_same({k: v for k, v in other.state_dict().items() if isinstance(v, torch.Tensor)}, before)
    with pytest.raises(checkpoint.CheckpointError, match="not a finished dist_checkpointing checkpoint"):
        checkpoint.load(tmp_path, other, other_opt, other_sched)
