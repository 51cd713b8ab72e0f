"""Fixtures of the unit tier: one Megatron process set-up per test session and the tiny model.
torch.distributed (gloo, world size 1) and Megatron's parallel state are process-global, so they are
initialised once (``model.parallel.initialize`` is idempotent) and every test builds its own model."""

from __future__ import annotations

import pytest

from config import get_preset


@pytest.fixture(scope="session")
def megatron_cpu():
    from model import parallel

    parallel.initialize()
    return get_preset("tiny")


@pytest.fixture
def tiny(megatron_cpu):
    """(preset, freshly built tiny GPTModel) with the preset's seed."""
    from model.architecture import build_model

    preset = megatron_cpu
    return preset, build_model(preset)
