"""Presets: the single source of every number in the DAG.

One frozen dataclass tree (`Preset`) holds model shape, tokenizer sizes, data mixture, stage lengths,
evaluation thresholds and compute requests. Two presets ship:

* ``tiny``           — the whole chain for real on a 2-core CPU in minutes;
* ``k-exaone-236b``  — the K-EXAONE technical report's configuration (../shared/reference/k-exaone.md).

Where each number of the full preset comes from is recorded in ``SOURCES`` (a test checks every leaf
has an entry). Assets read a *slice* of the preset (``preset.slice("model", "tokenizer")``) and that
slice is hashed into the artifact version, so changing a number re-versions exactly what reads it.

Selection: run config of the ``preset`` resource, else env var ``KEXAONE_PRESET``, else ``tiny``.
Validation happens before any compute (``Preset.validate``), with one error line listing every problem.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

PRESET_ENV_VAR = "KEXAONE_PRESET"
DEFAULT_PRESET = "tiny"

# The eight raw corpus sources (static partitions downstream): six languages + code + STEM (§3.1).
LANGUAGES = ("en", "ko", "es", "de", "ja", "vi")
CORPUS_DOMAINS = LANGUAGES + ("code", "stem")


class PresetError(ValueError):
    """A preset name or value is wrong. The message is one line that names every problem."""


@dataclass(frozen=True)
class ModelArgs:
    """K-EXAONE block shape, named after the Megatron-Core TransformerConfig fields they become."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int  # head dim; decoupled from hidden/heads (64 x 128 != 6144 in the full model)
    ffn_hidden_size: int  # the dense first layer's FFN
    num_dense_layers: int  # leading dense layers ("for training stability"); the rest are MoE
    num_moe_experts: int
    moe_router_topk: int
    moe_ffn_hidden_size: int
    moe_shared_expert_intermediate_size: int
    moe_router_score_function: str
    moe_router_topk_scaling_factor: float
    moe_router_enable_expert_bias: bool
    moe_router_bias_update_rate: float
    moe_router_load_balancing_type: str
    moe_aux_loss_coeff: float
    moe_expert_capacity_factor: float | None  # None = dropless
    sliding_window: int  # tokens a SWA layer attends to
    global_attn_every: int  # every N-th layer (1-indexed N, 2N, ...) is global ("LLLG")
    rope_theta: float  # RoPE on SWA layers only; global layers are NoPE
    qk_layernorm: bool
    norm_eps: float
    mtp_num_layers: int
    mtp_loss_scaling_factor: float
    untie_embeddings_and_output_weights: bool
    padded_vocab_size: int  # embedding rows; >= tokenizer vocab, a multiple of vocab_pad_multiple
    vocab_pad_multiple: int

    @property
    def global_layers(self) -> tuple[int, ...]:
        """0-indexed global-attention layers: 3, 7, ..., 47 for LLLG over 48 layers."""
        return tuple(i for i in range(self.num_layers) if (i + 1) % self.global_attn_every == 0)


@dataclass(frozen=True)
class TokenizerArgs:
    base_vocab_size: int  # the previous generation BPE the new one inherits from
    vocab_size: int  # the SuperBPE vocabulary before padding
    keep_base_fraction: float  # most frequent share of the base vocabulary kept
    superword_fraction: float  # share of the vocabulary that are superword tokens
    superword_allocation: Mapping[str, int]  # en : ko : other languages
    max_superword_words: int  # stage-2 merges spanning more words are skipped
    normalization: str
    special_tokens: tuple[str, ...]


@dataclass(frozen=True)
class DataArgs:
    languages: tuple[str, ...]
    domains: tuple[str, ...]
    language_score_threshold: Mapping[str, float]
    language_purity_threshold: float
    minhash_threshold: float  # Jaccard similarity above which documents are near-duplicates
    stage_mixtures: Mapping[str, Mapping[str, float]]  # stage -> domain -> weight (sums to 1)


@dataclass(frozen=True)
class PretrainArgs:
    total_tokens: float
    stage_token_fractions: Mapping[str, float]  # stage1/2/3 share of total_tokens
    seq_length: int
    global_batch_size: int
    optimizer: str
    max_lr: float
    min_lr: float
    lr_schedule: str
    warmup_fraction: float
    decay_fraction: float
    weight_decay: float
    grad_clip: float
    fp8: bool
    checkpoint_every_steps: int
    seed: int


