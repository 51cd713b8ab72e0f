"""Shared by the tests/test_model_*.py files: one Megatron process set-up per test session and the tiny
model. torch.distributed (gloo, world size 1) and Megatron's parallel state are process-global, so they
are initialised once (``model.parallel.initialize`` is idempotent) and every test builds its own model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kexaone_dag.presets import get_preset

REPO = Path(__file__).resolve().parent.parent


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


def random_tokens(n: int, seq: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seq), generator=torch.Generator().manual_seed(seed))


# Megatron-Core speaks up about its CPU fallbacks (no Apex/TE) and its own deprecations; not our findings.
MEGATRON_QUIET = [pytest.mark.filterwarnings("ignore::UserWarning:megatron.*"),
                  pytest.mark.filterwarnings("ignore::DeprecationWarning:megatron.*"),
                  pytest.mark.filterwarnings("ignore::FutureWarning:megatron.*"),
                  pytest.mark.filterwarnings("ignore::SyntaxWarning"),
                  pytest.mark.filterwarnings("ignore::UserWarning:torch.distributed.*"),
                  pytest.mark.filterwarnings("ignore::FutureWarning:torch.distributed.*")]
