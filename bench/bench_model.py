"""Model throughput: ``python -m bench.bench_model``  (a measurement, not a test)

* CPU: forward+backward tokens/s of the whole tiny model (one global batch of the preset, and the same
  token count at each context-extension length, at least one sequence), median of several repeats, with
  this project's CPU core attention and with Megatron's own ``DotProductAttention`` side by side.
* One decoder layer through the same code path the GPU row uses: the tiny preset's MoE layer on CPU,
  tokens/s and model-FLOPs utilisation against a matmul rate measured on the spot.
* GPU (only when CUDA and TransformerEngine are present): one full-width K-EXAONE MoE layer (hidden 6144,
  128 experts top-8 + shared, sliding window) in bf16 on TransformerEngine modules: tokens/s and MFU
  against a measured bf16 matmul rate. Without a GPU it prints why and skips it.

Writes the table into docs/benchmarks.md (section ``model``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import sys
import time
from typing import Callable

import torch

from bench.report import markdown_table, write_section
from config import get_preset
from model.plan import layer_forward_flops_per_token

REPEATS = 11
WARMUP = 2


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timings(fn: Callable[[], None], device: str, repeats: int = REPEATS, warmup: int = WARMUP) -> tuple[float, float]:
    """(median, fastest) seconds of ``repeats`` calls after ``warmup`` calls. On a shared CPU the fastest
    is the least disturbed run; the median is the headline."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def matmul_flops_per_second(device: str, dtype: torch.dtype, n: int) -> float:
    """Measured dense matmul rate (the MFU denominator): median of n x n x n products."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timings(lambda: torch.matmul(a, b), device)[1]


@contextlib.contextmanager
def megatron_core_attention():
    """Build CPU models with Megatron's own local ``DotProductAttention`` (the reference) instead of
    ``model.attention.CpuCoreAttention``, for a side-by-side row."""
    from model import architecture

    cpu = architecture.BACKENDS["cpu"]
    architecture.BACKENDS["cpu"] = dataclasses.replace(cpu, core_attention=None)
    try:
        yield
    finally:
        architecture.BACKENDS["cpu"] = cpu


def tiny_model_rows() -> list[list]:
    """fwd+bwd of the whole tiny model at the pre-training length and both context lengths (same tokens per
    step where the length allows), with this project's CPU core attention and with Megatron's, side by side."""
    from model.architecture import build_model

    preset = get_preset("tiny")
    tokens_per_step = preset.pretrain.global_batch_size * preset.pretrain.seq_length
    models = {"CpuCoreAttention": build_model(preset)}
    with megatron_core_attention():
        models["Megatron DotProductAttention"] = build_model(preset)
    rows = []
    lengths = (preset.pretrain.seq_length, *(c.seq_length for c in preset.context.stages.values()))
    for seq in lengths:
        batch_size = max(1, tokens_per_step // seq)
        tokens = torch.randint(
            0, preset.tokenizer.vocab_size, (batch_size, seq + 1), generator=torch.Generator().manual_seed(0)
        )
        medians = {}
        for name, model in models.items():
            model.train()
            medians[name] = _model_row(rows, name, model, tokens, batch_size, seq)
        ratio = medians["Megatron DotProductAttention"] / medians["CpuCoreAttention"]
        rows[-1][-1] = rows[-2][-1] = f"{ratio:.2f}x"
    return rows


def _model_row(rows: list, name: str, model, tokens, batch_size: int, seq: int) -> float:
    from model import training

    batch = training.batch_from_tokens(tokens)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = model(batch["input_ids"], batch["position_ids"], None, labels=batch["labels"])
        loss.mean().backward()

    seconds, fastest = timings(step, "cpu", repeats=5 if seq > 1024 else REPEATS)
    rows.append(
        [
            f"tiny model fwd+bwd (incl. MTP), {batch_size} x {seq}, {name}",
            "cpu",
            "fp32",
            batch_size * seq,
            seconds * 1e3,
            fastest * 1e3,
            batch_size * seq / seconds,
            "-",
            "-",
        ]
    )
    return seconds


def layer_row(
    preset_name: str, backend: str, device: str, dtype: torch.dtype, seq: int, batch: int, peak: float
) -> list:
    """fwd+bwd of the first MoE decoder layer (sliding window + RoPE, MoE) of the preset, built from its ModuleSpec."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from megatron.core.transformer.spec_utils import build_module

    from model import parallel
    from model.architecture import decoder_block_spec, select_backend, transformer_config

    preset = get_preset(preset_name)
    m = preset.model
    chosen = select_backend(backend)
    config = transformer_config(preset, backend=backend, fp8=False)
    parallel.initialize(seed=preset.pretrain.seed)
    layer_index = m.num_dense_layers  # the first MoE layer; a sliding-window layer with RoPE
    layer = build_module(
        decoder_block_spec(config, chosen).layer_specs[layer_index], config=config, layer_number=layer_index + 1
    ).to(device)
    layer.train()
    rope = RotaryEmbedding(
        kv_channels=m.kv_channels,
        rotary_percent=1.0,
        rotary_base=int(m.rope_theta),
        use_cpu_initialization=device == "cpu",
    )(seq).to(device)
    hidden = torch.randn(seq, batch, m.hidden_size, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn_like(hidden)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        out, _ = layer(hidden, attention_mask=None, rotary_pos_emb=rope)
        out.backward(grad)

    seconds, fastest = timings(step, device)
    tokens = seq * batch
    flops = 3 * layer_forward_flops_per_token(m, layer_index, seq) * tokens
    what = (
        f"{preset_name} layer {layer_index} (SWA {m.sliding_window}, {m.num_moe_experts} experts top-"
        f"{m.moe_router_topk}, hidden {m.hidden_size}), {batch} x {seq}"
    )
    short = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    return [
        what,
        device,
        short,
        tokens,
        seconds * 1e3,
        fastest * 1e3,
        tokens / seconds,
        f"{100 * flops / seconds / peak:.1f} %",
        "-",
    ]


def main() -> int:
    torch.manual_seed(0)
    load = os.getloadavg()[0]  # a shared CPU skews every row; say how busy it was
    rows = tiny_model_rows()
    cpu_peak = matmul_flops_per_second("cpu", torch.float32, 1024)
    rows.append(layer_row("tiny", "cpu", "cpu", torch.float32, seq=512, batch=2, peak=cpu_peak))
    notes = [
        f"CPU fp32 matmul (1024^3, fastest of {REPEATS}): {cpu_peak / 1e9:.1f} GFLOP/s; 1-minute load average "
        f"at the start: {load:.1f} on {os.cpu_count()} cores."
    ]
    from model.architecture import have_transformer_engine

    if torch.cuda.is_available() and have_transformer_engine():
        gpu_peak = matmul_flops_per_second("cuda", torch.bfloat16, 8192)
        rows.append(layer_row("k-exaone-236b", "gpu", "cuda", torch.bfloat16, seq=4096, batch=1, peak=gpu_peak))
        notes.append(f"GPU bf16 matmul (8192^3, fastest of {REPEATS}): {gpu_peak / 1e12:.0f} TFLOP/s.")
    else:
        why = "no CUDA device" if not torch.cuda.is_available() else "TransformerEngine is not installed"
        note = (
            f"GPU row skipped: {why} on this machine (it measures one full-width K-EXAONE MoE layer, "
            "hidden 6144, 128 experts, in bf16 on TransformerEngine)."
        )
        print(note, file=sys.stderr)
        notes.append(note)
    notes.append(
        "MFU = 3 x forward matmul FLOPs of the layer (top-k experts, shared expert, router, projections, "
        "attention over the window) per second / the measured matmul rate."
    )
    notes.append(
        "Speed-up = Megatron's DotProductAttention (an s x s score matrix and mask in every layer) over "
        "model.attention.CpuCoreAttention (window layers in 128-query chunks, global layers through fused "
        "causal SDPA), measured side by side in this run on the same weights' shapes and tokens."
    )
    table = markdown_table(
        [
            "what",
            "device",
            "dtype",
            "tokens/step",
            "median ms/step",
            "fastest ms/step",
            "tokens/s (median)",
            "MFU (median, vs measured matmul)",
            "speed-up",
        ],
        rows,
    )
    write_section(
        "model",
        "Model: tiny forward+backward on CPU",
        "python -m bench.bench_model",
        table + "\n\n" + "\n".join(f"- {n}" for n in notes),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