@dataclass(frozen=True)
class ContextStageArgs:
    seq_length: int
    tokens: float
    mixture: Mapping[str, float]  # rehearsal / synthetic_reasoning / long_documents


@dataclass(frozen=True)
class ContextArgs:
    stages: Mapping[str, ContextStageArgs]  # stage1 (8K -> 32K), stage2 (32K -> 256K)


@dataclass(frozen=True)
class EvalArgs:
    niah_threshold: float
    niah_num_lengths: int
    niah_num_depths: int
    niah_trials: int
    short_context_ppl_tolerance: float  # relative rise allowed before the drift check warns
    temperature: float
    top_p: float
    kv_cache_eval_seq_length: int  # the 256K KV-cache figure in `kexaone plan`


@dataclass(frozen=True)
class ComputeArgs:
    """What a training step asks of the cluster (k8s executor tags) and how it is parallelised."""

    gpus_per_training_step: int
    tensor_parallel: int
    expert_parallel: int
    pipeline_parallel: int
    context_parallel: int
    gpu_node_selector: Mapping[str, str]
    cpu_request: str
    memory_request: str


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelArgs
    tokenizer: TokenizerArgs
    data: DataArgs
    pretrain: PretrainArgs
    context: ContextArgs
    eval: EvalArgs
    compute: ComputeArgs

    # -- views -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def slice(self, *sections: str) -> dict[str, Any]:
        """The part of the preset an asset reads; hashed into that asset's version.

        A section is a top-level name ("model") or a dotted path ("data.languages").
        """
        full = self.to_dict()
        out: dict[str, Any] = {}
        for section in sections:
            node: Any = full
            for part in section.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise PresetError(f"preset has no section {section!r}")
                node = node[part]
            out[section] = node
        return out

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Preset":
        """Return a copy with dotted-path overrides applied, e.g. {"model.num_layers": 8}."""
        preset = self
        for dotted, value in overrides.items():
            preset = _replace_path(preset, dotted.split("."), value, dotted)
        return preset

    # -- validation --------------------------------------------------------------------------
    def problems(self) -> list[str]:
        m, t, d, p, c, e, k = (self.model, self.tokenizer, self.data, self.pretrain, self.context,
                               self.eval, self.compute)
        errs: list[str] = []

        def need(ok: bool, msg: str) -> None:
            if not ok:
                errs.append(msg)

        for name, value in (("num_layers", m.num_layers), ("hidden_size", m.hidden_size),
                            ("num_attention_heads", m.num_attention_heads),
                            ("num_query_groups", m.num_query_groups), ("kv_channels", m.kv_channels),
                            ("num_moe_experts", m.num_moe_experts), ("sliding_window", m.sliding_window),
                            ("global_attn_every", m.global_attn_every)):
            need(value > 0, f"model.{name} must be positive (got {value})")
        if errs:
            return errs
        need(m.hidden_size % m.num_attention_heads == 0,
             f"model.num_attention_heads={m.num_attention_heads} does not divide "
             f"model.hidden_size={m.hidden_size}")
        need(m.num_attention_heads % m.num_query_groups == 0,
             f"model.num_query_groups={m.num_query_groups} does not divide "
             f"model.num_attention_heads={m.num_attention_heads}")
        need(1 <= m.moe_router_topk <= m.num_moe_experts,
             f"model.moe_router_topk={m.moe_router_topk} must be between 1 and "
             f"model.num_moe_experts={m.num_moe_experts}")
        need(0 <= m.num_dense_layers < m.num_layers,
             f"model.num_dense_layers={m.num_dense_layers} must be below model.num_layers={m.num_layers}")
        need(m.num_layers % m.global_attn_every == 0,
             f"model.num_layers={m.num_layers} is not a multiple of model.global_attn_every="
             f"{m.global_attn_every} (the stack must end on a global layer)")
        need(m.sliding_window < p.seq_length,
             f"model.sliding_window={m.sliding_window} must be smaller than the pre-training "
             f"sequence pretrain.seq_length={p.seq_length}")
        need(m.moe_router_score_function in ("sigmoid", "softmax"),
             f"model.moe_router_score_function={m.moe_router_score_function!r} is not sigmoid/softmax")
        need(m.padded_vocab_size >= t.vocab_size,
             f"model.padded_vocab_size={m.padded_vocab_size} is smaller than tokenizer.vocab_size="
             f"{t.vocab_size}")
        need(m.vocab_pad_multiple > 0 and m.padded_vocab_size % m.vocab_pad_multiple == 0,
             f"model.padded_vocab_size={m.padded_vocab_size} is not a multiple of "
             f"model.vocab_pad_multiple={m.vocab_pad_multiple}")
        need(m.mtp_num_layers >= 0 and 0 <= m.mtp_loss_scaling_factor <= 1,
             "model.mtp_num_layers must be >= 0 and mtp_loss_scaling_factor within [0, 1]")

        need(0 < t.base_vocab_size < t.vocab_size,
             f"tokenizer.base_vocab_size={t.base_vocab_size} must be positive and below "
             f"tokenizer.vocab_size={t.vocab_size}")
        need(0 < t.keep_base_fraction <= 1, "tokenizer.keep_base_fraction must be within (0, 1]")
        need(0 <= t.superword_fraction < 1, "tokenizer.superword_fraction must be within [0, 1)")
        need(set(t.superword_allocation) == {"en", "ko", "other"}
             and all(v > 0 for v in t.superword_allocation.values()),
             "tokenizer.superword_allocation must give positive shares to en, ko and other")
        need(t.normalization in ("NFC", "NFKC", "NFD", "NFKD"),
             f"tokenizer.normalization={t.normalization!r} is not a Unicode normal form")

        unknown_langs = set(d.languages) - set(LANGUAGES)
        need(not unknown_langs, f"data.languages has unknown languages {sorted(unknown_langs)}")
        need(set(d.domains) >= set(d.languages), "data.domains must include every data.languages entry")
        need(set(d.language_score_threshold) == set(d.languages),
             "data.language_score_threshold must have exactly one entry per language")
        need(all(0 <= v <= 1 for v in d.language_score_threshold.values()),
             "data.language_score_threshold values must be within [0, 1]")
        need(0 < d.language_purity_threshold <= 1, "data.language_purity_threshold must be within (0, 1]")
        need(0 < d.minhash_threshold < 1, "data.minhash_threshold must be within (0, 1)")
        need(set(d.stage_mixtures) == {"stage1", "stage2", "stage3"},
             "data.stage_mixtures must define stage1, stage2 and stage3")
        for stage, mix in d.stage_mixtures.items():
            need(set(mix) <= set(d.domains) | {"thinking_augmented", "multilingual_synthetic"},
                 f"data.stage_mixtures.{stage} names unknown sources {sorted(set(mix) - set(d.domains))}")
            need(abs(sum(mix.values()) - 1.0) < 1e-6 and all(v >= 0 for v in mix.values()),
                 f"data.stage_mixtures.{stage} weights must be >= 0 and sum to 1 (got {sum(mix.values()):.4f})")

        need(p.total_tokens > 0 and p.seq_length > 0 and p.global_batch_size > 0,
             "pretrain.total_tokens, seq_length and global_batch_size must be positive")
        need(set(p.stage_token_fractions) == {"stage1", "stage2", "stage3"}
             and abs(sum(p.stage_token_fractions.values()) - 1.0) < 1e-6,
             "pretrain.stage_token_fractions must cover stage1..3 and sum to 1")
        need(p.optimizer in ("muon", "adam"), f"pretrain.optimizer={p.optimizer!r} is not muon/adam")
        need(p.lr_schedule in ("WSD", "cosine"), f"pretrain.lr_schedule={p.lr_schedule!r} is not WSD/cosine")
        need(0 < p.min_lr <= p.max_lr, "pretrain.min_lr must be positive and not above pretrain.max_lr")
        need(0 <= p.warmup_fraction and 0 <= p.decay_fraction and p.warmup_fraction + p.decay_fraction <= 1,
             "pretrain.warmup_fraction + decay_fraction must be within [0, 1]")
        need(p.checkpoint_every_steps > 0, "pretrain.checkpoint_every_steps must be positive")

        prev = p.seq_length
        for stage, cs in c.stages.items():
            need(cs.seq_length > prev,
                 f"context.stages.{stage}.seq_length={cs.seq_length} must exceed the previous length {prev}")
            prev = cs.seq_length
            need(set(cs.mixture) == {"rehearsal", "synthetic_reasoning", "long_documents"}
                 and abs(sum(cs.mixture.values()) - 1.0) < 1e-6,
                 f"context.stages.{stage}.mixture must split rehearsal/synthetic_reasoning/"
                 "long_documents summing to 1")

        need(0 < e.niah_threshold <= 1, "eval.niah_threshold must be within (0, 1]")
        need(e.niah_num_lengths >= 1 and e.niah_num_depths >= 1 and e.niah_trials >= 1,
             "eval.niah grid sizes must be positive")
        need(e.short_context_ppl_tolerance >= 0, "eval.short_context_ppl_tolerance must be >= 0")

        for name, value in (("tensor_parallel", k.tensor_parallel), ("expert_parallel", k.expert_parallel),
                            ("pipeline_parallel", k.pipeline_parallel),
                            ("context_parallel", k.context_parallel)):
            need(value >= 1, f"compute.{name} must be >= 1")
        if k.tensor_parallel >= 1:
            need(m.num_query_groups % k.tensor_parallel == 0,
                 f"compute.tensor_parallel={k.tensor_parallel} does not divide "
                 f"model.num_query_groups={m.num_query_groups}")
        if k.expert_parallel >= 1:
            need(m.num_moe_experts % k.expert_parallel == 0,
                 f"compute.expert_parallel={k.expert_parallel} does not divide "
                 f"model.num_moe_experts={m.num_moe_experts}")
        return errs

    def validate(self) -> "Preset":
        errs = self.problems()
        if errs:
            raise PresetError(f"preset {self.name!r} is invalid: " + "; ".join(errs))
        return self


