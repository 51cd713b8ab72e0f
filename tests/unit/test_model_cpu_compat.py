"""model/cpu_compat.py: applied exactly when there is no CUDA device, idempotent, revertible, and each of
its patches is what makes one stage of a CPU run work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from model import cpu_compat, parallel
from tests.model_support import MEGATRON_QUIET, REPO

pytestmark = MEGATRON_QUIET


def test_applied_on_cpu_when_the_model_is_built(tiny):
    assert not torch.cuda.is_available()
    assert cpu_compat.is_applied()
    assert cpu_compat.applied() == tuple(cpu_compat.PATCHES)
    assert torch.cuda.current_device() == "cpu"
    from megatron.core.fusions import fused_softmax

    mask = fused_softmax.get_sliding_window_causal_mask(4, 4, (1, 0))
    assert mask.device.type == "cpu"
    # True = masked: query i sees keys i-1 and i only
    assert mask.tolist() == [
        [False, True, True, True],
        [False, False, True, True],
        [True, False, False, True],
        [True, True, False, False],
    ]


def test_apply_is_idempotent_and_revert_restores_the_originals(megatron_cpu):
    from megatron.core.transformer import utils

    patched = (torch.cuda.current_device, torch.cuda.synchronize, utils.get_default_causal_mask)
    cpu_compat.revert()
    try:
        originals = (torch.cuda.current_device, torch.cuda.synchronize, utils.get_default_causal_mask)
        assert not cpu_compat.is_applied() and cpu_compat.applied() == ()
        assert all(a is not b for a, b in zip(originals, patched))
        cpu_compat.apply()
        cpu_compat.apply()  # a second apply must not save the patched functions as "originals"
        assert (torch.cuda.current_device, torch.cuda.synchronize, utils.get_default_causal_mask) == patched
        cpu_compat.revert()
        assert (torch.cuda.current_device, torch.cuda.synchronize, utils.get_default_causal_mask) == originals
        with pytest.raises(ValueError, match="unknown CPU compat patch"):
            cpu_compat.apply(["flash_attention"])
    finally:
        cpu_compat.ensure()
        parallel.seed_everything(0)  # rebuild the RNG tracker under the patch for the tests that follow
    assert cpu_compat.is_applied()


def test_ensure_respects_the_off_switch(monkeypatch, megatron_cpu):
    monkeypatch.setenv(cpu_compat.ENV_VAR, "0")
    assert cpu_compat.disabled_by_env()
    monkeypatch.setenv(cpu_compat.ENV_VAR, "1")
    assert not cpu_compat.disabled_by_env() and cpu_compat.ensure()


def test_parallel_initialize_is_idempotent_and_rejects_a_different_layout(megatron_cpu):
    from megatron.core import parallel_state

    parallel.initialize()
    parallel.initialize()
    assert torch.distributed.get_world_size() == 1 and torch.distributed.get_backend() == "gloo"
    assert parallel_state.get_tensor_model_parallel_world_size() == 1
    with pytest.raises(parallel.ParallelStateError, match="already initialized"):
        parallel.initialize(tensor_parallel=2)


@pytest.mark.slow
def test_every_patch_is_needed_and_together_they_make_cpu_runs_work():
    """A fresh process (no patch applied before) runs seed -> build -> train step -> save -> Megatron's
    reference attention with all patches, none, and each one left out; each omission breaks exactly the stage
    its patch covers."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "model.compat_probe"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["all"] == {"failed_stage": None, "error": None}
    assert report["none"]["failed_stage"] is not None
    expected = {
        "rng_tracker": "seed",
        "current_device": "build",
        "causal_masks": "reference_attention",
        "synchronize": "save",
    }
    assert set(expected) == set(cpu_compat.PATCHES)
    for name, stage in expected.items():
        outcome = report[f"without_{name}"]
        assert outcome["failed_stage"] == stage, (name, outcome)
        assert "NVIDIA driver" in outcome["error"] or "CUDA" in outcome["error"], (name, outcome)


ONE_STEP = """
import json, torch
from config import get_preset
from model import cpu_compat, parallel, training
from model.architecture import build_model
cpu_compat.ensure(); parallel.initialize()
p = get_preset("tiny"); parallel.seed_everything(p.pretrain.seed)
model = build_model(p); optimizer = training.adamw(model, p)
tokens = torch.arange(2 * 65).reshape(2, 65) % p.tokenizer.vocab_size
step = training.train_step(model, optimizer, training.wsd_scheduler(optimizer, p), training.batch_from_tokens(tokens),
                           grad_clip=p.pretrain.grad_clip)
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "loss": step.lm_loss}))
"""


@pytest.mark.slow
def test_a_training_step_runs_with_atens_scalar_kernels():
    """ATEN_CPU_CAPABILITY=default (scalar ATen kernels, one of the margin bench's float configurations): the
    step compiles Megatron's router with TorchInductor, whose scalar C++ does not build in torch 2.14."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", ONE_STEP], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["capability"] == "DEFAULT" and 5.0 < report["loss"] < 10.0
