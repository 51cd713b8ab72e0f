"""The preset schema: one frozen dataclass tree (``Preset``) for every number in the recipe.

Sections are named after what they configure (``model`` -> Megatron-Core's TransformerConfig, ``data`` ->
the corpus pipelines, ...). ``Preset.slice`` is what an asset reads and hashes into its artifact version;
``Preset.with_overrides`` applies dotted-path overrides with type checks; ``Preset.validate`` runs
``config.validation`` before any compute. No Dagster, no torch: every package of the project imports this.
"""

from __future__ import annotations

import dataclasses
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
    padded_vocab_size: int  # embedding rows; >= tokenizer vocab, a multiple of 128 x tensor_parallel

    @property
    def global_layers(self) -> tuple[int, ...]:
        """0-indexed global-attention layers: 3, 7, ..., 47 for LLLG over 48 layers."""
        return tuple(i for i in range(self.num_layers) if (i + 1) % self.global_attn_every == 0)


@dataclass(frozen=True)
class TokenizerArgs:
    base_vocab_size: int  # the previous generation BPE the new one inherits from
    vocab_size: int  # the SuperBPE vocabulary before padding
    keep_base_fraction: float  # most frequent share of the base vocabulary kept
    keep_base_ancestors: str  # counted (the kept share includes the merges the kept tokens need) | extra
    superword_fraction: float  # share of the vocabulary that are superword tokens
    superword_allocation: Mapping[str, int]  # en : ko : other languages
    max_superword_words: int  # stage-2 merges spanning more words are skipped
    normalization: str
    special_tokens: tuple[str, ...]
    base_domains: tuple[str, ...]  # what the previous generation was trained on
    reallocation_domains: tuple[str, ...]  # who gets the 30 % of the base vocabulary that is not kept
    reallocation_split: str  # pooled (one BPE over their texts) | by_need (chunks to the neediest domain)
    held_out_fraction: float  # documents kept out of tokenizer training, measured by the report


@dataclass(frozen=True)
class GopherQualityArgs:
    """datatrove GopherQualityFilter (Rae et al. 2021, App. A). Words come from the partition's tokenizer."""

    min_doc_words: int
    max_doc_words: int
    min_avg_word_length: float | None  # None disables the rule (Japanese script runs average ~2 chars)
    max_avg_word_length: float | None
    max_symbol_word_ratio: float  # '#' or ellipses per word
    max_bullet_lines_ratio: float
    max_ellipsis_lines_ratio: float
    min_alpha_words_ratio: float  # datatrove's max_non_alpha_words_ratio: share of words with a letter
    min_stop_words: int
    stop_words: tuple[str, ...]


@dataclass(frozen=True)
class GopherRepetitionArgs:
    """datatrove GopherRepetitionFilter (Rae et al. 2021, Table A1)."""

    dup_line_frac: float
    dup_para_frac: float
    dup_line_char_frac: float
    dup_para_char_frac: float
    top_n_grams: tuple[tuple[int, float], ...]  # (n, max char fraction of the most frequent n-gram)
    dup_n_grams: tuple[tuple[int, float], ...]  # (n, max char fraction inside repeated n-grams)


@dataclass(frozen=True)
class FineWebQualityArgs:
    """datatrove FineWebQualityFilter (Penedo et al. 2024)."""

    line_punct_thr: float  # min share of lines ending in terminal punctuation
    short_line_thr: float  # max share of lines of at most short_line_length characters
    short_line_length: int
    char_duplicates_ratio: float  # max share of characters in duplicated lines
    new_line_ratio: float  # max newlines per word


@dataclass(frozen=True)
class C4Args:
    """datatrove C4QualityFilter (Raffel et al. 2020, §2.2): line filters plus document rules."""

    filter_no_terminal_punct: bool  # drop lines without terminal punctuation (FineWeb turns this off)
    min_num_sentences: int  # -1 disables
    min_words_per_line: int  # shorter lines are dropped; -1 disables
    max_word_length: int  # lines with a longer word are dropped
    filter_lorem_ipsum: bool
    filter_javascript: bool
    filter_curly_bracket: bool  # drops the document; off for STEM (LaTeX braces)
    filter_policy: bool  # cookie / terms-of-use lines


@dataclass(frozen=True)
class CodeQualityArgs:
    """Source-code heuristics in the style of The Stack / StarCoder data filtering."""

    max_line_length: int
    max_mean_line_length: float
    min_alphanum_fraction: float
    min_lines: int  # non-empty lines
    max_bytes: int
    autogenerated_markers: tuple[str, ...]  # case-insensitive, searched in the first lines
    autogenerated_header_lines: int