# ----------------------------------------------------------------------------------------------
# The two presets
# ----------------------------------------------------------------------------------------------

_SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>",
                   "<think>", "</think>")


def _k_exaone_236b() -> Preset:
    return Preset(
        name="k-exaone-236b",
        model=ModelArgs(
            num_layers=48, hidden_size=6144, num_attention_heads=64, num_query_groups=8, kv_channels=128,
            ffn_hidden_size=18432, num_dense_layers=1, num_moe_experts=128, moe_router_topk=8,
            moe_ffn_hidden_size=2048, moe_shared_expert_intermediate_size=2048,
            moe_router_score_function="sigmoid", moe_router_topk_scaling_factor=2.5,
            moe_router_enable_expert_bias=True, moe_router_bias_update_rate=1e-4,
            moe_router_load_balancing_type="seq_aux_loss", moe_aux_loss_coeff=1e-4,
            moe_expert_capacity_factor=None, sliding_window=128, global_attn_every=4, rope_theta=1e6,
            qk_layernorm=True, norm_eps=1e-5, mtp_num_layers=1, mtp_loss_scaling_factor=0.05,
            untie_embeddings_and_output_weights=True, padded_vocab_size=153_600, vocab_pad_multiple=1024,
        ),
        tokenizer=TokenizerArgs(
            base_vocab_size=100_000, vocab_size=150_000, keep_base_fraction=0.7, superword_fraction=0.2,
            superword_allocation={"en": 2, "ko": 3, "other": 1}, max_superword_words=4,
            normalization="NFC", special_tokens=_SPECIAL_TOKENS,
        ),
        data=DataArgs(
            languages=LANGUAGES, domains=CORPUS_DOMAINS,
            language_score_threshold={"en": 0.65, "ko": 0.65, "es": 0.65, "de": 0.65, "ja": 0.65, "vi": 0.65},
            language_purity_threshold=0.95, minhash_threshold=0.8,
            stage_mixtures=_STAGE_MIXTURES,
        ),
        pretrain=PretrainArgs(
            total_tokens=11e12, stage_token_fractions={"stage1": 0.6, "stage2": 0.3, "stage3": 0.1},
            seq_length=8192, global_batch_size=2048, optimizer="muon", max_lr=3.0e-4, min_lr=3.0e-5,
            lr_schedule="WSD", warmup_fraction=0.01, decay_fraction=0.1, weight_decay=0.1, grad_clip=1.0,
            fp8=True, checkpoint_every_steps=1000, seed=1234,
        ),
        context=ContextArgs(stages={
            "stage1": ContextStageArgs(seq_length=32_768, tokens=100e9, mixture=_CONTEXT_MIX_STAGE1),
            "stage2": ContextStageArgs(seq_length=262_144, tokens=50e9, mixture=_CONTEXT_MIX_STAGE2),
        }),
        eval=EvalArgs(
            niah_threshold=0.95, niah_num_lengths=5, niah_num_depths=5, niah_trials=3,
            short_context_ppl_tolerance=0.05, temperature=1.0, top_p=0.95, kv_cache_eval_seq_length=262_144,
        ),
        compute=ComputeArgs(
            gpus_per_training_step=8, tensor_parallel=8, expert_parallel=8, pipeline_parallel=1,
            context_parallel=1, gpu_node_selector={"nvidia.com/gpu.product": "NVIDIA-H200"},
            cpu_request="64", memory_request="1600Gi",
        ),
    )


