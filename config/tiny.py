"""``tiny``: the same architecture scaled so the whole chain trains for real on a 2-core CPU.

Every value ``tiny`` changes carries its own source (``S(value, "tiny: ...")``); the rest keeps the full
preset's value and source. ``TINY_SOURCES`` is the resulting table.
"""

from __future__ import annotations

import dataclasses

from config.corpus_filters import MINHASH_TINY, PIPELINE_TINY
from config.k_exaone_236b import MULTILINGUAL_TARGETS, sourced_k_exaone_236b
from config.schema import ContextArgs, ContextStageArgs, Preset, SyntheticArgs
from config.sourced import S, split_sources

SHAPE = "tiny: 2-core CPU scale"
CPU = "tiny: no GPU (CPU run)"
DEMO_CAP = "tiny: caps the demo's teacher calls"
# a 4-layer model learns the lookup only when most of its context-stage tokens are retrieval documents
CONTEXT_MIX_TINY = S(
    {"rehearsal": 0.2, "synthetic_reasoning": 0.1, "long_documents": 0.7},
    "tiny: mostly retrieval documents; a 4-layer model learns the lookup only from them (bench/niah_margin.py)",
)
# tuned so the tiny model passes its own NIAH gate with margin (bench/niah_margin.py, docs/context-extension.md)
NIAH_TUNED = "tiny: tuned for the NIAH gate with margin (docs/context-extension.md)"


