"""model/context_mixture.py: whole documents only, the stage's ratios, exact sample length, determinism."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from config import get_preset
from model.context_mixture import POOLS, context_mixture

PAD, EOD = 0, 1  # documents draw their other ids from [2, 2048): neither occurs inside a document
# the full preset's stage-1 ratios (0.5 / 0.2 / 0.3) at 512 tokens and a 32,768-token budget
STAGE = dataclasses.replace(get_preset("k-exaone-236b").context.stages["stage1"], seq_length=512, tokens=32_768)
TOO_LONG = (600, 900, 2000)  # long documents that cannot fit 513 tokens


def _docs(n: int, low: int, high: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 2048, size=int(rng.integers(low, high)) - 1).tolist() + [EOD] for _ in range(n)]


@pytest.fixture(scope="module")
def pools() -> dict[str, list[list[int]]]:
    long_docs = _docs(30, 200, STAGE.seq_length + 2, seed=3)
    for i, n in zip((4, 11, 29), TOO_LONG):  # planted among the fitting ones
        long_docs.insert(i, _docs(1, n, n + 1, seed=n)[0])
    # 200 rehearsal documents hold ~14K tokens < 16,384 requested: the pool has to be repeated.
    return {
        "rehearsal": _docs(200, 20, 120, seed=1),
        "synthetic_reasoning": _docs(100, 50, 200, seed=2),
        "long_documents": long_docs,
    }


def _mix(pools, **overrides):
    args = dict(
        mixture=dict(STAGE.mixture), seq_length=STAGE.seq_length, token_budget=int(STAGE.tokens), pad_id=PAD, seed=7
    )
    args.update(overrides)
    return context_mixture(pools["rehearsal"], pools["synthetic_reasoning"], pools["long_documents"], **args)


@pytest.fixture(scope="module")
def mix(pools):
    return _mix(pools)


def test_every_sample_is_seq_plus_one_tokens_of_whole_documents_then_padding(pools, mix):
    assert mix.samples.shape == (mix.num_samples, STAGE.seq_length + 1) and mix.num_samples > 0
    used = Counter()
    for row, placed in zip(mix.samples, mix.placements):
        offset = 0
        for p in placed:  # contiguous, in order, each a whole copy of its input document
            assert p.offset == offset and p.length == len(pools[p.pool][p.document])
            assert row[p.offset : p.offset + p.length].tolist() == pools[p.pool][p.document]
            offset += p.length
            used[(p.pool, p.document)] += 1
        assert (row[offset:] == PAD).all() and offset > 0
        # Independently of the placements: cut at EOD, every piece is an input document, untouched.
        pieces = np.split(row[:offset], np.flatnonzero(row[:offset] == EOD)[:-1] + 1)
        assert all(any(piece.tolist() == pools[n][i] for n, i in used) for piece in pieces)
        assert sum(len(piece) for piece in pieces) == offset
    for name in POOLS:
        stats = mix.pools[name]
        assert stats.documents_used == sum(c for (n, _), c in used.items() if n == name)
        assert stats.unique_documents == len({i for n, i in used if n == name})
        assert stats.effective_tokens == sum(len(pools[n][i]) * c for (n, i), c in used.items() if n == name)
    pad_tokens = int((mix.samples == PAD).sum())
    assert mix.padding_fraction == pytest.approx(pad_tokens / mix.samples.size)
    assert mix.padding_fraction < 0.05  # short documents fill the room beside long ones


def test_documents_longer_than_a_sample_are_skipped_and_reported_never_cut(pools, mix):
    skipped = mix.pools["long_documents"].skipped_too_long
    assert [n for _, n in skipped] == list(TOO_LONG)
    assert all(len(pools["long_documents"][i]) == n for i, n in skipped)
    placed = {p.document for sample in mix.placements for p in sample if p.pool == "long_documents"}
    assert not placed & {i for i, _ in skipped}
    assert mix.pools["rehearsal"].skipped_too_long == () == mix.pools["synthetic_reasoning"].skipped_too_long
    assert mix.stats()["pools"]["long_documents"]["skipped_too_long"][0] == {"document": 4, "length": 600}


def test_pool_shares_follow_the_stage_mixture_within_the_stated_tolerance(mix):
    shares = mix.effective_shares()
    for name in POOLS:
        stats = mix.pools[name]
        assert stats.requested_tokens == round(STAGE.mixture[name] * STAGE.tokens)
        assert abs(stats.effective_tokens - stats.requested_tokens) <= stats.longest_fitting / 2
        assert abs(shares[name] - STAGE.mixture[name]) <= mix.ratio_tolerance(name)
        assert abs(shares[name] - STAGE.mixture[name]) < 0.03
    assert mix.document_tokens == pytest.approx(STAGE.tokens, rel=0.02)


def test_a_pool_too_small_for_its_share_is_repeated_and_says_so(pools, mix):
    rehearsal = mix.pools["rehearsal"]
    assert rehearsal.repeated and rehearsal.epochs == 2 and 1 < rehearsal.passes < 2
    assert rehearsal.unique_documents == len(pools["rehearsal"]) < rehearsal.documents_used
    assert not mix.pools["synthetic_reasoning"].repeated and mix.pools["synthetic_reasoning"].passes < 1


def test_a_zero_share_pool_may_be_empty_and_contributes_nothing(pools):
    mix = _mix(
        {**pools, "synthetic_reasoning": []},
        mixture={"rehearsal": 0.6, "synthetic_reasoning": 0.0, "long_documents": 0.4},
    )
    assert mix.pools["synthetic_reasoning"].effective_tokens == 0 == mix.pools["synthetic_reasoning"].epochs
    assert abs(mix.effective_shares()["long_documents"] - 0.4) <= mix.ratio_tolerance("long_documents")


def test_the_same_seed_gives_the_same_samples_and_another_seed_does_not(pools, mix):
    again = _mix(pools)
    assert np.array_equal(again.samples, mix.samples) and again.placements == mix.placements
    assert again.stats() == mix.stats()
    other = _mix(pools, seed=8)
    assert other.samples.shape[1] == mix.samples.shape[1] and not (
        other.samples.shape == mix.samples.shape and np.array_equal(other.samples, mix.samples)
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mixture": {"rehearsal": 0.5, "synthetic_reasoning": 0.2, "long_documents": 0.2}}, "must sum to 1"),
        ({"mixture": {"rehearsal": 0.5, "reasoning": 0.2, "long_documents": 0.3}}, "unknown: reasoning"),
        ({"mixture": {"rehearsal": 1.2, "synthetic_reasoning": -0.2, "long_documents": 0.0}}, "within [0, 1]"),
        ({"seq_length": 1}, "seq_length must be an integer >= 2"),
        ({"token_budget": 0}, "token_budget must be >= 1"),
        ({"pad_id": -1}, "pad_id must be a non-negative integer"),
        ({"seed": -3}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_fail_with_one_line(pools, overrides, message):
    with pytest.raises(ValueError) as err:
        _mix(pools, **overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "pool, docs, message",
    [
        ("long_documents", [], "pool 'long_documents' is empty but its mixture share is 0.3"),
        ("long_documents", [[5] * 600 + [EOD]], "all 1 documents are longer than seq_length + 1 = 513"),
        ("rehearsal", [[5, EOD], []], "pool 'rehearsal': document 1 is empty"),
    ],
)
def test_bad_pools_fail_with_one_line(pools, pool, docs, message):
    with pytest.raises(ValueError) as err:
        _mix({**pools, pool: docs})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_document_of_exactly_seq_plus_one_tokens_fills_a_sample_and_one_more_token_is_skipped():
    exact, over = [7] * 512 + [EOD], [8] * 513 + [EOD]
    only_long = {"rehearsal": 0.0, "synthetic_reasoning": 0.0, "long_documents": 1.0}
    mix = context_mixture(
        [[5, 6, EOD]],
        [[9, EOD]],
        [over, exact],
        mixture=only_long,
        seq_length=512,
        token_budget=513,
        pad_id=PAD,
        seed=0,
    )
    assert mix.samples.tolist() == [exact] and mix.padding_fraction == 0.0
    assert mix.pools["long_documents"].skipped_too_long == ((0, 514),)