def _tiny() -> Preset:
    """Same architecture, scaled so the whole chain trains on 2 CPU cores in minutes.

    Ratios of the recipe are kept: 3 SWA : 1 global, dense first layer, top-k/experts = 1/16 -> 2/8 is
    relaxed to keep routing meaningful with few experts, context x4 then x8.
    """
    full = _k_exaone_236b()
    return dataclasses.replace(
        full,
        name="tiny",
        model=dataclasses.replace(
            full.model, num_layers=4, hidden_size=64, num_attention_heads=4, num_query_groups=2,
            kv_channels=16, ffn_hidden_size=192, num_moe_experts=8, moe_router_topk=2,
            moe_ffn_hidden_size=32, moe_shared_expert_intermediate_size=32, sliding_window=16,
            padded_vocab_size=2048, vocab_pad_multiple=128,
        ),
        tokenizer=dataclasses.replace(full.tokenizer, base_vocab_size=1024, vocab_size=1536),
        pretrain=dataclasses.replace(
            full.pretrain, total_tokens=3 * 64 * 8 * 128, seq_length=128, global_batch_size=8,
            min_lr=3.0e-4 / 10, fp8=False, checkpoint_every_steps=20,
            stage_token_fractions={"stage1": 1 / 3, "stage2": 1 / 3, "stage3": 1 / 3},
        ),
        context=ContextArgs(stages={
            "stage1": ContextStageArgs(seq_length=512, tokens=16 * 512 * 4, mixture=_CONTEXT_MIX_STAGE1),
            "stage2": ContextStageArgs(seq_length=4096, tokens=8 * 4096 * 2, mixture=_CONTEXT_MIX_STAGE2),
        }),
        eval=dataclasses.replace(full.eval, kv_cache_eval_seq_length=4096),
        compute=dataclasses.replace(full.compute, gpus_per_training_step=0, tensor_parallel=1,
                                    expert_parallel=1, gpu_node_selector={}, cpu_request="2",
                                    memory_request="8Gi"),
    )


