"""The context-extension data mix (report §3.2) as one pure function: pools of tokenized documents ->
packed training samples of ``seq_length + 1`` token ids.

Each context-extension stage mixes three pools, with the stage's ``mixture`` shares
(``preset.context.stages[...]``):

* ``rehearsal``: pre-training-style data, so the model keeps its short-context skills;
* ``synthetic_reasoning``: synthetic reasoning data (thinking trajectories);
* ``long_documents``: whole long documents, the point of the stage.

Policy, read top to bottom:

1. **Validate** everything before any work; bad input is one ``ValueError`` line.
2. **Whole documents only.** A document (already ending with its EOD id) is never split or truncated. One
   longer than ``seq_length + 1`` cannot fit a sample: it is skipped and reported with its length.
3. **Select per pool.** Each pool's target is ``round(share * token_budget)`` real tokens. Its fitting
   documents are walked in a seeded shuffle; when they run out before the target the pool is repeated
   (a new epoch, reshuffled) and the epoch count is reported. The walk stops at the document that would
   cross the target; that document is kept when it overshoots by no more than the target is undershot
   without it. So each pool lands within half of its longest fitting document of its target, which is
   the stated ratio tolerance (``ratio_tolerance``).
4. **Pack best-fit decreasing.** All selected documents, longest first, each into the open sample with
   the least room that still holds it (a new sample when none does). Pools share samples: short
   rehearsal / reasoning documents fill the room left beside a long document, which keeps padding low.
   Documents in one sample are separated by their own EOD ids, as in pre-training packing.
5. **Pad and shuffle.** The room left in a sample is ``pad_id`` (the trainer masks it out of the loss),
   and the samples are put in a seeded order so a training run does not see all long documents first.

The number of samples is whatever the packing needs: ``token_budget`` counts real (non-pad) tokens, and
the padding fraction says how much more the samples hold.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

POOLS = ("rehearsal", "synthetic_reasoning", "long_documents")
SHARE_SUM_TOLERANCE = 1e-6  # mixture shares are floats from the preset; they must sum to 1 up to rounding

Document = Sequence[int]


class Placement(NamedTuple):
    """Where one document sits: ``samples[sample][offset:offset + length]`` is ``pools[pool][document]``."""

    pool: str
    document: int  # index into the pool given to ``context_mixture``
    offset: int
    length: int


@dataclass(frozen=True)
class PoolStats:
    share: float  # the stage's mixture share
    requested_tokens: int  # round(share * token_budget)
    effective_tokens: int  # tokens of this pool in the samples (repeats counted)
    documents_used: int  # documents placed, repeats counted
    unique_documents: int  # distinct documents placed
    epochs: int  # passes started over the pool's fitting documents; > 1 means the pool was repeated
    passes: float  # effective_tokens / tokens of the pool's fitting documents
    fitting_documents: int
    longest_fitting: int  # tokens of the longest fitting document: twice the ratio tolerance in tokens
    skipped_too_long: tuple[tuple[int, int], ...]  # (document index, length): longer than seq_length + 1

    @property
    def repeated(self) -> bool:
        return self.epochs > 1


@dataclass(frozen=True)
class ContextMixture:
    samples: np.ndarray  # [num_samples, seq_length + 1] int64 token ids, pad_id after the documents
    placements: tuple[tuple[Placement, ...], ...]  # per sample, in offset order
    pools: Mapping[str, PoolStats]
    seq_length: int
    pad_id: int
    token_budget: int

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def document_tokens(self) -> int:
        return sum(p.effective_tokens for p in self.pools.values())

    @property
    def padding_fraction(self) -> float:
        capacity = self.samples.size
        return (capacity - self.document_tokens) / capacity if capacity else 0.0

    def effective_shares(self) -> dict[str, float]:
        total = self.document_tokens
        return {name: (p.effective_tokens / total if total else 0.0) for name, p in self.pools.items()}

    def ratio_tolerance(self, pool: str) -> float:
        """The promised bound on |effective share - mixture share| for ``pool``.

        A pool's tokens are within half its longest fitting document of its target (step 3 above); the
        share also moves with the total, which is off by at most the sum of those half-documents (plus
        two tokens for rounding the targets).
        """
        total = self.document_tokens
        if not total:
            return 0.0
        slack = {n: p.longest_fitting / 2 for n, p in self.pools.items() if p.share > 0}
        return (slack.get(pool, 0.0) + sum(slack.values()) + 2) / total

    def stats(self) -> dict:
        """JSON-ready numbers for the asset's metadata and the warehouse."""
        shares = self.effective_shares()
        return {
            "seq_length": self.seq_length,
            "num_samples": self.num_samples,
            "token_budget": self.token_budget,
            "document_tokens": self.document_tokens,
            "padding_fraction": self.padding_fraction,
            "pools": {
                name: {
                    "share": p.share,
                    "effective_share": shares[name],
                    "requested_tokens": p.requested_tokens,
                    "effective_tokens": p.effective_tokens,
                    "documents_used": p.documents_used,
                    "unique_documents": p.unique_documents,
                    "epochs": p.epochs,
                    "passes": p.passes,
                    "repeated": p.repeated,
                    "skipped_too_long": [{"document": i, "length": n} for i, n in p.skipped_too_long],
                }
                for name, p in self.pools.items()
            },
        }


