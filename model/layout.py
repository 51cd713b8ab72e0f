"""Which parallel layouts a training stage fits in, by arithmetic only (no torch): per-GPU memory of a
TP / PP / EP / CP / DP layout, and a one-line reason for each layout that cannot run.

``kexaone plan --layout`` prints ``layout_report``; validation refuses a preset whose own layout does not fit
(``layout_problems``). Numbers are bytes per GPU of the most loaded pipeline stage.

Layout (Megatron-Core's): ``world = TP x PP x CP x DP``. Attention, the dense layers, the shared experts, the
router and the MTP block are split over TP (norms replicated); the routed experts are split over EP with
``expert_tensor_parallel_size = 1`` (whole experts per rank, Megatron-Bridge's MoE recipes), so EP must divide
``TP x CP x DP`` (the expert-data-parallel size is ``TP x CP x DP / EP``). Layers are split evenly over PP; the
first stage holds the embedding, the last the output layer and the MTP block.

Per parameter (bf16 mixed precision as Megatron trains it): bf16 weight 2 B + fp32 main gradient 4 B + fp32
master weight 4 B + optimizer state: AdamW 8 B (m, v) for the embedding, output layer and norms, Muon 4 B
(momentum) for every other matrix (``model.training``'s split). With ``distributed_optimizer`` (ZeRO-1) the
master weights and optimizer states are sharded over the data-parallel ranks (the expert-data-parallel ranks
for routed experts); this project's trainer does not shard them yet, so the default is off.

Activations, bf16, per token per layer on one GPU, with sequence parallelism over TP (t) and the sequence
split over CP (Korthikanti et al. 2022, flash attention: no score matrix is stored), h hidden, q = heads x d,
kv = groups x d, F dense FFN, k top-k, f expert FFN, s shared FFN, E experts:

* attention: norm input 2h, QKV input 2h, q/k/v 2(q + 2kv), attention output 2q, pre-MLP residual 2h
  = 6h + 4q + 4kv bytes;
* dense MLP: input 2h, fc1 output 4F, SwiGLU output 2F = 2h + 6F;
* MoE MLP: input 2h, router logits fp32 4E, the k dispatched copies 2kh, expert fc1 / SwiGLU 6kf, shared
  expert 6s = 2h + 4E + 2kh + 6kf + 6s;
* all of it divided by t; the last stage adds fp32 logits of the output layer and the MTP head, 4V/t each.
* ``recompute="full"`` keeps only each layer's input (2h/t) and one layer's full activations at a time.

A 1F1B pipeline keeps ``min(PP, microbatches)`` microbatches in flight on its first stage (the most loaded).
``RESERVED_BYTES`` per GPU is left for the CUDA context, NCCL buffers and allocator fragmentation.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from config import ModelArgs, Preset
from model.plan import parameter_breakdown

GB = 1e9
GIB = 1 << 30
BF16 = 2
RESERVED_BYTES = 8 * GIB  # choice: CUDA context, NCCL buffers, fragmentation


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    bf16_tflops: float  # dense peak
    fp8_tflops: float


GPUS = {  # vendor data sheets (SXM, dense)
    "h200": GPU("NVIDIA H200 SXM", 141 * 10**9, 989.0, 1979.0),
    "h100": GPU("NVIDIA H100 SXM", 80 * 10**9, 989.0, 1979.0),
    "b200": GPU("NVIDIA B200", 180 * 10**9, 2250.0, 4500.0),
}


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    ep: int
    cp: int
    dp: int

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    @property
    def expert_dp(self) -> int:
        return self.tp * self.cp * self.dp // self.ep

    def __str__(self) -> str:
        return f"TP{self.tp} PP{self.pp} EP{self.ep} CP{self.cp} DP{self.dp}"


# choice: room for a policy stage's prompt (the RL families' prompts are short) on top of its response
POLICY_PROMPT_TOKENS = 2048


@dataclass(frozen=True)
class Workload:
    """What one training stage asks of a layout."""

    name: str
    seq_length: int
    global_batch_size: int  # sequences per optimizer step
    micro_batch_size: int
    recompute: str  # "none" or "full"
    distributed_optimizer: bool = False
    optimizer: str = "muon"  # "muon": Muon matrices + AdamW rest (pre-training, SFT); "adamw": AdamW on all


def problems(m: ModelArgs, layout: Layout, w: Workload) -> list[str]:
    """Why a layout cannot run this model and workload at all (before any memory is counted)."""
    out = []
    if min(layout.tp, layout.pp, layout.ep, layout.cp, layout.dp) < 1:
        return ["every parallel size must be >= 1"]
    if m.num_query_groups % layout.tp:
        out.append(f"TP{layout.tp} does not divide the {m.num_query_groups} KV heads")
    if m.num_layers % layout.pp:
        out.append(f"PP{layout.pp} does not divide the {m.num_layers} layers")
    if m.num_moe_experts % layout.ep:
        out.append(f"EP{layout.ep} does not divide the {m.num_moe_experts} experts")
    if (layout.tp * layout.cp * layout.dp) % layout.ep:
        out.append(f"EP{layout.ep} does not divide TP x CP x DP = {layout.tp * layout.cp * layout.dp} (whole experts)")
    if w.seq_length % (2 * layout.cp) and layout.cp > 1:
        out.append(f"CP{layout.cp} needs the sequence ({w.seq_length}) divisible by 2 x CP (load-balanced chunks)")
    if w.global_batch_size % (w.micro_batch_size * layout.dp):
        out.append(
            f"global batch {w.global_batch_size} is not a multiple of micro batch {w.micro_batch_size} x DP{layout.dp}"
        )
    if w.recompute not in ("none", "full"):
        out.append(f"recompute must be 'none' or 'full' (got {w.recompute!r})")
    return out


def _stage_parameters(m: ModelArgs, layout: Layout, stage: int) -> dict[str, float]:
    """Parameters one GPU of pipeline stage ``stage`` holds, by optimizer kind (muon / adamw) and expertness."""
    b = parameter_breakdown(m)
    L, t = m.num_layers, layout.tp
    first, last = stage == 0, stage == layout.pp - 1
    layers = range(stage * L // layout.pp, (stage + 1) * L // layout.pp)
    n_moe = sum(1 for i in layers if i >= m.num_dense_layers)
    n_dense = len(layers) - n_moe
    per_layer_attention = b["attention"] / L
    norms = 2 * m.hidden_size * len(layers) + (m.hidden_size if last else 0)
    mtp = b["mtp"] if last else 0
    dense_mlp = n_dense * b["dense_mlp"] / max(1, m.num_dense_layers)
    moe_layers = max(1, L - m.num_dense_layers)
    return {
        "muon_dense": (
            len(layers) * per_layer_attention
            + dense_mlp
            + n_moe * (b["router"] + b["shared_experts"]) / moe_layers
            + mtp
        )
        / t,
        "muon_expert": n_moe * b["routed_experts"] / moe_layers / layout.ep,
        "adamw": ((b["embedding"] if first else 0) + (b["output_layer"] if last else 0)) / t + norms,
    }


def _activation_bytes_per_token(m: ModelArgs, moe: bool) -> float:
    h, q, kv = m.hidden_size, m.num_attention_heads * m.kv_channels, m.num_query_groups * m.kv_channels
    attention = 6 * h + 4 * q + 4 * kv
    if not moe:
        return attention + 2 * h + 6 * m.ffn_hidden_size
    k, f, s, E = m.moe_router_topk, m.moe_ffn_hidden_size, m.moe_shared_expert_intermediate_size, m.num_moe_experts
    return attention + 2 * h + 4 * E + 2 * k * h + 6 * k * f + 6 * s


def memory(m: ModelArgs, layout: Layout, w: Workload) -> dict[str, Any]:
    """Bytes per GPU on the most loaded pipeline stage: weights, gradients, optimizer, activations, total."""
    microbatches = w.global_batch_size // (w.micro_batch_size * layout.dp)
    tokens = w.micro_batch_size * w.seq_length / layout.cp  # of one microbatch on one GPU (before SP over TP)
    t = layout.tp
    best: dict[str, Any] | None = None
    for stage in range(layout.pp):
        params = _stage_parameters(m, layout, stage)
        n_params = sum(params.values())
        weights = BF16 * n_params
        grads = 4 * n_params
        dense_shard = layout.dp * layout.cp if w.distributed_optimizer else 1
        expert_shard = layout.expert_dp if w.distributed_optimizer else 1
        matrix_state = 4 + (4 if w.optimizer == "muon" else 8)  # fp32 master + Muon momentum or AdamW m, v
        optimizer = (
            matrix_state * params["muon_dense"] / dense_shard
            + matrix_state * params["muon_expert"] / expert_shard
            + (4 + 8) * params["adamw"] / dense_shard
        )
        L = m.num_layers
        layers = range(stage * L // layout.pp, (stage + 1) * L // layout.pp)
        per_layer = [_activation_bytes_per_token(m, moe=i >= m.num_dense_layers) for i in layers]
        if stage == layout.pp - 1:  # the MTP block's dense layer runs on the last stage
            per_layer += [_activation_bytes_per_token(m, moe=False)] * m.mtp_num_layers
        if w.recompute == "full":
            per_token = BF16 * m.hidden_size * len(per_layer) + max(per_layer)
        else:
            per_token = sum(per_layer)
        if stage == layout.pp - 1:
            per_token += 4 * m.padded_vocab_size * (1 + m.mtp_num_layers)
        in_flight = min(layout.pp - stage, microbatches)
        activations = per_token / t * tokens * in_flight
        total = weights + grads + optimizer + activations
        row = {
            "stage": stage,
            "params": n_params,
            "weights": weights,
            "grads": grads,
            "optimizer": optimizer,
            "activations": activations,
            "microbatches_in_flight": in_flight,
            "total": total,
        }
        if best is None or total > best["total"]:
            best = row
    assert best is not None
    return best


def fits(m: ModelArgs, layout: Layout, w: Workload, gpu: GPU) -> tuple[bool, str]:
    """(fits, one line): the reason it cannot run, or its per-GPU total against the GPU's memory."""
    if reasons := problems(m, layout, w):
        return False, "; ".join(reasons)
    mem = memory(m, layout, w)
    budget = gpu.memory_bytes - RESERVED_BYTES
    line = (
        f"{mem['total'] / GB:.1f} GB per GPU (weights {mem['weights'] / GB:.1f}, grads {mem['grads'] / GB:.1f}, "
        f"optimizer {mem['optimizer'] / GB:.1f}, activations {mem['activations'] / GB:.1f}) of "
        f"{budget / GB:.1f} GB usable on {gpu.name}"
    )
    if mem["total"] > budget:
        return False, "needs " + line
    return True, line