@dataclass(frozen=True)
class DomainFilterArgs:
    """The filter chain of one corpus partition; a section set to None is not applied."""

    word_tokenizer: str  # space_delimited | japanese_script | code (corpus/tokenizers.py)
    lid_language: str | None  # language the LID filter keeps (threshold: data.language_score_threshold)
    url_filter: bool
    pii: bool  # datatrove PIIFormatter: e-mail and public IP addresses replaced
    gopher_quality: GopherQualityArgs | None
    gopher_repetition: GopherRepetitionArgs | None
    fineweb_quality: FineWebQualityArgs | None
    c4: C4Args | None
    code_quality: CodeQualityArgs | None


@dataclass(frozen=True)
class MinhashArgs:
    """datatrove MinhashConfig: signature = num_buckets x hashes_per_bucket minhashes of word n-grams."""

    n_grams: int
    num_buckets: int
    hashes_per_bucket: int
    seed: int
    # keep an LSH candidate pair only if its full-signature similarity >= data.minhash_threshold
    # (corpus.steps.MinhashCandidateCheck); without it the banding alone decides (FineWeb)
    candidate_check: bool

    @property
    def lsh_threshold(self) -> float:
        """Jaccard similarity at which a pair becomes a candidate with probability ~1/2: (1/b)^(1/r)."""
        return (1 / self.num_buckets) ** (1 / self.hashes_per_bucket)


@dataclass(frozen=True)
class CorpusPipelineArgs:
    tasks: int  # datatrove tasks (input shards) per partition; part of the output layout, so versioned
    url_domain_blocklist: bool  # datatrove's 4.6M-domain block list (~0.7 GB in memory per task)
    purity_min_chars: int  # paragraphs shorter than this are not language-identified for purity


@dataclass(frozen=True)
class DataArgs:
    languages: tuple[str, ...]
    domains: tuple[str, ...]
    language_score_threshold: Mapping[str, float]
    language_purity_threshold: float
    minhash_threshold: float  # Jaccard similarity above which documents are near-duplicates
    stage_mixtures: Mapping[str, Mapping[str, float]]  # stage -> domain -> weight (sums to 1)
    filters: Mapping[str, DomainFilterArgs]  # domain -> filter chain (filtered_corpus)
    minhash: MinhashArgs  # deduplicated_corpus near-duplicate removal
    pipeline: CorpusPipelineArgs


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
    # Muon's update is scaled to AdamW's update RMS, so max_lr serves both the Muon matrices and the
    # AdamW-trained embeddings/norms (Megatron's muon_extra_scale_factor; other Muon knobs: Megatron defaults)
    muon_extra_scale_factor: float
    log_every_steps: int  # training metrics to the Dagster log / warehouse
    keep_checkpoints: int  # periodic checkpoints kept in a stage's work directory (newest first)


@dataclass(frozen=True)
class ContextStageArgs:
    seq_length: int
    tokens: float
    mixture: Mapping[str, float]  # rehearsal / synthetic_reasoning / long_documents
    # peak LR of the stage's own warmup-stable-decay schedule (pre-training's warmup/decay fractions and
    # min/max ratio; the pre-training schedule has ended)
    lr: float
    # share of the long_documents pool that is synthetic key/value retrieval documents (evaluation.niah's
    # format, training keys only); the rest are whole long corpus documents
    retrieval_share: float
    # retrieval documents' lengths are drawn log-uniformly from [retrieval_min_length, seq_length]
    retrieval_min_length: int
    # loss weight of an answered retrieval value's tokens (1 = plain LM loss; an integer, stored as uint8)
    answer_loss_weight: int
    context_parallel: int  # GPU launch: context-parallel ranks of the stage (TE attention, sliding window)
    # periodic (resumable) checkpoints of the stage, in its own optimizer steps: a crash loses at most this many
    checkpoint_every_steps: int


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
    kv_cache_eval_seq_length: int  # the 256K KV-cache figure in `kexaone plan`


@dataclass(frozen=True)
class ComputeArgs:
    """What a training step asks of the cluster (k8s executor tags) and how it is parallelised."""

    gpus_per_training_step: int  # GPUs of one node (pod) of a training stage
    nodes_per_training_step: int  # nodes of a training stage (world = nodes x GPUs per node)
    tensor_parallel: int
    pipeline_parallel: int
    expert_parallel: int
    micro_batch_size: int  # sequences per forward on one GPU (the layout plan's; the CPU trainer runs whole batches)
    recompute: str  # activation recomputation of the GPU launch: "none" or "full" (every layer)
    gpu_type: str  # the GPU the layout plan sizes for (model/layout.py: GPUS)
    sft_context_parallel: int  # context-parallel ranks of the SFT stage (the context stages carry their own)
    # the policy stages (posttrain.policy_train: no pipeline schedule, AdamW) get a layout of their own
    policy_tensor_parallel: int
    policy_expert_parallel: int
    gpu_node_selector: Mapping[str, str]
    cpu_request: str
    memory_request: str


