"""The Triton kernels of ``kernels/`` against their torch references, on CPU under Triton's interpreter.

* the decode-attention reference against an independent computation: the last row of PyTorch's
  ``scaled_dot_product_attention`` over the whole, unrotated sequence with a causal / sliding-window mask, while
  the reference reads the same keys from a shuffled or wrapped ring-buffer cache with empty slots;
* the decode-attention kernel against the reference: GQA ratios 1, 2, 4, 8, caches not a multiple of the block,
  wrapped ring buffers, empty slots, keys from the future, splits of the cache with nothing visible, D 16/64/128,
  fp32 (1e-5) and bf16/fp16 (one rounding of the output);
* the router kernel against the reference against Megatron's own ``topk_routing_with_score_function`` at the tiny
  (E=8, k=2) and full (E=128, k=8) presets' settings, scaling 2.5, with and without expert bias.

``TRITON_INTERPRET`` is read when ``@triton.jit`` decorates, i.e. when a module is imported, triton's own
``triton.language`` helpers included: so these tests run in a fresh interpreter started with it set
(``tests/unit/test_kernels.py`` runs this file; the file name keeps it out of the suite's own collection).
bf16 runs under the interpreter because the kernels convert tiles to fp32 before ``tl.dot``: the interpreter's
``tl.dot`` multiplies bf16 tiles as their raw uint16 bits (triton 3.8), and fp32 loads/stores of bf16 are fine.
"""

from __future__ import annotations

import math
import os
import types

import pytest
import torch
import torch.nn.functional as F

from config import get_preset

TOLERANCE = {  # (atol, rtol) of kernel vs reference: fp32 accumulation order; 16-bit: one rounding of the output
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (1.6e-2, 1.6e-2),
    torch.float16: (2e-3, 2e-3),
}


