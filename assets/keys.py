"""Every asset's name, in one place (the graph and its names: the project's asset-graph design).

Per-stage and per-source assets are named by the functions below; the stages and sources themselves come
from the preset (``data.domains``, ``pretrain.stage_token_fractions``, ``context.stages``).
"""

from __future__ import annotations

RAW_CORPUS_STATS = "raw_corpus_stats"
FILTERED_CORPUS = "filtered_corpus"
DEDUPLICATED_CORPUS = "deduplicated_corpus"
BASE_TOKENIZER = "base_tokenizer"
SUPERBPE_TOKENIZER = "superbpe_tokenizer"
TOKENIZER_REPORT = "tokenizer_report"
THINKING_AUGMENTED_DATA = "thinking_augmented_data"
MULTILINGUAL_SYNTHETIC_DATA = "multilingual_synthetic_data"
SHORT_CONTEXT_EVAL = "short_context_eval"
EVALUATION_SUMMARY = "evaluation_summary"
TOOL_USE_TASKS = "tool_use_tasks"
RL_PROMPTS = "rl_prompts"
SFT_DATA = "sft_data"
SFT_CHECKPOINT = "sft_checkpoint"
RL_CHECKPOINT = "rl_checkpoint"
PREFERENCE_CHECKPOINT = "preference_checkpoint"
POST_TRAINING_EVAL = "post_training_eval"
HF_CHECKPOINT = "hf_checkpoint"


def raw_corpus(source: str) -> str:
    return f"raw_corpus_{source}"


def tokenized_mixture(stage: str) -> str:
    return f"tokenized_mixture_{stage}"


def pretrain(stage: str) -> str:
    return f"pretrain_{stage}"


def context_mixture(stage: str) -> str:
    return f"context_mixture_{stage}"


def context_ext(stage: str) -> str:
    return f"context_ext_{stage}"


def niah_report(stage: str) -> str:
    return f"niah_report_{stage}"
