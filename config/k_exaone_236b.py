"""``k-exaone-236b``: the K-EXAONE technical report's configuration, each value with its source beside it.

"report ..." = the report as summarised in k-exaone.md; "choice: ..." = a project decision where the report
is silent, kept visible. ``k_exaone_236b()`` is the plain preset the code reads; ``SOURCES`` maps each of its
leaf paths to its source (``config/sourced.py``).
"""

from __future__ import annotations

from config.corpus_filters import CORPUS_FILTERS, MINHASH_WEB, PIPELINE_FULL
from config.schema import (
    CORPUS_DOMAINS,
    LANGUAGES,
    ComputeArgs,
    ContextArgs,
    ContextStageArgs,
    DataArgs,
    EvalArgs,
    ModelArgs,
    PolicyOptArgs,
    PostTrainArgs,
    Preset,
    PretrainArgs,
    ReleaseArgs,
    RlPromptArgs,
    SftArgs,
    SyntheticArgs,
    TokenizerArgs,
    ToolTaskArgs,
)
from config.sourced import S, split_sources

T1 = "report Table 1 / §2.1"
OPERATIONAL = "choice: operational"
DEPLOYMENT = "choice: deployment-specific"

MULTILINGUAL_TARGETS = ("de", "ja", "vi", "es")
_DIRECTIONS = (
    "report §3.1 (cross-lingual synthesis spreads en/ko knowledge to de/ja/vi/es; the reverse at scale is a choice)"
)
LAYOUT = (
    "choice: one layout every model.train stage fits on 64 H200 (kexaone plan --layout: 73-85 GB of 132 GB usable); "
    "Megatron-Bridge's TP4 / PP8 / EP8 cannot hold the 256K stage's CP 8 on 64 GPUs"
)
POLICY_LAYOUT = (
    "choice: the policy trainer has no pipeline schedule and keeps AdamW's two moments; on 64 H200 TP8 / EP64 fits "
    "(kexaone plan --layout: 91-96 GB of 132 GB usable), the pre-training TP4 / EP32 without PP needs 183-191 GB"
)
REPORT_DECODING = "report §4.1 / post-training reference: rollouts decode as evaluation does"
_EVENLY = "choice: report §3.1 says 'evenly', not how much; characters per target language"

# Project choices (the report gives no per-stage numbers): stage 1 web-heavy, stage 2 more code/STEM,
# stage 3 reasoning-heavy with the synthetic thinking data.
STAGE_MIXTURES = {
    "stage1": {"en": 0.40, "ko": 0.15, "es": 0.06, "de": 0.06, "ja": 0.06, "vi": 0.05, "code": 0.12, "stem": 0.10},
    "stage2": {
        "en": 0.28,
        "ko": 0.12,
        "es": 0.05,
        "de": 0.05,
        "ja": 0.05,
        "vi": 0.05,
        "code": 0.20,
        "stem": 0.15,
        "multilingual_synthetic": 0.05,
    },
    "stage3": {
        "en": 0.15,
        "ko": 0.08,
        "es": 0.03,
        "de": 0.03,
        "ja": 0.03,
        "vi": 0.03,
        "code": 0.20,
        "stem": 0.20,
        "thinking_augmented": 0.20,
        "multilingual_synthetic": 0.05,
    },
}


def _context_stage(
    seq_length: int, length_source: str, tokens: float, mixture: dict, context_parallel: int, cp_source: str, every: int
) -> ContextStageArgs:
    return ContextStageArgs(
        seq_length=S(seq_length, length_source),
        tokens=S(tokens, "choice: report gives no token count"),
        mixture=S(mixture, "choice: report §3.2 names the three parts, not the ratios"),
        lr=S(3.0e-5, "choice: peak at pre-training's min_lr (report gives no LR)"),
        retrieval_share=S(0.0, "choice: natural long documents only (report §3.2)"),
        retrieval_min_length=S(seq_length, "choice: unused without retrieval documents"),
        answer_loss_weight=S(1, "choice: plain LM loss"),
        context_parallel=S(context_parallel, cp_source),
        checkpoint_every_steps=S(every, "choice: operational (a crash costs at most this many steps)"),
    )