def sourced_tiny() -> Preset:
    """Same architecture, scaled so the whole chain trains on 2 CPU cores in minutes.

    Ratios of the recipe are kept: 3 SWA : 1 global, dense first layer, top-k/experts = 1/16 -> 2/8 is
    relaxed to keep routing meaningful with few experts, context x4 then x8, dense FFN = 3 x hidden.

    The shape was not what limited the NIAH gate (docs/context-extension.md): width 128 and head
    dimension 32 cost 1.5x per step and scored the same as this shape over three grids.
    """
    full = sourced_k_exaone_236b()
    return dataclasses.replace(
        full,
        name="tiny",
        model=dataclasses.replace(
            full.model,
            num_layers=S(4, "tiny: 3 SWA : 1 global kept with one dense layer"),
            hidden_size=S(64, SHAPE),
            num_attention_heads=S(4, SHAPE),
            num_query_groups=S(2, "tiny: GQA kept (2 query heads per KV head)"),
            kv_channels=S(16, "tiny: hidden / heads"),
            ffn_hidden_size=S(192, "tiny: dense FFN = 3 x hidden, as in the full model"),
            num_moe_experts=S(8, SHAPE),
            moe_router_topk=S(2, "tiny: top-2 of 8 keeps routing meaningful with few experts"),
            moe_ffn_hidden_size=S(32, "tiny: expert FFN = hidden / 2"),
            moe_shared_expert_intermediate_size=S(32, "tiny: shared expert = routed expert size"),
            sliding_window=S(16, "tiny: windows much shorter than the 128-512 token pre-training sequences"),
            padded_vocab_size=S(2048, "tiny: the 1536-token vocabulary with room above it, a multiple of 128"),
        ),
        tokenizer=dataclasses.replace(
            full.tokenizer,
            base_vocab_size=S(1024, "tiny: a vocabulary the demo corpus can fill"),
            vocab_size=S(1536, "tiny: base + 50 % like 100K -> 150K"),
            keep_base_ancestors=S(
                "extra",
                "tiny: the kept base the tiny chain's NIAH margins were measured with (bench/niah_margin.py); "
                "counted changes every tiny token",
            ),
            reallocation_split=S(
                "pooled",
                "tiny: the split the tiny chain's NIAH margins were measured with (bench/niah_margin.py); by_need "
                "changes every tiny token",
            ),
        ),
        data=dataclasses.replace(
            full.data,
            minhash=MINHASH_TINY,
            minhash_threshold=S(
                0.35, "tiny: the candidate check's similarity; copies with 10 % edited words are ~0.57 (MINHASH_TINY)"
            ),
            pipeline=PIPELINE_TINY,
        ),
        pretrain=dataclasses.replace(
            full.pretrain,
            total_tokens=S(3 * 64 * 8 * 128, "tiny: 64 steps of 8 x 128 tokens per stage"),
            seq_length=S(128, SHAPE),
            global_batch_size=S(8, SHAPE),
            min_lr=S(3.0e-4 / 10, "choice: WSD decays to max_lr / 10"),
            fp8=S(False, "tiny: FP8 needs Transformer Engine on a GPU"),
            checkpoint_every_steps=S(20, "tiny: several resumable checkpoints per stage"),
            stage_token_fractions=S({"stage1": 1 / 3, "stage2": 1 / 3, "stage3": 1 / 3}, "tiny: equal stages"),
        ),
        context=ContextArgs(
            stages={
                # Stage 1: mostly retrieval documents, the short ones first teaching the lookup itself, answers
                # weighted in the loss. Stage 2: 400 steps (cheap since the CPU attention skips the O(s^2) window
                # masks) at a third of stage 1's final LR, retrieval documents of 512-4096 tokens: at 3e-4 and
                # 4096 only it lost some of stage 1's precision at 512-1406 tokens.
                "stage1": ContextStageArgs(
                    seq_length=S(512, "tiny: x4, as 8K -> 32K"),
                    tokens=S(2000 * 2 * 512, NIAH_TUNED),
                    mixture=CONTEXT_MIX_TINY,
                    lr=S(3.0e-3, NIAH_TUNED),
                    retrieval_share=S(1.0, NIAH_TUNED),
                    retrieval_min_length=S(128, NIAH_TUNED),
                    answer_loss_weight=S(30, NIAH_TUNED),
                    context_parallel=S(1, CPU),
                    checkpoint_every_steps=S(250, "choice: operational (a crash costs at most this many steps)"),
                ),
                "stage2": ContextStageArgs(
                    seq_length=S(4096, "tiny: x8, as 32K -> 256K"),
                    tokens=S(400 * 1 * 4096, NIAH_TUNED),
                    mixture=CONTEXT_MIX_TINY,
                    lr=S(1.0e-4, NIAH_TUNED),
                    retrieval_share=S(1.0, NIAH_TUNED),
                    retrieval_min_length=S(512, NIAH_TUNED),
                    answer_loss_weight=S(30, NIAH_TUNED),
                    context_parallel=S(1, CPU),
                    checkpoint_every_steps=S(50, "choice: operational (a crash costs at most this many steps)"),
                ),
            }
        ),
        eval=dataclasses.replace(
            full.eval, kv_cache_eval_seq_length=S(4096, "tiny: the longest context stage's length")
        ),
        synthetic=SyntheticArgs(
            template_version=full.synthetic.template_version,
            thinking_sources=S(("stem", "en"), "tiny: the demo corpus's STEM and English documents"),
            thinking_max_docs_per_source=S(40, DEMO_CAP),
            thinking_min_chars=S(300, "tiny: the demo's documents are short"),
            thinking_max_chars=S(6000, "tiny: demo scale"),
            multilingual_directions={
                src: S(
                    MULTILINGUAL_TARGETS,
                    "report §3.1 (en/ko knowledge spread to de/ja/vi/es); tiny: these three sources only",
                )
                for src in ("en", "ko", "stem")
            },
            multilingual_max_docs_per_source=S(40, DEMO_CAP),
            multilingual_target_chars={
                "de": S(3000, DEMO_CAP),
                "ja": S(1500, "tiny: Japanese carries ~2x the information per character"),
                "vi": S(3000, DEMO_CAP),
                "es": S(3000, DEMO_CAP),
            },
            multilingual_min_chars=S(120, "tiny: the demo's documents are short"),
            multilingual_max_chars=S(4000, "tiny: the demo's documents are short"),
            teacher_max_tokens=S(1024, DEMO_CAP),
            teacher_temperature=full.synthetic.teacher_temperature,
        ),
        posttrain=dataclasses.replace(
            full.posttrain,
            sft=dataclasses.replace(
                full.posttrain.sft,
                seq_length=S(
                    1024, "tiny: fits the demo's thinking samples; longer conversations are dropped (counted)"
                ),
                global_batch_size=S(2, SHAPE),
                steps=S(300, "tiny: ~600K tokens, about a minute on 2 cores"),
                lr=S(
                    3.0e-4,
                    "tiny: at 1e-3 the stage-2 NIAH fell from 99.6 % to 87.6 %; at 3e-4 it stayed at 99.6 % "
                    "(docs/post-training.md)",
                ),
                min_lr=S(3.0e-5, "choice: decays to lr / 10 as pre-training's WSD does"),
                warmup_steps=S(10, SHAPE),
                decay_steps=S(60, "tiny: the final 20 % decays"),
                checkpoint_every_steps=S(100, "tiny: several resumable checkpoints per stage"),
                max_conversations_per_source=S(400, DEMO_CAP),
                family_conversations=S({"arithmetic": 3000}, "tiny: the arithmetic family RL trains on"),
            ),
            tool_tasks=dataclasses.replace(
                full.posttrain.tool_tasks,
                num_tasks=S(24, DEMO_CAP),
                tasks_per_request=S(4, "tiny: 4 tasks fit synthetic.teacher_max_tokens = 1024"),
                sandbox_timeout_s=S(5.0, "tiny: programmatic checks run in milliseconds"),
                sandbox_memory_mb=S(256, "tiny: the 2-core, small-memory CI machine"),
            ),
            prompts=dataclasses.replace(
                full.posttrain.prompts,
                families=S(
                    {
                        "arithmetic": 600,
                        "math_word": 16,
                        "multiple_choice": 16,
                        "code": 8,
                        "instruction": 16,
                        "tool": 16,
                    },  # fmt: skip
                    "tiny: the arithmetic family the small model can learn, a few of each other kind",
                ),
                held_out_fraction=S(0.2, "tiny: enough held-out arithmetic prompts for pass@1"),
                arithmetic_operations=S(
                    ("+", "next", "max"),
                    "tiny: after SFT (greedy, held-out) two-digit sums 2 %, larger-of-two 70 %: RL has room "
                    "(docs/post-training.md)",
                ),
            ),
            rl=dataclasses.replace(
                full.posttrain.rl,
                steps=S(30, "tiny: a minute of rollouts and updates on 2 cores"),
                prompts_per_step=S(8, SHAPE),
                group_size=S(8, "tiny: G = 8 gives non-zero-variance groups at 10-70 % pass@1"),
                optimizer_steps_per_batch=S(2, "tiny: off-policy, 2 updates per batch"),
                lr=S(3.0e-4, "tiny: a small model moves at a larger LR"),
                max_response_tokens=S(16, "tiny: arithmetic answers are a few tokens"),
                reasoning=S(False, "tiny: the arithmetic family is answered directly (no trajectory)"),
                checkpoint_every_steps=S(10, "tiny: several resumable checkpoints per stage"),
            ),
            preference=dataclasses.replace(
                full.posttrain.preference,
                steps=S(10, DEMO_CAP),
                prompts_per_step=S(4, SHAPE),
                group_size=S(4, SHAPE),
                lr=S(1.0e-4, "tiny: a small model moves at a larger LR"),
                max_response_tokens=S(16, "tiny: arithmetic answers are a few tokens"),
                checkpoint_every_steps=S(5, "tiny: several resumable checkpoints per stage"),
            ),
            eval_max_prompts=S(50, DEMO_CAP),
        ),
        compute=dataclasses.replace(
            full.compute,
            gpus_per_training_step=S(0, CPU),
            nodes_per_training_step=S(1, CPU),
            tensor_parallel=S(1, CPU),
            pipeline_parallel=S(1, CPU),
            expert_parallel=S(1, CPU),
            micro_batch_size=S(1, "tiny: no GPU layout on CPU (the trainer runs whole batches); 1 divides every batch"),
            recompute=S("none", "tiny: no recomputation on CPU"),
            sft_context_parallel=S(1, CPU),
            policy_tensor_parallel=S(1, CPU),
            policy_expert_parallel=S(1, CPU),
            gpu_node_selector=S({}, CPU),
            cpu_request=S("2", "tiny: the 2-core CI machine"),
            memory_request=S("8Gi", "tiny: a small pod request (deployment-specific)"),
        ),
        release=dataclasses.replace(
            full.release,
            hf_dtype=S("float32", "issue 18: the transformers parity is checked in fp32 on tiny"),
            hf_max_shard_bytes=S(
                1024**2, "tiny: 1 MiB shards, so the demo writes the sharded layout (index) the full preset gets"
            ),
            parity_prompt_tokens=S(48, "tiny: 3 sliding windows of 16 tokens"),
            parity_max_abs_diff=S(1e-4, "issue 18: fp32 logits within 1e-4 on tiny"),
        ),
    )


def tiny() -> Preset:
    return split_sources(sourced_tiny())[0]


TINY_SOURCES: dict[str, str] = split_sources(sourced_tiny())[1]