def _validate(
    pools: Mapping[str, Sequence[Document]],
    mixture: Mapping[str, float],
    seq_length: int,
    token_budget: int,
    pad_id: int,
    seed: int,
) -> None:
    if set(pools) != set(POOLS):
        raise ValueError(f"context mixture pools must be exactly {', '.join(POOLS)} (got {', '.join(sorted(pools))})")
    unknown, missing = sorted(set(mixture) - set(POOLS)), sorted(set(POOLS) - set(mixture))
    if unknown or missing:
        raise ValueError(
            f"context mixture keys must be exactly {', '.join(POOLS)}"
            f" (unknown: {', '.join(unknown) or '-'}; missing: {', '.join(missing) or '-'})"
        )
    for name in POOLS:
        share = mixture[name]
        if not isinstance(share, (int, float)) or not math.isfinite(share) or not 0 <= share <= 1:
            raise ValueError(f"context mixture share {name}={share!r} must be a number within [0, 1]")
    total = sum(mixture[name] for name in POOLS)
    if abs(total - 1) > SHARE_SUM_TOLERANCE:
        raise ValueError(f"context mixture shares must sum to 1 (got {total:.6g})")
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 2:
        raise ValueError(f"seq_length must be an integer >= 2 (got {seq_length!r})")
    if isinstance(token_budget, bool) or not isinstance(token_budget, (int, float)) or not token_budget >= 1:
        raise ValueError(f"token_budget must be >= 1 token (got {token_budget!r})")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative integer (got {pad_id!r})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    capacity = seq_length + 1
    for name in POOLS:
        docs = pools[name]
        empty = next((i for i, d in enumerate(docs) if len(d) == 0), None)
        if empty is not None:
            raise ValueError(f"pool {name!r}: document {empty} is empty (every document ends with its EOD id)")
        if mixture[name] > 0 and not docs:
            raise ValueError(f"pool {name!r} is empty but its mixture share is {mixture[name]}")
        if mixture[name] > 0 and all(len(d) > capacity for d in docs):
            raise ValueError(
                f"pool {name!r} has share {mixture[name]} but all {len(docs)} documents are longer"
                f" than seq_length + 1 = {capacity} tokens"
            )


def _select(
    docs: Sequence[Document], fitting: list[int], target: int, seed: int, pool_index: int
) -> tuple[list[int], int]:
    """Document indices (repeats allowed) whose tokens land nearest ``target``, and the epochs started."""
    chosen: list[int] = []
    tokens, epoch = 0, 0
    while tokens < target:
        epoch += 1
        # One independent, reproducible stream per (seed, pool, epoch): a repeated pool is reshuffled.
        order = np.random.default_rng([seed, pool_index, epoch]).permutation(len(fitting))
        for i in order:
            index = fitting[int(i)]
            n = len(docs[index])
            if tokens + n > target:
                if tokens + n - target <= target - tokens:  # overshoot no worse than the undershoot
                    chosen.append(index)
                    tokens += n
                return chosen, epoch
            chosen.append(index)
            tokens += n
            if tokens == target:
                return chosen, epoch
    return chosen, epoch


