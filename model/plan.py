"""What a preset costs, by arithmetic only (no torch, no Megatron): parameters, FLOPs, KV cache.

``kexaone plan`` prints ``plan(preset)``. The parameter inventory below lists every tensor the Megatron
model built by ``model.architecture.build_model`` holds; for ``tiny`` a test checks it against the
instantiated model tensor by tensor, and for ``k-exaone-236b`` it reproduces the released checkpoint's
inventory (237,099,669,632) exactly.

Accounting (H hidden, V padded vocab, L layers, n/g query/KV heads, d head dim, F dense FFN,
E experts, f expert FFN, s shared-expert FFN, all linears bias-free, all MLPs SwiGLU = 3 matrices):

* embedding V*H; output head V*H (untied, so counted separately);
* every layer: input RMSNorm H, QKV H*(n+2g)*d, output projection n*d*H, QK RMSNorm 2*d (one per-head
  weight each for q and k), pre-MLP RMSNorm H;
* dense layer MLP 3*H*F; MoE layer: router E*H, E routed experts 3*H*f each, shared expert 3*H*s, and the
  expert bias: E floats per MoE layer;
* final RMSNorm H;
* MTP block, per depth: enorm H + hnorm H + eh_proj 2H*H + one *dense* transformer layer + its final
  RMSNorm H. It shares the embedding and the output head with the main model, so those are not repeated.

The expert bias is a persistent buffer in Megatron (updated by the load balancer, not by the optimizer).
``params_total`` counts it, like the released checkpoint's inventory does; ``params_trainable`` does not,
and equals ``sum(p.numel() for p in model.parameters())``.

``params_active`` is what one token of the main model computes with: every attention / norm / router /
shared-expert / dense weight, top-k of the routed experts, and the output head. The input embedding is a
row lookup (no FLOPs) and is left out, so ``pretrain_flops = 6 * params_active * total_tokens`` is the
usual 6N estimate; ``params_active_with_embedding`` adds the looked-up table back. The MTP block is not
active at inference (report §4.1: MTP disabled) and is reported on its own as ``params_mtp``.

KV cache (bf16): one token in one layer stores K and V, 2 * g * d values of 2 bytes. A global layer keeps
every token of the sequence; a sliding-window layer at most ``sliding_window`` tokens.
"""

from __future__ import annotations

from typing import Any

from config import ModelArgs, Preset

KV_CACHE_SEQ_LENGTH = 262_144  # the report's maximum context (256K)
BF16_BYTES = 2
GIB = 1 << 30


def _attention(m: ModelArgs) -> int:
    qkv = m.hidden_size * (m.num_attention_heads + 2 * m.num_query_groups) * m.kv_channels
    proj = m.num_attention_heads * m.kv_channels * m.hidden_size
    qk_norm = 2 * m.kv_channels if m.qk_layernorm else 0
    return qkv + proj + qk_norm


def _swiglu(hidden: int, ffn: int) -> int:
    return 3 * hidden * ffn


def _dense_layer(m: ModelArgs) -> int:
    """Norms + attention + dense MLP of one dense transformer layer."""
    return 2 * m.hidden_size + _attention(m) + _swiglu(m.hidden_size, m.ffn_hidden_size)


def parameter_breakdown(m: ModelArgs) -> dict[str, int]:
    """Every tensor of the model, grouped; the values sum to params_total."""
    H, L = m.hidden_size, m.num_layers
    n_moe = L - m.num_dense_layers
    mtp_depth = 2 * H + 2 * H * H + _dense_layer(m) + H
    return {
        "embedding": m.padded_vocab_size * H,
        "output_layer": m.padded_vocab_size * H if m.untie_embeddings_and_output_weights else 0,
        "attention": L * _attention(m),
        "layer_norms": L * 2 * H + H,  # input + pre-MLP per layer, final norm
        "dense_mlp": m.num_dense_layers * _swiglu(H, m.ffn_hidden_size),
        "router": n_moe * m.num_moe_experts * H,
        "expert_bias": n_moe * m.num_moe_experts if m.moe_router_enable_expert_bias else 0,
        "routed_experts": n_moe * m.num_moe_experts * _swiglu(H, m.moe_ffn_hidden_size),
        "shared_experts": n_moe * _swiglu(H, m.moe_shared_expert_intermediate_size),
        "mtp": m.mtp_num_layers * mtp_depth,
    }


def active_parameters(m: ModelArgs) -> int:
    """Parameters one token of the main model multiplies with (no embedding lookup, no MTP)."""
    b = parameter_breakdown(m)
    routed_per_layer = m.moe_router_topk * _swiglu(m.hidden_size, m.moe_ffn_hidden_size)
    return (
        (b["output_layer"] if m.untie_embeddings_and_output_weights else b["embedding"])
        + b["attention"]
        + b["layer_norms"]
        + b["dense_mlp"]
        + b["router"]
        + b["shared_experts"]
        + (m.num_layers - m.num_dense_layers) * routed_per_layer
    )