def candidates(m: ModelArgs, world: int, w: Workload, *, cp: int = 1) -> list[Layout]:
    """Every layout of ``world`` GPUs with power-of-two TP <= 8 (one node), PP, EP and the stage's CP."""
    out = []
    for tp, pp, ep in itertools.product((1, 2, 4, 8), (1, 2, 4, 8, 16), (1, 2, 4, 8, 16, 32, 64)):
        if world % (tp * pp * cp):
            continue
        layout = Layout(tp=tp, pp=pp, ep=ep, cp=cp, dp=world // (tp * pp * cp))
        if ep <= layout.tp * layout.cp * layout.dp:
            out.append(layout)
    return out


def stage_workloads(preset: Preset) -> dict[str, tuple[Workload, int]]:
    """Every training stage of the preset with its sequence and batch (``model.stages``): (workload, CP)."""
    from model.stages import SFT_STAGE, stage_plan

    c = preset.compute
    common = dict(micro_batch_size=c.micro_batch_size, recompute=c.recompute)
    stages = {"pretraining": ("stage1", 1), SFT_STAGE: (SFT_STAGE, c.sft_context_parallel)}
    for name, cs in preset.context.stages.items():
        stages[f"context_{name}"] = (f"context_{name}", cs.context_parallel)
    out = {}
    for name, (stage, cp) in sorted(stages.items(), key=lambda kv: kv[0] != "pretraining"):
        plan = stage_plan(preset, stage)
        out[name] = (Workload(name, plan.seq_length, plan.global_batch_size, **common), cp)
    # the policy stages (posttrain.policy_train: AdamW, no context parallelism): one update's sequences are a round's
    # responses over its optimizer steps, each a prompt plus up to max_response_tokens; their rollout decoding's
    # KV cache is not counted here (``kexaone plan`` gives KV-cache bytes)
    for name, opt in (("rl", preset.posttrain.rl), ("preference", preset.posttrain.preference)):
        batch = max(1, opt.prompts_per_step * opt.group_size // opt.optimizer_steps_per_batch)
        seq = opt.max_response_tokens + POLICY_PROMPT_TOKENS
        out[name] = (Workload(name, seq, batch, **common, optimizer="adamw"), 1)  # policy_train: AdamW
    return out


POLICY_STAGES = ("rl", "preference")


def preset_layout(preset: Preset, cp: int, stage: str = "pretraining") -> Layout:
    """The preset's layout of a stage: ``compute``'s TP / PP / EP, or for a policy stage (no pipeline schedule)
    ``compute.policy_tensor_parallel`` / ``policy_expert_parallel`` with PP 1."""
    c = preset.compute
    world = c.gpus_per_training_step * c.nodes_per_training_step
    if stage in POLICY_STAGES:
        tp, pp, ep = c.policy_tensor_parallel, 1, c.policy_expert_parallel
    else:
        tp, pp, ep = c.tensor_parallel, c.pipeline_parallel, c.expert_parallel
    return Layout(tp=tp, pp=pp, ep=ep, cp=cp, dp=max(1, world // (tp * pp * cp)))


def layout_problems(preset: Preset) -> list[str]:
    """The preset's own layout for each training stage: a one-line problem per stage that cannot run or fit."""
    c = preset.compute
    if c.gpus_per_training_step == 0:  # CPU preset: one process per stage, nothing to place on GPUs
        return []
    gpu = GPUS.get(c.gpu_type)
    if gpu is None:
        return [f"compute.gpu_type {c.gpu_type!r} is not one of {', '.join(GPUS)}"]
    world = c.gpus_per_training_step * c.nodes_per_training_step
    out = []
    for name, (w, cp) in stage_workloads(preset).items():
        layout = preset_layout(preset, cp, name)
        if layout.world != world:
            out.append(f"{name}: {layout} is {layout.world} GPUs, the stage has {world}")
            continue
        ok, line = fits(preset.model, layout, w, gpu)
        if not ok:
            out.append(f"{name} ({layout}, {w.seq_length} tokens): {line}")
    return out


def layout_report(preset: Preset, *, gpu_type: str | None = None, world: int | None = None) -> dict[str, Any]:
    """For every training stage: the preset's layout with its per-GPU memory, and every candidate layout of
    the same world size, fitting or with the reason it does not."""
    c = preset.compute
    gpu = GPUS[gpu_type or c.gpu_type]
    world = world or max(1, c.gpus_per_training_step) * c.nodes_per_training_step
    stages = {}
    for name, (w, cp) in stage_workloads(preset).items():
        rows = []
        for layout in candidates(preset.model, world, w, cp=cp):
            if name in POLICY_STAGES and layout.pp > 1:
                continue  # posttrain.policy_train runs no pipeline schedule
            ok, line = fits(preset.model, layout, w, gpu)
            rows.append({"layout": str(layout), "fits": ok, "why": line})
        chosen = preset_layout(preset, cp, name)
        ok, line = fits(preset.model, chosen, w, gpu) if chosen.world == world else (False, "another world size")
        stages[name] = {
            "seq_length": w.seq_length,
            "preset_layout": str(chosen),
            "preset_layout_fits": ok,
            "preset_layout_memory": line,
            "candidates": rows,
        }
    return {"preset": preset.name, "gpu": gpu.name, "world": world, "stages": stages}


def format_layout_report(r: dict[str, Any], *, all_rows: bool = False) -> str:
    lines = [f"preset {r['preset']} on {r['world']} x {r['gpu']}"]
    for name, s in r["stages"].items():
        mark = "fits" if s["preset_layout_fits"] else "DOES NOT FIT"
        lines.append(f"\n{name} ({s['seq_length']:,} tokens): preset layout {s['preset_layout']} {mark}: ")
        lines[-1] += s["preset_layout_memory"]
        fitting = [c for c in s["candidates"] if c["fits"]]
        lines.append(f"  {len(fitting)} of {len(s['candidates'])} candidate layouts fit")
        for c in s["candidates"] if all_rows else fitting[:8]:
            lines.append(f"  {'ok ' if c['fits'] else 'no '} {c['layout']:<26} {c['why']}")
    return "\n".join(lines)


def with_layout(preset: Preset, **compute: Any) -> Preset:
    """The preset with some ``compute`` fields replaced (what-if plans)."""
    return dataclasses.replace(preset, compute=dataclasses.replace(preset.compute, **compute))


__all__ = [
    "GPU",
    "GPUS",
    "Layout",
    "RESERVED_BYTES",
    "Workload",
    "candidates",
    "fits",
    "format_layout_report",
    "layout_problems",
    "layout_report",
    "memory",
    "POLICY_STAGES",
    "preset_layout",
    "problems",
    "stage_workloads",
    "with_layout",
]
