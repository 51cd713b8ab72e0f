"""Single-token decode attention over a KV cache that may be a ring buffer: a Triton kernel and its torch reference.

What: one new query token per batch row, ``q [B, Hq, D]``, against ``k_cache``/``v_cache [B, Hkv, S, D]``.
Each slot's absolute sequence position is in ``key_positions [B, S]`` (-1 = empty slot), the query's in
``query_positions [B]``. Slot order is arbitrary (a sliding-window layer's cache is a ring buffer of ``window``
slots that wraps), so the mask is computed from stored positions only:

* a key is visible if ``0 <= kpos <= qpos`` and, for a sliding-window layer, ``kpos > qpos - window``
  (``window`` tokens including the query itself: HF's ``sliding_window``, Megatron's ``window_size=(w-1, 0)``);
  ``window=None`` is a global layer;
* GQA: query head ``h`` reads KV head ``h // (Hq // Hkv)`` (consecutive query heads share a KV head, as in
  Megatron and HF);
* softmax in fp32, output in ``q``'s dtype; a query that sees no key at all gets zeros (never NaN).

Why: decoding is memory-bound; the reference materialises the scores of every slot and the mask, the kernel
streams the cache once per KV head (all the query heads of a GQA group in one program, an online softmax over
blocks of slots) and splits long caches across programs (flash-decoding) so that batch 1 still fills the GPU.
``decode_attention`` picks the kernel on CUDA (or when ``KEXAONE_KERNELS=triton``, which the CPU tests use under
``TRITON_INTERPRET=1``) and the reference otherwise.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

BLOCK_S = 64  # cache slots per step of the online softmax
MIN_GROUP = 16  # tl.dot needs at least 16 rows: a GQA group is padded up to this


def visible_keys(key_positions: torch.Tensor, query_positions: torch.Tensor, window: int | None) -> torch.Tensor:
    """``[B, S]`` bool: which slots the query of each row attends to (by stored position, not slot index)."""
    qpos = query_positions[:, None]
    mask = (key_positions >= 0) & (key_positions <= qpos)
    if window is not None:
        mask &= key_positions > qpos - window
    return mask


def _check(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, key_positions: torch.Tensor) -> int:
    b, hq, d = q.shape
    assert k_cache.dim() == 4 and k_cache.shape == v_cache.shape, (k_cache.shape, v_cache.shape)
    assert k_cache.shape[0] == b and k_cache.shape[3] == d, (q.shape, k_cache.shape)
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    assert hq % hkv == 0, f"Hq={hq} is not a multiple of Hkv={hkv}"
    assert key_positions.shape == (b, s), (key_positions.shape, (b, s))
    return hq // hkv


def decode_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    key_positions: torch.Tensor,
    query_positions: torch.Tensor,
    *,
    window: int | None,
    scale: float,
) -> torch.Tensor:
    """Plain torch, fp32 inside: scores of every slot, masked by position, softmax, weighted sum of values."""
    group = _check(q, k_cache, v_cache, key_positions)
    b, hq, d = q.shape
    hkv = k_cache.shape[1]
    qf = q.float().reshape(b, hkv, group, d)
    scores = torch.einsum("bhgd,bhsd->bhgs", qf, k_cache.float()) * scale
    mask = visible_keys(key_positions, query_positions, window)[:, None, None, :]
    scores = scores.masked_fill(~mask, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).min)  # finite if all masked
    p = torch.exp(scores - top)  # exp(-inf) = 0 at masked slots
    out = torch.einsum("bhgs,bhsd->bhgd", p, v_cache.float()) / p.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    return out.reshape(b, hq, d).to(q.dtype)


@triton.jit
def _decode_attention_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    kpos_ptr,
    qpos_ptr,
    out_ptr,
    lse_ptr,
    stride_qb,
    stride_qh,
    stride_kb,
    stride_kh,
    stride_ks,
    stride_vb,
    stride_vh,
    stride_vs,
    stride_pb,
    stride_ob,
    stride_oh,
    stride_osplit,
    stride_lb,
    stride_lh,
    num_kv_heads,
    num_slots,
    slots_per_split,
    window,
    scale,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """One program = one (batch row, KV head, split of the slots): the GQA group's queries against the split's
    slots, online softmax over blocks of BLOCK slots. Writes the split's normalised output and log-sum-exp.

    Tiles are converted to fp32 after loading: bf16/fp16 values are exact in tf32, so the tf32 tensor-core dot
    of 16-bit inputs is as exact as a native 16-bit dot (and ``p`` keeps 10 mantissa bits, not 7). It also keeps
    the interpreter honest: its ``tl.dot`` multiplies bf16 tiles as their raw uint16 bits (triton 3.8)."""
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bh // num_kv_heads
    kvh = pid_bh % num_kv_heads

    rows = tl.arange(0, GROUP_PAD)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < GROUP
    dim_ok = dims < HEAD_DIM
    heads = kvh * GROUP + rows
    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    ).to(tl.float32)
    qpos = tl.load(qpos_ptr + b)

    m_i = tl.full([GROUP_PAD], -1.0e30, tl.float32)  # finite: a block with no visible slot changes nothing
    l_i = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, BLOCK_D], tl.float32)

    lo = split * slots_per_split
    hi = tl.minimum(lo + slots_per_split, num_slots)
    k_base = k_ptr + b * stride_kb + kvh * stride_kh
    v_base = v_ptr + b * stride_vb + kvh * stride_vh
    for start in range(lo, hi, BLOCK):
        slots = start + tl.arange(0, BLOCK)
        in_range = slots < hi
        kpos = tl.load(kpos_ptr + b * stride_pb + slots, mask=in_range, other=-1)
        visible = in_range & (kpos >= 0) & (kpos <= qpos)
        if HAS_WINDOW:
            visible = visible & (kpos > qpos - window)
        tile = in_range[:, None] & dim_ok[None, :]
        k = tl.load(k_base + slots[:, None] * stride_ks + dims[None, :], mask=tile, other=0.0).to(tl.float32)
        v = tl.load(v_base + slots[:, None] * stride_vs + dims[None, :], mask=tile, other=0.0).to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        s = tl.where(visible[None, :], s * scale, -1.0e30)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.where(visible[None, :], tl.exp(s - m_new[:, None]), 0.0)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        pv = tl.dot(p, v, input_precision=PRECISION)
        acc = acc * alpha[:, None] + pv
        m_i = m_new

    seen = l_i > 0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, m_i + tl.log(tl.where(seen, l_i, 1.0)), float("-inf"))
    tl.store(
        out_ptr + b * stride_ob + heads[:, None] * stride_oh + split * stride_osplit + dims[None, :],
        out,
        mask=row_ok[:, None] & dim_ok[None, :],
    )
    tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=row_ok)


def default_splits(batch: int, kv_heads: int, slots: int, device: torch.device) -> int:
    """Splits of the slots so that about two programs run per streaming multiprocessor (1 off CUDA)."""
    if device.type != "cuda":
        return 1
    programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(math.ceil(programs / (batch * kv_heads)), math.ceil(slots / (4 * BLOCK_S))))


def decode_attention_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    key_positions: torch.Tensor,
    query_positions: torch.Tensor,
    *,
    window: int | None,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    """The Triton kernel; ``num_splits`` (default: enough programs to fill the GPU) cuts the slots into that many
    chunks, whose partial outputs are merged here by their log-sum-exp."""
    group = _check(q, k_cache, v_cache, key_positions)
    b, hq, d = q.shape
    hkv, s = k_cache.shape[1], k_cache.shape[2]
    q, k_cache, v_cache = (t.contiguous() if t.stride(-1) != 1 else t for t in (q, k_cache, v_cache))
    key_positions = key_positions.to(torch.int64).contiguous()
    query_positions = query_positions.to(torch.int64).contiguous()
    splits = num_splits or default_splits(b, hkv, s, q.device)
    slots_per_split = triton.cdiv(triton.cdiv(s, splits), BLOCK_S) * BLOCK_S
    splits = max(1, triton.cdiv(s, slots_per_split))
    partial = torch.empty(b, hq, splits, d, device=q.device, dtype=torch.float32)
    lse = torch.empty(b, hq, splits, device=q.device, dtype=torch.float32)
    _decode_attention_kernel[(b * hkv, splits)](
        q,
        k_cache,
        v_cache,
        key_positions,
        query_positions,
        partial,
        lse,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        v_cache.stride(0),
        v_cache.stride(1),
        v_cache.stride(2),
        key_positions.stride(0),
        partial.stride(0),
        partial.stride(1),
        partial.stride(2),
        lse.stride(0),
        lse.stride(1),
        hkv,
        s,
        slots_per_split,
        window if window is not None else 0,
        float(scale),
        GROUP=group,
        HEAD_DIM=d,
        GROUP_PAD=max(MIN_GROUP, triton.next_power_of_2(group)),
        BLOCK_D=max(16, triton.next_power_of_2(d)),
        BLOCK=BLOCK_S,
        HAS_WINDOW=window is not None,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    if splits == 1:
        return partial[:, :, 0].to(q.dtype)
    weights = torch.softmax(lse, dim=-1).nan_to_num(0.0)  # a head that saw nothing in any split: all -inf
    return (weights[..., None] * partial).sum(dim=2).to(q.dtype)


def use_triton(t: torch.Tensor) -> bool:
    return t.is_cuda or os.environ.get("KEXAONE_KERNELS") == "triton"


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    key_positions: torch.Tensor,
    query_positions: torch.Tensor,
    *,
    window: int | None,
    scale: float,
) -> torch.Tensor:
    """The kernel on CUDA (or with ``KEXAONE_KERNELS=triton``), the torch reference otherwise."""
    fn = decode_attention_triton if use_triton(q) else decode_attention_reference
    return fn(q, k_cache, v_cache, key_positions, query_positions, window=window, scale=scale)


__all__ = [
    "decode_attention",
    "decode_attention_reference",
    "decode_attention_triton",
    "default_splits",
    "visible_keys",
]