def mean_keys_per_query(seq_length: int, window: int | None) -> float:
    """Keys a causal query attends to, averaged over the sequence (window = None: global)."""
    w = seq_length if window is None else min(window, seq_length)
    # queries 0..w-1 see 1..w keys; the remaining seq - w queries see w each
    return (w * (w + 1) / 2 + (seq_length - w) * w) / seq_length


def layer_forward_flops_per_token(m: ModelArgs, layer: int, seq_length: int) -> float:
    """Matmul FLOPs of one token through decoder layer ``layer`` (0-indexed) in the forward pass.

    Projections and MLP at 2 FLOPs per weight (top-k routed experts + shared expert + router for an MoE
    layer); attention scores and the weighted sum at 2 * 2 * heads * head_dim per attended key, with a
    sliding-window layer attending at most ``sliding_window`` keys. Training is 3x this.
    """
    window = None if layer in m.global_layers else m.sliding_window
    weights = _attention(m) - (2 * m.kv_channels if m.qk_layernorm else 0)
    if layer < m.num_dense_layers:
        weights += _swiglu(m.hidden_size, m.ffn_hidden_size)
    else:
        weights += (
            m.moe_router_topk * _swiglu(m.hidden_size, m.moe_ffn_hidden_size)
            + _swiglu(m.hidden_size, m.moe_shared_expert_intermediate_size)
            + m.num_moe_experts * m.hidden_size
        )
    core = 4 * m.num_attention_heads * m.kv_channels * mean_keys_per_query(seq_length, window)
    return 2 * weights + core


def kv_cache_bytes(m: ModelArgs, seq_length: int, *, all_global: bool = False) -> int:
    """bf16 KV cache of one sequence of ``seq_length`` tokens over the main stack."""
    per_token_layer = 2 * m.num_query_groups * m.kv_channels * BF16_BYTES
    n_global = m.num_layers if all_global else len(m.global_layers)
    n_swa = m.num_layers - n_global
    return per_token_layer * (n_global * seq_length + n_swa * min(seq_length, m.sliding_window))


def plan(preset: Preset) -> dict[str, Any]:
    """The figures ``kexaone plan`` prints."""
    m = preset.model
    breakdown = parameter_breakdown(m)
    total = sum(breakdown.values())
    active = active_parameters(m)
    eval_len = preset.eval.kv_cache_eval_seq_length
    kv = kv_cache_bytes(m, KV_CACHE_SEQ_LENGTH)
    kv_all = kv_cache_bytes(m, KV_CACHE_SEQ_LENGTH, all_global=True)
    return {
        "preset": preset.name,
        "params_total": total,
        "params_trainable": total - breakdown["expert_bias"],
        "params_active": active,
        "params_active_with_embedding": active + breakdown["embedding"],
        "params_mtp": breakdown["mtp"],
        "params_breakdown": breakdown,
        "pretrain_tokens": preset.pretrain.total_tokens,
        "pretrain_flops": 6 * active * preset.pretrain.total_tokens,
        "global_layers": list(m.global_layers),
        "sliding_window": m.sliding_window,
        "kv_cache_seq_length": KV_CACHE_SEQ_LENGTH,
        "kv_cache_bytes_256k": kv,
        "kv_cache_bytes_256k_all_global": kv_all,
        "kv_cache_gib_256k": kv / GIB,
        "kv_cache_gib_256k_all_global": kv_all / GIB,
        "kv_cache_eval_seq_length": eval_len,
        "kv_cache_bytes_eval": kv_cache_bytes(m, eval_len),
    }


def _count(n: float) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def format_plan(p: dict[str, Any]) -> str:
    """A short human-readable summary of ``plan()``."""
    lines = [
        f"preset {p['preset']}",
        f"parameters: {p['params_total']:,} total ({_count(p['params_total'])}, incl. MTP "
        f"{_count(p['params_mtp'])}), {_count(p['params_active'])} active per token",
        f"pre-training: {p['pretrain_tokens']:.3g} tokens -> {p['pretrain_flops']:.3g} FLOPs (6 x active x tokens)",
        f"KV cache at {p['kv_cache_seq_length']:,} tokens (bf16): {p['kv_cache_gib_256k']:.2f} GiB hybrid, "
        f"{p['kv_cache_gib_256k_all_global']:.2f} GiB if every layer were global "
        f"(global layers {p['global_layers']}, window {p['sliding_window']})",
    ]
    return "\n".join(lines)


__all__ = [
    "KV_CACHE_SEQ_LENGTH",
    "active_parameters",
    "format_plan",
    "kv_cache_bytes",
    "layer_forward_flops_per_token",
    "mean_keys_per_query",
    "parameter_breakdown",
    "plan",
]
