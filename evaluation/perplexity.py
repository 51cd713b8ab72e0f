"""Short-context held-out perplexity and its drift across the checkpoint chain (no Dagster).

Context extension must not cost the short-context skills (report §3.2: rehearsal data is mixed in for
that). The check: perplexity on held-out documents at the pre-training sequence length, per domain, for
every checkpoint; ``drift`` names the domains whose perplexity rose more than the preset's
``eval.short_context_ppl_tolerance`` over the baseline checkpoint.

1. ``held_out_windows(docs, seq_length, max_windows)``: the held-out documents as they are (each ends
   with its EOD id), concatenated and cut into non-overlapping windows of ``seq_length + 1`` tokens.
2. ``perplexity(model, windows, batch_size)``: exp of the mean next-token cross entropy of the main head.
3. ``drift(baseline, now, tolerance)``: the domains over the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


def held_out_windows(token_docs: Sequence[Sequence[int]], seq_length: int, max_windows: int) -> list[list[int]]:
    """Up to ``max_windows`` non-overlapping ``seq_length + 1``-token windows of the concatenated documents.

    The tail that does not fill a window is dropped. When there are more windows than ``max_windows``,
    evenly spaced ones are kept, so the score covers the whole held-out set rather than its first
    documents; the choice depends only on the input (deterministic).
    """
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 1:
        raise ValueError(f"seq_length must be an integer >= 1 (got {seq_length!r})")
    if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
        raise ValueError(f"max_windows must be an integer >= 1 (got {max_windows!r})")
    size = seq_length + 1
    stream = np.fromiter((t for doc in token_docs for t in doc), dtype=np.int64)
    available = len(stream) // size
    if available == 0:
        raise ValueError(
            f"the held-out documents hold {len(stream)} tokens, fewer than one window of seq_length + 1 = {size}"
        )
    windows = stream[: available * size].reshape(available, size)
    if available > max_windows:
        windows = windows[np.linspace(0, available - 1, max_windows).round().astype(np.int64)]
    return windows.tolist()


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float  # exp(mean_loss)
    mean_loss: float  # mean next-token cross entropy (nats) over every predicted token
    tokens: int  # predicted tokens: windows x seq_length
    windows: int


def perplexity(model, windows: Sequence[Sequence[int]], batch_size: int) -> PerplexityResult:
    """Perplexity of a Megatron ``GPTModel`` on ``[n, seq_length + 1]`` windows, main head only.

    With labels, ``GPTModel.forward`` returns the per-token cross entropy ``[b, s]`` of the main output
    head: in eval mode the MTP block still runs, but ``process_mtp_loss`` keeps only the first (main)
    chunk of the hidden states, attaches the MTP loss through an autograd hook (a no-op here) and logs
    nothing when not training. Under ``no_grad`` the routers' expert-bias token counts are not updated
    either, so scoring leaves the model as it found it (mode included).
    """
    import torch

    from model.training import batch_from_tokens

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    tokens = torch.as_tensor(np.asarray(windows, dtype=np.int64))
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] < 2:
        raise ValueError(
            f"windows must be a non-empty [n, seq_length + 1] array with seq_length >= 1,"
            f" got shape {tuple(tokens.shape)}"
        )
    if int(tokens.min()) < 0 or int(tokens.max()) >= model.vocab_size:
        raise ValueError(
            f"window token ids must lie in [0, {model.vocab_size}) (got {int(tokens.min())}..{int(tokens.max())})"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, tokens.shape[0], batch_size):
                batch = batch_from_tokens(tokens[start : start + batch_size].to(device))
                per_token = model(batch["input_ids"], batch["position_ids"], None, labels=batch["labels"])
                total += float(per_token.double().sum())  # float64: long sums stay exact enough
                count += per_token.numel()
    finally:
        model.train(was_training)
    mean = total / count
    return PerplexityResult(perplexity=math.exp(mean), mean_loss=mean, tokens=count, windows=int(tokens.shape[0]))


@dataclass(frozen=True)
class Drift:
    domain: str
    baseline: float  # perplexity at the baseline checkpoint
    now: float  # perplexity at the checkpoint under test
    relative_rise: float  # now / baseline - 1


def drift(baseline_ppl: Mapping[str, float], stage_ppl: Mapping[str, float], tolerance: float) -> list[Drift]:
    """The domains whose perplexity rose by more than ``tolerance`` (relative) over the baseline.

    A rise of exactly ``tolerance`` is allowed. Both sides must score the same domains: a domain missing
    at one checkpoint would otherwise pass silently. Domains come back in the baseline's order.
    """
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0 (got {tolerance!r})")
    only_base, only_now = sorted(set(baseline_ppl) - set(stage_ppl)), sorted(set(stage_ppl) - set(baseline_ppl))
    if only_base or only_now:
        raise ValueError(
            f"baseline and stage perplexities must cover the same domains (only baseline:"
            f" {', '.join(only_base) or '-'}; only stage: {', '.join(only_now) or '-'})"
        )
    for side, values in (("baseline", baseline_ppl), ("stage", stage_ppl)):
        bad = [d for d, v in values.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"{side} perplexity must be a finite number > 0 for every domain (bad: {', '.join(bad)})")
    rows = [
        Drift(d, float(baseline_ppl[d]), float(stage_ppl[d]), stage_ppl[d] / baseline_ppl[d] - 1) for d in baseline_ppl
    ]
    # A rise equal to the tolerance passes, also when float rounding puts it a hair above (5.25 / 5 - 1).
    return [
        r
        for r in rows
        if r.relative_rise > tolerance and not math.isclose(r.relative_rise, tolerance, rel_tol=1e-9, abs_tol=1e-12)
    ]


__all__ = ["Drift", "PerplexityResult", "drift", "held_out_windows", "perplexity"]
