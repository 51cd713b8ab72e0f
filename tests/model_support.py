"""Shared by the model tests: random token batches and the warning filters for Megatron's own notices
(the fixtures ``megatron_cpu`` and ``tiny`` are in tests/unit/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def random_tokens(n: int, seq: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seq), generator=torch.Generator().manual_seed(seed))


# Megatron-Core speaks up about its CPU fallbacks (no Apex/TE) and its own deprecations; not our findings.
MEGATRON_QUIET = [
    pytest.mark.filterwarnings("ignore::UserWarning:megatron.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:megatron.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:megatron.*"),
    pytest.mark.filterwarnings("ignore::SyntaxWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:torch.distributed.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:torch.distributed.*"),
]