@pytest.fixture(scope="module")
def kernels():
    """The kernel modules, their ``@triton.jit`` functions built for Triton's interpreter."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/unit/test_kernels.py"
    from triton.runtime.interpreter import InterpretedFunction

    from kernels import decode_attention, router

    ns = types.SimpleNamespace(attention=decode_attention, router=router)
    assert isinstance(ns.attention._decode_attention_kernel, InterpretedFunction)
    assert isinstance(ns.router._sigmoid_router_kernel, InterpretedFunction)
    return ns


# --- decode attention ---------------------------------------------------------------------------------------


def cache_positions(slots: int, qpos: int, window: int | None, generator: torch.Generator) -> torch.Tensor:
    """Positions held by the ``slots`` cache slots when the token at ``qpos`` has just been written.
    Window layer: a ring buffer, position p in slot p % slots (wrapped once qpos >= slots, empty before).
    Global layer: positions 0..qpos in shuffled slots, the rest empty."""
    pos = torch.full((slots,), -1, dtype=torch.int64)
    if window is not None:
        held = torch.arange(max(0, qpos - slots + 1), qpos + 1)
        pos[held % slots] = held
    else:
        assert qpos < slots
        pos[torch.randperm(slots, generator=generator)[: qpos + 1]] = torch.arange(qpos + 1)
    return pos


def decode_inputs(b, hq, hkv, s, d, dtype, qpos, window, seed=0, positions=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, s, d, generator=g).to(dtype)
    v = torch.randn(b, hkv, s, d, generator=g).to(dtype)
    if positions is None:
        positions = torch.stack([cache_positions(s, p, window, g) for p in qpos])
    return q, k, v, positions, torch.tensor(qpos, dtype=torch.int64)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("window", [None, 5, 12])
@pytest.mark.parametrize(("hq", "hkv"), [(4, 4), (6, 2), (8, 1)])
def test_reference_is_the_last_row_of_full_sequence_attention(kernels, window, hq, hkv):
    """The batch rows are sequences of their own lengths (fp64); the cache holds their keys in shuffled (global) or
    wrapped ring-buffer (window) slots with garbage in the empty ones, while SDPA sees each whole sequence in order
    with an explicit causal / window mask. The kernel, on the same cache, agrees too."""
    d, lengths, scale, group = 16, [1, 9, 23], 0.3, hq // hkv
    slots = 30 if window is None else window + 3  # a ring buffer larger than the window: stale keys must be masked
    g = torch.Generator().manual_seed(1)
    rows = []  # (q, k_cache, v_cache, positions, expected) per sequence
    for length in lengths:
        q_seq, k_seq, v_seq = (torch.randn(1, h, length, d, generator=g, dtype=torch.float64) for h in (hq, hkv, hkv))
        i = torch.arange(length)
        mask = i[None, :] <= i[:, None]
        if window is not None:
            mask &= i[None, :] > i[:, None] - window
        expected = F.scaled_dot_product_attention(
            q_seq, k_seq.repeat_interleave(group, 1), v_seq.repeat_interleave(group, 1), attn_mask=mask, scale=scale
        )[0, :, -1]

        positions = cache_positions(slots, length - 1, window, g)
        full = positions >= 0
        k_cache = torch.full((hkv, slots, d), 1e3, dtype=torch.float64)  # garbage in empty slots must not leak
        v_cache = torch.full((hkv, slots, d), 1e3, dtype=torch.float64)
        k_cache[:, full] = k_seq[0][:, positions[full]]
        v_cache[:, full] = v_seq[0][:, positions[full]]
        rows.append((q_seq[0, :, -1], k_cache, v_cache, positions, expected))
    q, k_cache, v_cache, positions, expected = (torch.stack(t) for t in zip(*rows))
    args = (q.float(), k_cache.float(), v_cache.float(), positions, torch.tensor(lengths) - 1)

    got = kernels.attention.decode_attention_reference(*args, window=window, scale=scale)
    torch.testing.assert_close(got, expected.float(), atol=2e-6, rtol=2e-6)
    got = kernels.attention.decode_attention_triton(*args, window=window, scale=scale)
    torch.testing.assert_close(got, expected.float(), atol=1e-5, rtol=1e-5)


ATTENTION_CASES = {  # name: (B, Hq, Hkv, S, D, query positions, window, num_splits, explicit key positions)
    "mha-global-empty-slots": (1, 4, 4, 50, 16, [40], None, 1, None),
    "gqa4-ring-wrapped": (2, 8, 2, 16, 64, [5, 37], 16, 1, None),
    "mqa-global-splits": (3, 8, 1, 130, 64, [129, 70, 0], None, 3, None),
    "gqa2-window-in-larger-ring": (2, 6, 3, 70, 16, [100, 20], 32, 2, None),
    "d128-global": (1, 2, 1, 65, 128, [64], None, 1, None),
    "future-and-empty-keys": (2, 4, 2, 77, 16, [30, 60], 20, 1, "random"),
    "empty-splits": (1, 4, 1, 200, 16, [29], None, 4, "first-30"),
}


def attention_case(name: str, dtype: torch.dtype):
    b, hq, hkv, s, d, qpos, window, splits, how = ATTENTION_CASES[name]
    positions = None
    if how == "random":  # anything in [-1, 2S): keys ahead of the query (stale or speculative) must be masked
        positions = torch.randint(-1, 2 * s, (b, s), generator=torch.Generator().manual_seed(7))
    elif how == "first-30":
        positions = torch.where(torch.arange(s) < 30, torch.arange(s), -1).expand(b, s).contiguous()
    return decode_inputs(b, hq, hkv, s, d, dtype, qpos, window, positions=positions), window, splits, d


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", list(ATTENTION_CASES))
def test_decode_attention_kernel_matches_reference(kernels, name, dtype):
    (q, k, v, kpos, qpos), window, splits, d = attention_case(name, dtype)
    scale = 1 / math.sqrt(d)
    ref = kernels.attention.decode_attention_reference(q, k, v, kpos, qpos, window=window, scale=scale)
    got = kernels.attention.decode_attention_triton(q, k, v, kpos, qpos, window=window, scale=scale, num_splits=splits)
    assert got.dtype == dtype and got.shape == q.shape
    assert ref.float().abs().max() > 0.1  # the case attends to something
    atol, rtol = TOLERANCE[dtype]
    torch.testing.assert_close(got.float(), ref.float(), atol=atol, rtol=rtol)


@pytest.mark.timeout(60)
def test_decode_attention_with_nothing_visible_is_zero_not_nan(kernels):
    q, k, v, kpos, _ = decode_inputs(1, 4, 2, 40, 16, torch.float32, [39], None)
    qpos = torch.tensor([-5])  # before every stored position
    for splits in (1, 2):
        got = kernels.attention.decode_attention_triton(q, k, v, kpos, qpos, window=None, scale=0.25, num_splits=splits)
        assert torch.equal(got, torch.zeros_like(q))
    assert torch.equal(kernels.attention.decode_attention_reference(q, k, v, kpos, qpos, window=8, scale=0.25), 0 * q)


@pytest.mark.timeout(60)
def test_decode_attention_dispatch(kernels, monkeypatch):
    (q, k, v, kpos, qpos), window, _, _ = attention_case("gqa4-ring-wrapped", torch.float32)
    attention = kernels.attention
    ref = attention.decode_attention_reference(q, k, v, kpos, qpos, window=window, scale=0.125)
    tri = attention.decode_attention_triton(q, k, v, kpos, qpos, window=window, scale=0.125)
    assert not torch.equal(ref, tri)  # different summation order: the two paths are told apart below
    monkeypatch.delenv("KEXAONE_KERNELS", raising=False)
    assert torch.equal(attention.decode_attention(q, k, v, kpos, qpos, window=window, scale=0.125), ref)
    monkeypatch.setenv("KEXAONE_KERNELS", "triton")
    assert torch.equal(attention.decode_attention(q, k, v, kpos, qpos, window=window, scale=0.125), tri)


# --- router -------------------------------------------------------------------------------------------------


def router_settings(preset: str) -> tuple[int, int, float]:
    m = get_preset(preset).model
    return m.num_moe_experts, m.moe_router_topk, m.moe_router_topk_scaling_factor


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("preset", ["tiny", "k-exaone-236b"])
def test_router_kernel_matches_reference_and_megatron(kernels, preset, with_bias, dtype):
    from megatron.core.transformer.moe.moe_utils import topk_routing_with_score_function

    experts, topk, scaling = router_settings(preset)
    assert scaling == 2.5 and (experts, topk) in {(8, 2), (128, 8)}
    g = torch.Generator().manual_seed(3)
    tokens = 37  # not a multiple of the kernel's token block
    if dtype == torch.float32:
        logits = torch.randn(tokens, experts, generator=g) * 2
    else:  # random bf16 logits tie (8 significant bits): each row a shuffle of distinct multiples of 1/32 in [-2, 2)
        logits = (torch.rand(tokens, experts, generator=g).argsort(-1) - experts // 2).mul(2**-5).to(dtype)
        assert (logits.sort(-1).values.diff(dim=-1) > 0).all()
    # bias of the size of score gaps so that it really changes choices (checked below)
    bias = torch.randn(experts, generator=g) * 0.2 if with_bias else None

    weights, indices = kernels.router.sigmoid_router_triton(logits, bias, topk, scaling)
    ref_w, ref_i = kernels.router.sigmoid_router_reference(logits, bias, topk, scaling)
    assert weights.dtype == torch.float32 and indices.dtype == torch.int64 and weights.shape == (tokens, topk)
    assert torch.equal(indices, ref_i)
    torch.testing.assert_close(weights, ref_w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(weights.sum(-1), torch.full((tokens,), scaling), atol=1e-5, rtol=0)
    if with_bias:
        unbiased = kernels.router.sigmoid_router_reference(logits, None, topk, scaling)[1]
        assert not torch.equal(unbiased.sort(-1).values, ref_i.sort(-1).values)

    with torch.no_grad():  # inference: Megatron's top-k unsorted; the dense map is order-free
        probs, routing_map = topk_routing_with_score_function(
            logits, topk, score_function="sigmoid", expert_bias=bias, scaling_factor=scaling
        )
    ours_probs, ours_map = kernels.router.to_megatron(weights, indices, experts)
    assert torch.equal(ours_map, routing_map)
    assert probs.dtype == dtype  # Megatron casts the probs to the logits' dtype; ours stay fp32
    torch.testing.assert_close(ours_probs.to(dtype), probs, atol=1e-6, rtol=1e-6 if dtype == torch.float32 else 8e-3)


@pytest.mark.timeout(60)
def test_router_options(kernels):
    """k=1 is never normalised (as in Megatron), normalize=False and scaling None/0 leave the raw sigmoid."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(20, 8, generator=g)
    router = kernels.router
    for topk, scaling, normalize in [(1, 2.5, True), (3, None, False), (3, 0.0, True), (8, 1.0, True)]:
        w, i = router.sigmoid_router_triton(logits, None, topk, scaling, normalize)
        rw, ri = router.sigmoid_router_reference(logits, None, topk, scaling, normalize)
        assert torch.equal(i, ri)
        torch.testing.assert_close(w, rw, atol=1e-6, rtol=1e-6)
    w, i = router.sigmoid_router_triton(logits, None, 1, 2.5)
    torch.testing.assert_close(w[:, 0], 2.5 * torch.sigmoid(logits).amax(-1))
    w, _ = router.sigmoid_router_triton(logits, None, 3, None, False)
    torch.testing.assert_close(w, torch.sigmoid(logits).topk(3, -1).values)


@pytest.mark.timeout(60)
def test_router_dispatch(kernels, monkeypatch):
    logits = torch.randn(40, 128, generator=torch.Generator().manual_seed(5))
    router = kernels.router
    ref, tri = router.sigmoid_router_reference(logits, None, 8, 2.5), router.sigmoid_router_triton(logits, None, 8, 2.5)
    monkeypatch.delenv("KEXAONE_KERNELS", raising=False)
    assert all(map(torch.equal, router.sigmoid_router(logits, None, 8, 2.5), ref))
    monkeypatch.setenv("KEXAONE_KERNELS", "triton")
    assert all(map(torch.equal, router.sigmoid_router(logits, None, 8, 2.5), tri))
