"""GPU kernels: ``python -m bench.bench_kernels_gpu``  (a measurement, not a test; needs CUDA)

At the full preset's shapes, each timed three ways in one run, median of ``triton.testing.do_bench``:

* decode attention (Hq=64, Hkv=8, D=128, bf16, one new token per row; batch 1/8/32) over a 128-slot ring buffer
  (window 128, wrapped) and global caches of 4K/32K/128K tokens: the Triton kernel, its torch reference, and
  PyTorch's ``scaled_dot_product_attention`` with the position mask (the GQA group as the query length, so no
  key/value repeat);
* the sigmoid router (E=128, k=8, scaling 2.5, expert bias, fp32 logits; T=4096..65536 tokens): the Triton
  kernel, its torch reference, and Megatron's ``topk_routing_with_score_function``.

Bandwidth = the bytes the operation must move (the KV cache and positions; the logits and the top-k output)
over the time, against the H200's 4.8 TB/s HBM. Each row also checks the kernel against the reference. Without
CUDA it prints one line and writes nothing. Writes docs/benchmarks.md (section ``kernels_gpu``).
"""

from __future__ import annotations

import sys

import torch

from bench.report import markdown_table, write_section
from config import get_preset

PEAK_BYTES_PER_S = 4.8e12  # H200 HBM3e
BATCHES = (1, 8, 32)
CACHES = (("window 128, ring", 128, 128), ("global 4K", 4096, None), ("global 32K", 32768, None))
CACHES += (("global 128K", 131072, None),)
ROUTER_TOKENS = (4096, 16384, 65536)


def median_ms(fn) -> float | str:
    import triton.testing

    try:
        return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return "OOM"


def bandwidth(nbytes: int, ms: float | str) -> str:
    if isinstance(ms, str):
        return ms
    rate = nbytes / (ms * 1e-3)
    return f"{rate / 1e9:.0f} GB/s ({100 * rate / PEAK_BYTES_PER_S:.0f}%)"


def sdpa_decode(q, k_cache, v_cache, key_positions, query_positions, window, scale):
    """The library path: SDPA with a boolean position mask; the G query heads of a KV head are its query rows."""
    from kernels.decode_attention import visible_keys

    b, hq, d = q.shape
    hkv = k_cache.shape[1]
    mask = visible_keys(key_positions, query_positions, window)[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(
        q.view(b, hkv, hq // hkv, d), k_cache, v_cache, attn_mask=mask, scale=scale
    )
    return out.reshape(b, hq, d)


def attention_row(batch: int, label: str, slots: int, window: int | None) -> list:
    from kernels.decode_attention import decode_attention_reference, decode_attention_triton

    m = get_preset("k-exaone-236b").model
    hq, hkv, d = m.num_attention_heads, m.num_query_groups, m.kv_channels
    q = torch.randn(batch, hq, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, hkv, slots, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    qpos_value = 10_000 if window is not None else slots - 1  # the ring has wrapped; the global cache is full
    held = torch.arange(qpos_value - slots + 1, qpos_value + 1, device="cuda")
    kpos = torch.empty(slots, dtype=torch.int64, device="cuda")
    kpos[held % slots] = held
    kpos = kpos.expand(batch, slots).contiguous()
    qpos = torch.full((batch,), qpos_value, dtype=torch.int64, device="cuda")
    args, kw = (q, k, v, kpos, qpos), dict(window=window, scale=d**-0.5)

    kernel = decode_attention_triton(*args, **kw)
    try:
        error = f"{(kernel.float() - decode_attention_reference(*args, **kw).float()).abs().max().item():.1e}"
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        error = "ref OOM"
    nbytes = 2 * k.numel() * k.element_size() + kpos.numel() * 8 + 2 * q.numel() * q.element_size()
    times = [
        median_ms(lambda: decode_attention_triton(*args, **kw)),
        median_ms(lambda: decode_attention_reference(*args, **kw)),
        median_ms(lambda: sdpa_decode(*args, **kw)),
    ]
    return [f"attention {label}", batch, f"{nbytes / 1e6:.1f}", *times, *(bandwidth(nbytes, t) for t in times), error]


def router_row(tokens: int) -> list:
    from megatron.core.transformer.moe.moe_utils import topk_routing_with_score_function

    from kernels.router import sigmoid_router_reference, sigmoid_router_triton, to_megatron

    m = get_preset("k-exaone-236b").model
    experts, topk, scaling = m.num_moe_experts, m.moe_router_topk, m.moe_router_topk_scaling_factor
    logits = torch.randn(tokens, experts, device="cuda")
    bias = torch.randn(experts, device="cuda") * 0.01

    def megatron():
        return topk_routing_with_score_function(
            logits, topk, score_function="sigmoid", expert_bias=bias, scaling_factor=scaling
        )

    weights, indices = sigmoid_router_triton(logits, bias, topk, scaling)
    ref_w, ref_i = sigmoid_router_reference(logits, bias, topk, scaling)
    probs, routing_map = to_megatron(weights, indices, experts)
    meg_probs, meg_map = megatron()
    same = bool(torch.equal(indices, ref_i) and torch.equal(routing_map, meg_map))
    error = f"{max((weights - ref_w).abs().max().item(), (probs - meg_probs).abs().max().item()):.1e}"
    nbytes = logits.numel() * 4 + tokens * topk * (4 + 8)
    times = [
        median_ms(lambda: sigmoid_router_triton(logits, bias, topk, scaling)),
        median_ms(lambda: sigmoid_router_reference(logits, bias, topk, scaling)),
        median_ms(megatron),
    ]
    return [f"router T={tokens}", "-", f"{nbytes / 1e6:.1f}", *times, *(bandwidth(nbytes, t) for t in times)] + [
        f"{error}{'' if same else ', CHOICES DIFFER'}"
    ]


def main() -> int:
    if not torch.cuda.is_available():
        print("bench_kernels_gpu: no CUDA device here; nothing measured (run it on a GPU machine)")
        return 0
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for batch in BATCHES:
            for label, slots, window in CACHES:
                rows.append(attention_row(batch, label, slots, window))
                torch.cuda.empty_cache()
        for tokens in ROUTER_TOKENS:
            rows.append(router_row(tokens))
    columns = ["what", "batch", "MB moved", "kernel ms", "reference ms", "library ms"]
    columns += ["kernel bandwidth", "reference bandwidth", "library bandwidth", "max abs err (kernel vs ref)"]
    notes = [
        "Attention: bf16, Hq=64, Hkv=8, D=128 (full preset); MB moved = K and V caches + positions + q/out. "
        "Library = torch SDPA with the position mask. Router: fp32 logits, E=128, k=8, scaling 2.5, with bias; "
        "library = Megatron's topk_routing_with_score_function (dense [T, E] outputs); MB moved = logits + top-k.",
        "Percentages are of the H200's 4.8 TB/s. The error column also checks the router's choices against "
        "Megatron's routing map.",
    ]
    write_section(
        "kernels_gpu",
        "Kernels: decode attention and sigmoid router on GPU",
        "python -m bench.bench_kernels_gpu",
        markdown_table(columns, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