def sourced_k_exaone_236b() -> Preset:
    """The preset with every value written as ``S(value, source)`` (``tiny`` starts from it)."""
    return Preset(
        name="k-exaone-236b",
        model=ModelArgs(
            num_layers=S(48, T1),
            hidden_size=S(6144, T1),
            num_attention_heads=S(64, T1),
            num_query_groups=S(8, T1),
            kv_channels=S(128, T1),
            ffn_hidden_size=S(18432, T1),
            num_dense_layers=S(1, T1),
            num_moe_experts=S(128, T1),
            moe_router_topk=S(8, T1),
            moe_ffn_hidden_size=S(2048, T1),
            moe_shared_expert_intermediate_size=S(2048, T1),
            moe_router_score_function=S("sigmoid", T1),
            moe_router_topk_scaling_factor=S(2.5, T1),
            moe_router_enable_expert_bias=S(True, T1),
            moe_router_bias_update_rate=S(1e-4, T1),
            moe_router_load_balancing_type=S("seq_aux_loss", T1),
            moe_aux_loss_coeff=S(1e-4, T1),
            moe_expert_capacity_factor=S(None, T1),
            sliding_window=S(128, T1),
            global_attn_every=S(4, T1),
            rope_theta=S(1e6, T1),
            qk_layernorm=S(True, T1),
            norm_eps=S(1e-5, T1),
            mtp_num_layers=S(1, T1),
            mtp_loss_scaling_factor=S(0.05, T1),
            untie_embeddings_and_output_weights=S(True, T1),
            padded_vocab_size=S(153_600, "report Table 1 (150K tokens padded to 150 x 1024: 128 x TP8)"),
        ),
        tokenizer=TokenizerArgs(
            base_vocab_size=S(100_000, "report §2.2 (EXAONE 4.0: 100K)"),
            vocab_size=S(150_000, "report §2.2 (150K)"),
            keep_base_fraction=S(0.7, "report §2.2 (top 70 % kept)"),
            keep_base_ancestors=S(
                "counted",
                "choice: the report (§2.2) keeps 70 % of the previous vocabulary; counting the merge ancestors the "
                "kept tokens need keeps exactly that. On top, they made it 80 % at 32K and 150K and left ja and code "
                "below plain BPE at 32K (issue 20; docs/benchmarks.md, tokenizer_multilingual)",
            ),
            superword_fraction=S(0.2, "report §2.2 (~20 % superwords)"),
            superword_allocation=S({"en": 2, "ko": 3, "other": 1}, "report §2.2 (en:ko:multilingual = 2:3:1)"),
            max_superword_words=S(4, "SuperBPE paper (Liu et al. 2025): merges span at most 4 words"),
            normalization=S("NFC", "report §2.2 (NFC, was NFKC)"),
            special_tokens=S(
                (
                    "<|endoftext|>",
                    "<|pad|>",
                    "<|system|>",
                    "<|user|>",
                    "<|assistant|>",
                    "<|tool|>",
                    "<think>",
                    "</think>",
                ),
                "choice: chat roles + reasoning-mode think tags (§3.3 modes)",
            ),
            base_domains=S(
                ("en", "ko", "es", "code", "stem"), "EXAONE 4.0 covered en, ko, es (report §2.2 / §3.1) + code and STEM"
            ),
            reallocation_domains=S(
                ("de", "ja", "vi", "stem", "code"), "report §2.2 (the rest goes to de/ja/vi, STEM and code)"
            ),
            reallocation_split=S(
                "by_need",
                "choice: the report does not say how the 30 % is split; one pooled BPE left ja 6-7 % below a plain "
                "BPE at 32K and 150K (issue 20; docs/benchmarks.md, tokenizer_multilingual)",
            ),
            held_out_fraction=S(0.1, "choice: 10 % of documents held out for the efficiency report"),
        ),
        data=DataArgs(
            languages=S(LANGUAGES, "report §3.1 (en, ko, es, de, ja, vi)"),
            domains=S(CORPUS_DOMAINS, "report §3.1 (web text in six languages + code + STEM)"),
            language_score_threshold=S({lang: 0.65 for lang in LANGUAGES}, "choice: FineWeb-style LID threshold 0.65"),
            language_purity_threshold=S(0.95, "choice: >= 95 % of kept documents in the partition's language"),
            minhash_threshold=S(0.8, "choice: datatrove/FineWeb MinHash default ~0.8 Jaccard"),
            stage_mixtures=S(STAGE_MIXTURES, "choice: report §3.1 names the curriculum, not its weights"),
            filters=CORPUS_FILTERS,
            minhash=MINHASH_WEB,
            pipeline=PIPELINE_FULL,
        ),
        pretrain=PretrainArgs(
            total_tokens=S(11e12, "report §3.1 (11T tokens)"),
            stage_token_fractions=S(
                {"stage1": 0.6, "stage2": 0.3, "stage3": 0.1}, "choice: report gives no per-stage split"
            ),
            seq_length=S(8192, "report §3.1 (pre-training max context 8K)"),
            global_batch_size=S(2048, "choice: not in the report"),
            optimizer=S("muon", "report §3.1 (Muon)"),
            max_lr=S(3.0e-4, "report §3.1 (max LR 3.0e-4)"),
            min_lr=S(3.0e-5, "choice: WSD decays to max_lr / 10"),
            lr_schedule=S("WSD", "report §3.1 (Warmup-Stable-Decay)"),
            warmup_fraction=S(0.01, "choice: not in the report"),
            decay_fraction=S(0.1, "choice: not in the report"),
            weight_decay=S(0.1, "choice: not in the report"),
            grad_clip=S(1.0, "choice: not in the report"),
            fp8=S(True, "report §3.1 (FP8 native training)"),
            checkpoint_every_steps=S(1000, OPERATIONAL),
            seed=S(1234, OPERATIONAL),
            muon_extra_scale_factor=S(
                0.2, "choice: Moonlight's 0.2 (match AdamW update RMS; report gives no Muon knobs)"
            ),
            log_every_steps=S(10, OPERATIONAL),
            keep_checkpoints=S(2, OPERATIONAL),
        ),
        context=ContextArgs(
            stages={
                "stage1": _context_stage(
                    32_768,
                    "report §3.2 (8K -> 32K)",
                    100e9,
                    {"rehearsal": 0.5, "synthetic_reasoning": 0.2, "long_documents": 0.3},
                    2,
                    "choice: 32K on 8 GPUs (TE attention + CP)",
                    500,
                ),
                "stage2": _context_stage(
                    262_144,
                    "report §3.2 (32K -> 256K)",
                    50e9,
                    {"rehearsal": 0.4, "synthetic_reasoning": 0.2, "long_documents": 0.4},
                    8,
                    "choice: 256K needs the sequence split over 8 GPUs",
                    250,
                ),
            }
        ),
        eval=EvalArgs(
            niah_threshold=S(0.95, "issue 7 ('near perfect', default 0.95)"),
            niah_num_lengths=S(5, "issue 7 (at least 5 lengths)"),
            niah_num_depths=S(5, "issue 7 (at least 5 depths)"),
            niah_trials=S(
                80,
                "issue 13: 80 per cell, so 0.95 means 'at most 4 misses in 80' and measures a cell's accuracy, not "
                "one unlucky case (with 3 trials, one miss was 67 %)",
            ),
            short_context_ppl_tolerance=S(0.05, "choice: warn above +5 % perplexity"),
            kv_cache_eval_seq_length=S(262_144, "report: max context 262,144"),
        ),
        compute=ComputeArgs(
            gpus_per_training_step=S(8, "choice: one 8-GPU node per training pod"),
            nodes_per_training_step=S(8, "choice: 64 GPUs, the size of Megatron-Bridge's published recipe"),
            tensor_parallel=S(4, LAYOUT),
            pipeline_parallel=S(2, LAYOUT),
            expert_parallel=S(32, LAYOUT),
            micro_batch_size=S(1, "choice: one sequence per forward (the layout plan's activations)"),
            recompute=S("full", "choice: full recomputation (kexaone plan --layout: the 256K stage needs it)"),
            gpu_type=S("h200", "choice: the H200 nodes of compute.gpu_node_selector"),
            sft_context_parallel=S(2, "choice: SFT packs 32K sequences, as context stage 1 (CP 2)"),
            policy_tensor_parallel=S(8, POLICY_LAYOUT),
            policy_expert_parallel=S(64, POLICY_LAYOUT),
            gpu_node_selector=S({"nvidia.com/gpu.product": "NVIDIA-H200"}, DEPLOYMENT),
            cpu_request=S("64", DEPLOYMENT),
            memory_request=S("1600Gi", DEPLOYMENT),
        ),
        synthetic=SyntheticArgs(
            template_version=S("v1", "choice: bumped whenever a prompt or rendering template changes"),
            thinking_sources=S(
                ("stem", "en", "ko", "es", "de", "ja", "vi"),
                "report §3.1 (document-grounded thinking over STEM and the six languages)",
            ),
            thinking_max_docs_per_source=S(1_000_000, "choice: no cap at scale"),
            thinking_min_chars=S(400, "choice: drop samples too short to carry a grounded trajectory"),
            thinking_max_chars=S(64_000, "choice: fits the 8K-token stage-3 sequence at ~8 chars/token"),
            multilingual_directions={
                **{src: S(MULTILINGUAL_TARGETS, _DIRECTIONS) for src in ("en", "ko", "stem")},
                **{src: S(("en", "ko"), _DIRECTIONS) for src in MULTILINGUAL_TARGETS},
            },
            multilingual_max_docs_per_source=S(1_000_000, "choice: no cap at scale"),
            multilingual_target_chars={
                **{lang: S(4_000_000_000, _EVENLY) for lang in MULTILINGUAL_TARGETS},
                **{lang: S(2_000_000_000, _EVENLY) for lang in ("en", "ko")},
            },
            multilingual_min_chars=S(200, "choice: shorter outputs are not identified reliably by LID"),
            multilingual_max_chars=S(64_000, "choice: one synthetic document per stage-3 sequence"),
            teacher_max_tokens=S(8192, "choice: completion budget per teacher request"),
            teacher_temperature=S(0.6, "choice: report §4.1 sampling temperature for reasoning mode"),
        ),
        posttrain=PostTrainArgs(
            sft=SftArgs(
                seq_length=S(32_768, "choice: conversations packed to the 32K context of context stage 1"),
                global_batch_size=S(256, "choice: 8M tokens per step, as pre-training's 8K x 1024"),
                steps=S(4_000, "choice: ~33B tokens of instruction data (the report gives no SFT size)"),
                lr=S(1.0e-5, "choice: a common SFT peak LR for a 200B-class MoE"),
                min_lr=S(1.0e-6, "choice: decays to lr / 10 as pre-training's WSD does"),
                warmup_steps=S(100, "choice: a short warmup from the context-extension checkpoint"),
                decay_steps=S(400, "choice: the final 10 % decays (WSD)"),
                checkpoint_every_steps=S(250, OPERATIONAL),
                reasoning_share=S(0.5, "report §3.3: both modes trained; choice: half of each source's conversations"),
                max_conversations_per_source=S(10_000_000, "choice: no cap at scale"),
                family_conversations=S(
                    {
                        "arithmetic": 100_000,
                        "math_word": 200_000,
                        "multiple_choice": 20_000,
                        "code": 200_000,
                        "instruction": 200_000,
                    },
                    "choice: reference answers of the RL families' train split, so RL starts on the format",
                ),
            ),
            tool_tasks=ToolTaskArgs(
                num_tasks=S(200_000, "choice: report §3.3 stage ii gives no count"),
                tasks_per_request=S(
                    16, "choice: 16 tasks of a few hundred tokens fit synthetic.teacher_max_tokens = 8192"
                ),
                sandbox_timeout_s=S(10.0, "choice: a tool task's check runs in well under a second"),
                sandbox_memory_mb=S(1024, "choice: a tool check needs little memory"),
            ),
            prompts=RlPromptArgs(
                families=S(
                    {
                        "math_word": 100_000,
                        "multiple_choice": 20_000,
                        "code": 50_000,
                        "instruction": 50_000,
                        "tool": 50_000,
                    },
                    "choice: report §3.4 names math/STEM, code, instruction following and agentic tasks, not counts; "
                    "multiple choice for the evaluation's multiple-choice template (post-training.md §4.1)",
                ),
                held_out_fraction=S(0.02, "choice: a held-out split for post_training_eval"),
                arithmetic_range=S((10, 99), "choice: two-digit operands"),
                arithmetic_operations=S(("+", "-", "*"), "choice: the arithmetic family's operations"),
            ),
            rl=PolicyOptArgs(
                steps=S(500, "choice: rollout rounds (the report gives no RL length)"),
                prompts_per_step=S(256, "choice: prompts per rollout round"),
                group_size=S(16, "choice: G responses per prompt, as GRPO-style recipes use"),
                optimizer_steps_per_batch=S(4, "report §3.4: AGAPO is off-policy; choice: 4 updates per batch"),
                lr=S(1.0e-6, "choice: a common RL LR for a 200B-class MoE"),
                max_response_tokens=S(32_768, "choice: reasoning traces up to 32K tokens"),
                temperature=S(1.0, REPORT_DECODING),
                top_p=S(0.95, REPORT_DECODING),
                reasoning=S(True, "report §3.4: RL trains the reasoning mode"),
                checkpoint_every_steps=S(10, OPERATIONAL),
            ),
            is_clip=S(2.0, "choice: truncated IS cap C = 2, the common value (post-training reference)"),
            preference=PolicyOptArgs(
                steps=S(200, "choice: rounds (the report gives no length)"),
                prompts_per_step=S(256, "choice: prompts per rollout round"),
                group_size=S(8, "report §3.5: several responses per prompt; choice: 8"),
                optimizer_steps_per_batch=S(1, "choice: on-policy preference updates"),
                lr=S(5.0e-7, "choice: below RL's LR"),
                max_response_tokens=S(16_384, "choice: chat answers"),
                temperature=S(1.0, REPORT_DECODING),
                top_p=S(0.95, REPORT_DECODING),
                reasoning=S(False, "choice: preference learning on the non-reasoning (chat) mode"),
                checkpoint_every_steps=S(10, OPERATIONAL),
            ),
            rubric=S(
                ("correctness", "helpfulness", "instruction_following", "language", "conciseness"),
                "choice: report §3.5 scores with rubrics; these dimensions are ours",
            ),
            rule_weight=S(0.5, "choice: rule reward and rubric score weigh equally"),
            judge_max_tokens=S(512, "choice: a rubric answer is one short JSON object"),
            judge_temperature=S(0.0, "choice: greedy judging, so a score is reproducible and cacheable"),
            eval_samples=S(4, "choice: pass@1 averaged over k = 4 samples (report §4.1 samples several)"),
            eval_max_prompts=S(500, "choice: held-out prompts per family evaluated"),
        ),
        release=ReleaseArgs(
            hf_dtype=S("bfloat16", "choice: bf16, the GPU backend's parameter dtype (what vLLM / SGLang load)"),
            hf_max_shard_bytes=S(5 * 1024**3, "choice: 5 GiB safetensors shards (the Hub's usual size)"),
            temperature=S(1.0, REPORT_DECODING),
            top_p=S(0.95, REPORT_DECODING),
            num_speculative_tokens=S(
                2, "EXAONE model card: its vLLM command drafts with method mtp, num_speculative_tokens 2"
            ),
            parity_prompts=S(4, "choice: the asset check's prompts (a smoke test; the test suite compares more)"),
            parity_prompt_tokens=S(512, "choice: 4 sliding windows of 128 tokens, so window and global layers differ"),
            parity_max_abs_diff=S(
                0.25, "choice: bf16 weights run in bf16 by both frameworks; logits of O(10) agree to ~1e-2 per op"
            ),
        ),
    )


def k_exaone_236b() -> Preset:
    return split_sources(sourced_k_exaone_236b())[0]


SOURCES: dict[str, str] = split_sources(sourced_k_exaone_236b())[1]
