"""Core attention for the CPU backend: Megatron's ``DotProductAttention`` maths without its O(s^2) masks.

Why: Megatron's local ``DotProductAttention`` materialises the full ``[b, heads, sq, sk]`` score matrix and an
``sq x sk`` mask for *every* layer, sliding-window layers included. At the tiny preset's 4096-token stage
that is 67M scores per layer, and a window layer only needs 16 of each row's 4096. Here:

* a **sliding-window layer** (``window_size=(w-1, 0)``) runs ``scaled_dot_product_attention`` on chunks
  of ``CHUNK`` queries, each against only the keys from ``w-1`` before its first query to its last one:
  O(sq x (CHUNK + w)) work instead of O(sq x sk);
* a **global layer** runs PyTorch's fused causal ``scaled_dot_product_attention`` (no mask tensor at all);
  one new token against a KV cache (decoding) attends to every cached key, as Megatron does.

Same semantics as ``DotProductAttention`` + ``FusedScaleMaskSoftmax`` (queries aligned to the end of the
keys, window inclusive of the query, GQA, the layer's softmax scale); ``tests/unit/test_model_attention.py``
compares outputs and gradients against Megatron's module. No parameters: checkpoints are unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.utils import is_layer_window_attention

# Query rows per windowed call. 128 was fastest for fwd+bwd on 2 cores at 512 and 4096 tokens, windows 16
# and 64 (against 64-row chunks, one whole-sequence masked call, and a gathered-window einsum).
CHUNK = 128


def windowed_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, left: int, scale: float, chunk: int = CHUNK
) -> torch.Tensor:
    """``q`` [b, h, sq, d], ``k``/``v`` [b, h, sk, d]: query i (at key position sk - sq + i) sees keys
    i - left .. i. Computed ``chunk`` queries at a time against only the keys those queries can see."""
    sq, sk = q.shape[2], k.shape[2]
    offset = sk - sq
    outs = []
    for start in range(0, sq, chunk):
        end = min(sq, start + chunk)
        k_start, k_end = max(0, offset + start - left), offset + end
        q_pos = torch.arange(offset + start, offset + end).unsqueeze(1)
        k_pos = torch.arange(k_start, k_end).unsqueeze(0)
        allowed = (k_pos <= q_pos) & (k_pos >= q_pos - left)
        outs.append(
            F.scaled_dot_product_attention(
                q[:, :, start:end], k[:, :, k_start:k_end], v[:, :, k_start:k_end], attn_mask=allowed, scale=scale
            )
        )
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention with queries aligned to the end of the keys."""
    sq, sk = q.shape[2], k.shape[2]
    if sq == sk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if sq == 1:  # one new token against the cache: every key is in its past
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    allowed = torch.arange(sk).unsqueeze(0) <= torch.arange(sk - sq, sk).unsqueeze(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)


class CpuCoreAttention(DotProductAttention):
    """``DotProductAttention`` with the same constructor and numbers, computed by SDPA (see module doc).
    Anything it does not cover (an explicit mask, attention bias, softmax offsets, dropout, padding masks)
    goes to Megatron's own implementation."""

    def __init__(
        self,
        config,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: Optional[float] = None,
        softmax_scale: Optional[float] = None,
        cp_comm_type: Optional[str] = None,
        pg_collection=None,
    ):
        super().__init__(
            config,
            layer_number,
            attn_mask_type,
            attention_type,
            attention_dropout=attention_dropout,
            softmax_scale=softmax_scale,
            cp_comm_type=cp_comm_type,
            pg_collection=pg_collection,
        )
        windowed = is_layer_window_attention(config.window_size, config.window_attn_skip_freq, layer_number)
        self.window_left: int | None = config.window_size[0] if windowed else None
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        self._fallback = (
            dropout > 0
            or self.softmax_offset is not None
            or config.window_size is not None
            and windowed
            and config.window_size[1] != 0
        )

    def forward(
        self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None, packed_seq_params=None
    ):
        mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type
        if (
            self._fallback
            or attention_mask is not None
            or attention_bias is not None
            or packed_seq_params is not None
            or mask_type != AttnMaskType.causal
        ):
            return super().forward(
                query,
                key,
                value,
                attention_mask,
                attn_mask_type=attn_mask_type,
                attention_bias=attention_bias,
                packed_seq_params=packed_seq_params,
            )
        sq, b, heads, d = query.shape
        groups = heads // key.shape[2]
        # [s, b, n, d] -> [b, n, s, d]; GQA: each key/value head serves `groups` query heads
        q = query.permute(1, 2, 0, 3)
        k = key.permute(1, 2, 0, 3)
        v = value.permute(1, 2, 0, 3)
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if self.window_left is not None:
            out = windowed_attention(q, k, v, self.window_left, self.softmax_scale)
        else:
            out = causal_attention(q, k, v, self.softmax_scale)
        return out.permute(2, 0, 1, 3).reshape(sq, b, heads * d)


def with_core_attention(spec, core_attention: type):
    """A copy of a layer / block / MTP spec whose ``DotProductAttention`` core attention is
    ``core_attention`` (ModuleSpecs are data: only that one field changes)."""
    import dataclasses

    from megatron.core.transformer.spec_utils import ModuleSpec

    if isinstance(spec, ModuleSpec):
        if spec.submodules is None:
            return spec
        return dataclasses.replace(spec, submodules=with_core_attention(spec.submodules, core_attention))
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        changes = {}
        for field in dataclasses.fields(spec):
            value = getattr(spec, field.name)
            if field.name == "core_attention" and value is DotProductAttention:
                changes[field.name] = core_attention
            elif isinstance(value, list):
                changes[field.name] = [with_core_attention(v, core_attention) for v in value]
            elif isinstance(value, ModuleSpec) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
                changes[field.name] = with_core_attention(value, core_attention)
        return dataclasses.replace(spec, **changes) if changes else spec
    return spec


__all__ = ["CHUNK", "CpuCoreAttention", "causal_attention", "windowed_attention", "with_core_attention"]
