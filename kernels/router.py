"""The fused sigmoid top-k router (DeepSeek-V3 / K-EXAONE style): a Triton kernel and its torch reference.

What, for router logits ``[T, E]`` (computed in fp32 whatever their dtype):

* ``scores = sigmoid(logits)``;
* the experts are chosen by top-k over ``scores + expert_bias`` (the load-balancing bias steers the choice only);
* the weights are the *unbiased* scores at the chosen experts, divided by their sum (+1e-20) when
  ``normalize`` and ``topk > 1``, then multiplied by ``scaling_factor`` (skipped when it is None or 0);
* returns ``(weights [T, k] fp32, indices [T, k] int64)``, the experts in descending order of biased score.

This is exactly Megatron's ``topk_routing_with_score_function(score_function="sigmoid", expert_bias=...)``
(``megatron/core/transformer/moe/moe_utils.py``, no expert groups), except that Megatron scatters the result into
dense ``[T, E]`` probs/routing map and casts the probs to the logits' dtype.

Why: unfused, the router is five kernels over ``[T, E]`` (sigmoid, add, topk, gather, normalise) each
round-tripping through memory; the kernel reads the logits once and writes only ``[T, k]``.
``sigmoid_router`` picks the kernel on CUDA (or when ``KEXAONE_KERNELS=triton``, which the CPU tests use under
``TRITON_INTERPRET=1``) and the reference otherwise.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

EPSILON = 1e-20  # Megatron's: scores / (scores.sum(-1) + 1e-20)
BLOCK_T = 16  # tokens per program


def sigmoid_router_reference(
    logits: torch.Tensor,
    expert_bias: torch.Tensor | None,
    topk: int,
    scaling_factor: float | None,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch, fp32."""
    scores = torch.sigmoid(logits.float())
    choice = scores if expert_bias is None else scores + expert_bias.float()
    indices = torch.topk(choice, k=topk, dim=-1, sorted=True).indices
    weights = torch.gather(scores, dim=-1, index=indices)
    if normalize and topk > 1:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + EPSILON)
    if scaling_factor:
        weights = weights * scaling_factor
    return weights, indices


@triton.jit
def _sigmoid_router_kernel(
    logits_ptr,
    bias_ptr,
    weights_ptr,
    indices_ptr,
    num_tokens,
    num_experts,
    stride_lt,
    stride_wt,
    stride_it,
    scaling,
    TOPK: tl.constexpr,
    BLOCK_TOKENS: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    NORMALIZE: tl.constexpr,
    SCALE: tl.constexpr,
):
    """One program = BLOCK_TOKENS tokens: sigmoid, then TOPK rounds of argmax over the biased scores (each round
    knocks its winner out), gather of the unbiased scores, normalisation and scaling in registers."""
    tokens = tl.program_id(0) * BLOCK_TOKENS + tl.arange(0, BLOCK_TOKENS)
    experts = tl.arange(0, BLOCK_E)
    token_ok = tokens < num_tokens
    expert_ok = experts < num_experts
    logits = tl.load(
        logits_ptr + tokens[:, None] * stride_lt + experts[None, :],
        mask=token_ok[:, None] & expert_ok[None, :],
        other=0.0,
    ).to(tl.float32)
    scores = tl.sigmoid(logits)
    choice = scores
    if HAS_BIAS:
        choice = choice + tl.load(bias_ptr + experts, mask=expert_ok, other=0.0).to(tl.float32)[None, :]
    choice = tl.where(expert_ok[None, :], choice, float("-inf"))

    ks = tl.arange(0, BLOCK_K)
    weights = tl.zeros([BLOCK_TOKENS, BLOCK_K], tl.float32)
    indices = tl.zeros([BLOCK_TOKENS, BLOCK_K], tl.int64)
    for i in tl.static_range(TOPK):
        best = tl.argmax(choice, axis=1, tie_break_left=True)
        hit = experts[None, :] == best[:, None]
        picked = tl.sum(tl.where(hit, scores, 0.0), axis=1)
        weights = tl.where(ks[None, :] == i, picked[:, None], weights)
        indices = tl.where(ks[None, :] == i, best[:, None].to(tl.int64), indices)
        choice = tl.where(hit, float("-inf"), choice)

    if NORMALIZE:
        weights = weights / (tl.sum(weights, axis=1)[:, None] + 1e-20)  # padded k columns hold 0
    if SCALE:
        weights = weights * scaling
    out = token_ok[:, None] & (ks[None, :] < TOPK)
    tl.store(weights_ptr + tokens[:, None] * stride_wt + ks[None, :], weights, mask=out)
    tl.store(indices_ptr + tokens[:, None] * stride_it + ks[None, :], indices, mask=out)


def sigmoid_router_triton(
    logits: torch.Tensor,
    expert_bias: torch.Tensor | None,
    topk: int,
    scaling_factor: float | None,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton kernel (E up to a few hundred experts, any k <= E; one program per 16 tokens)."""
    assert logits.dim() == 2, logits.shape
    t, e = logits.shape
    assert 1 <= topk <= e, (topk, e)
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    weights = torch.empty(t, topk, device=logits.device, dtype=torch.float32)
    indices = torch.empty(t, topk, device=logits.device, dtype=torch.int64)
    if t == 0:
        return weights, indices
    bias = expert_bias.float().contiguous() if expert_bias is not None else weights  # unused when HAS_BIAS=False
    _sigmoid_router_kernel[(triton.cdiv(t, BLOCK_T),)](
        logits,
        bias,
        weights,
        indices,
        t,
        e,
        logits.stride(0),
        weights.stride(0),
        indices.stride(0),
        float(scaling_factor or 1.0),
        TOPK=topk,
        BLOCK_TOKENS=BLOCK_T,
        BLOCK_E=triton.next_power_of_2(e),
        BLOCK_K=triton.next_power_of_2(topk),
        HAS_BIAS=expert_bias is not None,
        NORMALIZE=normalize and topk > 1,
        SCALE=bool(scaling_factor),
    )
    return weights, indices


def sigmoid_router(
    logits: torch.Tensor,
    expert_bias: torch.Tensor | None,
    topk: int,
    scaling_factor: float | None,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel on CUDA (or with ``KEXAONE_KERNELS=triton``), the torch reference otherwise."""
    use_triton = logits.is_cuda or os.environ.get("KEXAONE_KERNELS") == "triton"
    fn = sigmoid_router_triton if use_triton else sigmoid_router_reference
    return fn(logits, expert_bias, topk, scaling_factor, normalize)


def to_megatron(weights: torch.Tensor, indices: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, indices) [T, k]`` as Megatron's router returns them: ``(probs [T, E], routing_map [T, E] bool)``."""
    probs = torch.zeros(weights.shape[0], num_experts, dtype=weights.dtype, device=weights.device)
    probs.scatter_(1, indices, weights)
    routing_map = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, indices, True)
    return probs, routing_map


__all__ = ["EPSILON", "sigmoid_router", "sigmoid_router_reference", "sigmoid_router_triton", "to_megatron"]