# Project choices (the report gives no per-stage numbers): stage 1 web-heavy, stage 2 more code/STEM,
# stage 3 reasoning-heavy with the synthetic thinking data.
_STAGE_MIXTURES = {
    "stage1": {"en": 0.40, "ko": 0.15, "es": 0.06, "de": 0.06, "ja": 0.06, "vi": 0.05, "code": 0.12,
               "stem": 0.10},
    "stage2": {"en": 0.28, "ko": 0.12, "es": 0.05, "de": 0.05, "ja": 0.05, "vi": 0.05, "code": 0.20,
               "stem": 0.15, "multilingual_synthetic": 0.05},
    "stage3": {"en": 0.15, "ko": 0.08, "es": 0.03, "de": 0.03, "ja": 0.03, "vi": 0.03, "code": 0.20,
               "stem": 0.20, "thinking_augmented": 0.20, "multilingual_synthetic": 0.05},
}
_CONTEXT_MIX_STAGE1 = {"rehearsal": 0.5, "synthetic_reasoning": 0.2, "long_documents": 0.3}
_CONTEXT_MIX_STAGE2 = {"rehearsal": 0.4, "synthetic_reasoning": 0.2, "long_documents": 0.4}


# Where each value of the full preset comes from. "report ..." = K-EXAONE report / k-exaone.md;
# "choice: ..." = a project decision where the report is silent (kept visible, not hidden).
_REPORT_T1 = "report Table 1 / §2.1"
SOURCES: dict[str, str] = {
    **{f"model.{f}": _REPORT_T1 for f in (
        "num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "kv_channels",
        "ffn_hidden_size", "num_dense_layers", "num_moe_experts", "moe_router_topk", "moe_ffn_hidden_size",
        "moe_shared_expert_intermediate_size", "moe_router_score_function", "moe_router_topk_scaling_factor",
        "moe_router_enable_expert_bias", "moe_router_bias_update_rate", "moe_router_load_balancing_type",
        "moe_aux_loss_coeff", "moe_expert_capacity_factor", "sliding_window", "global_attn_every",
        "rope_theta", "qk_layernorm", "norm_eps", "mtp_num_layers", "mtp_loss_scaling_factor",
        "untie_embeddings_and_output_weights", "padded_vocab_size")},
    "model.vocab_pad_multiple": "choice: 153,600 = 150 x 1024; 1024 keeps TP/EP splits even",
    "tokenizer.base_vocab_size": "report §2.2 (EXAONE 4.0: 100K)",
    "tokenizer.vocab_size": "report §2.2 (150K)",
    "tokenizer.keep_base_fraction": "report §2.2 (top 70 % kept)",
    "tokenizer.superword_fraction": "report §2.2 (~20 % superwords)",
    "tokenizer.superword_allocation": "report §2.2 (en:ko:multilingual = 2:3:1)",
    "tokenizer.max_superword_words": "SuperBPE paper (Liu et al. 2025): merges span at most 4 words",
    "tokenizer.normalization": "report §2.2 (NFC, was NFKC)",
    "tokenizer.special_tokens": "choice: chat roles + reasoning-mode think tags (§3.3 modes)",
    "data.languages": "report §3.1 (en, ko, es, de, ja, vi)",
    "data.domains": "report §3.1 (web text in six languages + code + STEM)",
    "data.language_score_threshold": "choice: FineWeb-style LID threshold 0.65",
    "data.language_purity_threshold": "choice: >= 95 % of kept documents in the partition's language",
    "data.minhash_threshold": "choice: datatrove/FineWeb MinHash default ~0.8 Jaccard",
    "data.stage_mixtures": "choice: report §3.1 names the curriculum, not its weights",
    "pretrain.total_tokens": "report §3.1 (11T tokens)",
    "pretrain.stage_token_fractions": "choice: report gives no per-stage split",
    "pretrain.seq_length": "report §3.1 (pre-training max context 8K)",
    "pretrain.global_batch_size": "choice: not in the report",
    "pretrain.optimizer": "report §3.1 (Muon)",
    "pretrain.max_lr": "report §3.1 (max LR 3.0e-4)",
    "pretrain.min_lr": "choice: WSD decays to max_lr / 10",
    "pretrain.lr_schedule": "report §3.1 (Warmup-Stable-Decay)",
    "pretrain.warmup_fraction": "choice: not in the report",
    "pretrain.decay_fraction": "choice: not in the report",
    "pretrain.weight_decay": "choice: not in the report",
    "pretrain.grad_clip": "choice: not in the report",
    "pretrain.fp8": "report §3.1 (FP8 native training)",
    "pretrain.checkpoint_every_steps": "choice: operational",
    "pretrain.seed": "choice: operational",
    "context.stages.stage1.seq_length": "report §3.2 (8K -> 32K)",
    "context.stages.stage2.seq_length": "report §3.2 (32K -> 256K)",
    "context.stages.stage1.tokens": "choice: report gives no token count",
    "context.stages.stage2.tokens": "choice: report gives no token count",
    "context.stages.stage1.mixture": "choice: report §3.2 names the three parts, not the ratios",
    "context.stages.stage2.mixture": "choice: report §3.2 names the three parts, not the ratios",
    "eval.niah_threshold": "issue 7 ('near perfect', default 0.95)",
    "eval.niah_num_lengths": "issue 7 (at least 5 lengths)",
    "eval.niah_num_depths": "issue 7 (at least 5 depths)",
    "eval.niah_trials": "issue 7 (several trials)",
    "eval.short_context_ppl_tolerance": "choice: warn above +5 % perplexity",
    "eval.temperature": "report §4.1",
    "eval.top_p": "report §4.1",
    "eval.kv_cache_eval_seq_length": "report: max context 262,144",
    "compute.gpus_per_training_step": "choice: one 8-GPU node per training pod",
    "compute.tensor_parallel": "choice: Megatron-Bridge style TP8 within a node",
    "compute.expert_parallel": "choice: EP8 (128 experts / 8 = 16 per rank)",
    "compute.pipeline_parallel": "choice: scaled out with more nodes, not set here",
    "compute.context_parallel": "choice: the 256K stage raises it in its launch config",
    "compute.gpu_node_selector": "choice: deployment-specific",
    "compute.cpu_request": "choice: deployment-specific",
    "compute.memory_request": "choice: deployment-specific",
}