def _pack(items: list[tuple[str, int, int]], capacity: int) -> list[list[tuple[str, int, int]]]:
    """Best-fit decreasing of (pool, document, length) items into bins of ``capacity`` tokens."""
    order = sorted(range(len(items)), key=lambda k: (-items[k][2], k))  # longest first; ties: selection order
    bins: list[list[tuple[str, int, int]]] = []
    room: list[tuple[int, int]] = []  # sorted (free tokens, bin index) of bins that still have room
    for k in order:
        item = items[k]
        at = bisect.bisect_left(room, (item[2], -1))  # the tightest bin that still holds the document
        if at < len(room):
            free, b = room.pop(at)
        else:
            free, b = capacity, len(bins)
            bins.append([])
        bins[b].append(item)
        if free - item[2] > 0:
            bisect.insort(room, (free - item[2], b))
    return bins


def context_mixture(
    rehearsal: Sequence[Document],
    synthetic_reasoning: Sequence[Document],
    long_documents: Sequence[Document],
    *,
    mixture: Mapping[str, float],
    seq_length: int,
    token_budget: int,
    pad_id: int,
    seed: int,
) -> ContextMixture:
    """Packed ``[n, seq_length + 1]`` samples of whole documents from the three pools, with the stats.

    ``token_budget`` is the stage's real (non-pad) tokens; ``mixture`` has exactly the three pool keys.
    """
    pools = {"rehearsal": rehearsal, "synthetic_reasoning": synthetic_reasoning, "long_documents": long_documents}
    _validate(pools, mixture, seq_length, token_budget, pad_id, seed)
    capacity = seq_length + 1

    items: list[tuple[str, int, int]] = []
    per_pool: dict[str, dict] = {}
    for pool_index, name in enumerate(POOLS):
        docs = pools[name]
        fitting = [i for i, d in enumerate(docs) if len(d) <= capacity]
        too_long = tuple((i, len(d)) for i, d in enumerate(docs) if len(d) > capacity)
        target = round(mixture[name] * token_budget)
        chosen, epochs = _select(docs, fitting, target, seed, pool_index) if target > 0 else ([], 0)
        items += [(name, i, len(docs[i])) for i in chosen]
        effective = sum(len(docs[i]) for i in chosen)
        fitting_tokens = sum(len(docs[i]) for i in fitting)
        per_pool[name] = dict(
            share=float(mixture[name]),
            requested_tokens=target,
            effective_tokens=effective,
            documents_used=len(chosen),
            unique_documents=len(set(chosen)),
            epochs=epochs,
            passes=effective / fitting_tokens if fitting_tokens else 0.0,
            fitting_documents=len(fitting),
            longest_fitting=max((len(docs[i]) for i in fitting), default=0),
            skipped_too_long=too_long,
        )

    bins = _pack(items, capacity)
    sample_order = np.random.default_rng([seed, len(POOLS)]).permutation(len(bins))
    samples = np.full((len(bins), capacity), pad_id, dtype=np.int64)
    placements: list[tuple[Placement, ...]] = []
    for row, b in enumerate(sample_order):
        offset, placed = 0, []
        for name, index, length in bins[int(b)]:
            samples[row, offset : offset + length] = pools[name][index]
            placed.append(Placement(name, index, offset, length))
            offset += length
        placements.append(tuple(placed))
    return ContextMixture(
        samples=samples,
        placements=tuple(placements),
        pools={name: PoolStats(**per_pool[name]) for name in POOLS},
        seq_length=seq_length,
        pad_id=pad_id,
        token_budget=int(token_budget),
    )


__all__ = ["POOLS", "ContextMixture", "Placement", "PoolStats", "context_mixture"]