@dataclass(frozen=True)
class SyntheticArgs:
    """The [synthetic] group (report §3.1): thinking-augmented samples and cross-lingual synthesis."""

    template_version: str  # prompt / rendering templates (synthetic/templates.py); part of the cache key
    thinking_sources: tuple[str, ...]  # deduplicated_corpus partitions that get thinking trajectories
    thinking_max_docs_per_source: int
    thinking_min_chars: int  # length bounds of one sample (document + question + trajectory + answer)
    thinking_max_chars: int
    multilingual_directions: Mapping[str, tuple[str, ...]]  # source partition -> target languages
    multilingual_max_docs_per_source: int
    multilingual_target_chars: Mapping[str, int]  # target language -> characters to synthesize (balance)
    multilingual_min_chars: int
    multilingual_max_chars: int
    teacher_max_tokens: int  # completion budget per request (HTTP teacher)
    teacher_temperature: float


@dataclass(frozen=True)
class SftArgs:
    """Supervised fine-tuning (report §3.3): both modes, loss on assistant tokens only."""

    seq_length: int  # packed conversations per training sample
    global_batch_size: int
    steps: int  # optimizer steps
    lr: float  # peak of the stage's own warmup-stable-decay schedule
    min_lr: float
    warmup_steps: int
    decay_steps: int
    checkpoint_every_steps: int
    # share of each source's conversations rendered in reasoning mode (the rest: non-reasoning, same problems)
    reasoning_share: float
    # conversations per source (thinking / multilingual / tool / rl-family train prompts), at most
    max_conversations_per_source: int
    # RL prompt families' train split also gets reference answers in SFT (so RL starts from a model that
    # knows the format): conversations per family
    family_conversations: Mapping[str, int]


@dataclass(frozen=True)
class ToolTaskArgs:
    """Agentic tool-use tasks (report §3.3 stage ii), each checked in the sandbox before it is kept."""

    num_tasks: int
    tasks_per_request: int  # HTTP teacher: tasks asked for in one request (its reply is one JSON list)
    sandbox_timeout_s: float
    sandbox_memory_mb: int


@dataclass(frozen=True)
class RlPromptArgs:
    """Prompts with verifiers for RL and evaluation; the held-out split never reaches training."""

    families: Mapping[str, int]  # task family -> prompts built
    held_out_fraction: float
    # the arithmetic family: operands in [low, high], operations among + - * next max
    arithmetic_range: tuple[int, int]
    arithmetic_operations: tuple[str, ...]


@dataclass(frozen=True)
class PolicyOptArgs:
    """One policy-optimization stage (AGAPO RL or GROUPER preference learning)."""

    steps: int  # rollout rounds
    prompts_per_step: int
    group_size: int  # G responses per prompt
    optimizer_steps_per_batch: int  # off-policy: updates per rollout batch
    lr: float
    max_response_tokens: int
    temperature: float  # rollout decoding (report §4.1: 1.0)
    top_p: float  # report §4.1: 0.95
    reasoning: bool  # rollouts in reasoning mode (think block) or not
    checkpoint_every_steps: int


@dataclass(frozen=True)
class ReleaseArgs:
    """The [release] group: the HF ``exaone_moe`` export, its decoding defaults and the parity check."""

    hf_dtype: str  # weights of the export: "bfloat16" or "float32"
    hf_max_shard_bytes: int  # safetensors shards of at most this size (+ an index when there are several)
    temperature: float  # generation_config.json (report §4.1)
    top_p: float
    num_speculative_tokens: int  # MTP self-drafted tokens per step (kexaone serve; the vLLM command in the docs)
    parity_prompts: int  # prompts of the hf_checkpoint asset check (transformers vs Megatron logits)
    parity_prompt_tokens: int  # their length (longer than the sliding window)
    parity_max_abs_diff: float  # the check fails above this max |logit difference|


@dataclass(frozen=True)
class PostTrainArgs:
    """The [post_training] group (report §3.3-3.5)."""

    sft: SftArgs
    tool_tasks: ToolTaskArgs
    prompts: RlPromptArgs
    rl: PolicyOptArgs
    is_clip: float  # AGAPO's truncated importance-sampling cap C
    preference: PolicyOptArgs
    # GROUPER's score: rule reward x rule_weight + mean rubric score (scaled to [0, 1]) x (1 - rule_weight)
    rubric: tuple[str, ...]
    rule_weight: float
    # the LLM judge (HTTP teacher backend): decoding of its rubric answers (one JSON object)
    judge_max_tokens: int
    judge_temperature: float
    eval_samples: int  # k samples per held-out prompt for pass@1
    eval_max_prompts: int  # held-out prompts per family evaluated


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
    synthetic: SyntheticArgs
    posttrain: PostTrainArgs
    release: ReleaseArgs

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

    # -- validation (config/validation.py) ---------------------------------------------------
    def problems(self) -> list[str]:
        from config.validation import problems

        return problems(self)

    def validate(self) -> "Preset":
        errs = self.problems()
        if errs:
            raise PresetError(f"preset {self.name!r} is invalid: " + "; ".join(errs))
        return self


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