_PRESET_FACTORIES = {"tiny": _tiny, "k-exaone-236b": _k_exaone_236b}
PRESET_NAMES = tuple(_PRESET_FACTORIES)


def get_preset(name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Preset:
    """Look up a preset by name (default: $KEXAONE_PRESET, else tiny), apply overrides, validate."""
    name = name or os.environ.get(PRESET_ENV_VAR) or DEFAULT_PRESET
    if name not in _PRESET_FACTORIES:
        raise PresetError(f"unknown preset {name!r} (known: {', '.join(PRESET_NAMES)})")
    preset = _PRESET_FACTORIES[name]()
    if overrides:
        preset = preset.with_overrides(overrides)
    return preset.validate()


def leaf_paths(preset: Preset) -> list[str]:
    """Dotted paths of every leaf value (used to check SOURCES covers the full preset)."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and not prefix.endswith(("mixture", "mixtures", "threshold",
                                                            "allocation", "fractions", "selector")):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            out.append(prefix)

    walk({k: v for k, v in preset.to_dict().items() if k != "name"}, "")
    return out


def preset_fingerprint(section: Mapping[str, Any]) -> str:
    return json.dumps(section, sort_keys=True, separators=(",", ":"))


# -- helpers -----------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _replace_path(node: Any, parts: list[str], value: Any, dotted: str) -> Any:
    head, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(node):
        names = {f.name for f in dataclasses.fields(node)}
        if head not in names:
            raise PresetError(f"override {dotted!r}: no field {head!r} (fields: {', '.join(sorted(names))})")
        current = getattr(node, head)
        new = _replace_path(current, rest, value, dotted) if rest else _coerce(current, value, dotted)
        return dataclasses.replace(node, **{head: new})
    if isinstance(node, Mapping):
        if head not in node:
            raise PresetError(f"override {dotted!r}: no key {head!r}")
        new = _replace_path(node[head], rest, value, dotted) if rest else _coerce(node[head], value, dotted)
        return {**node, head: new}
    raise PresetError(f"override {dotted!r}: {head!r} is a value, not a section")


def _coerce(current: Any, value: Any, dotted: str) -> Any:
    """Keep override types honest: an int field takes an int, a float field a number, and so on."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise PresetError(f"override {dotted!r}: expected true/false, got {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise PresetError(f"override {dotted!r}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PresetError(f"override {dotted!r}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, tuple):
        return tuple(value)
    if type(current) is not type(value) and not isinstance(current, Mapping):
        raise PresetError(f"override {dotted!r}: expected {type(current).__name__}, got {value!r}")
    return value


__all__ = [
    "CORPUS_DOMAINS", "LANGUAGES", "PRESET_ENV_VAR", "PRESET_NAMES", "Preset", "PresetError", "SOURCES",
    "get_preset", "leaf_paths",
]
