"""Validation of a preset: every problem found before any compute, each one line naming its field.

``Preset.validate`` joins them into one ``PresetError``. One helper (``Problems.need``) for all sections.
"""

from __future__ import annotations

from config.schema import LANGUAGES, DataArgs, Preset

VOCAB_DIVISOR = 128  # Megatron's make_vocab_size_divisible_by: embedding rows split evenly over TP ranks


class Problems(list):
    """The messages of the checks that failed."""

    def need(self, ok: bool, msg: str) -> None:
        if not ok:
            self.append(msg)


def problems(preset: Preset) -> list[str]:
    """Every problem of ``preset``, one message each naming the field (empty: valid)."""
    m, t, d, p, c, e, k = (
        preset.model,
        preset.tokenizer,
        preset.data,
        preset.pretrain,
        preset.context,
        preset.eval,
        preset.compute,
    )
    errs = Problems()
    need = errs.need

    for name, value in (
        ("num_layers", m.num_layers),
        ("hidden_size", m.hidden_size),
        ("num_attention_heads", m.num_attention_heads),
        ("num_query_groups", m.num_query_groups),
        ("kv_channels", m.kv_channels),
        ("num_moe_experts", m.num_moe_experts),
        ("sliding_window", m.sliding_window),
        ("global_attn_every", m.global_attn_every),
    ):
        need(value > 0, f"model.{name} must be positive (got {value})")
    if errs:
        return errs
    need(
        m.hidden_size % m.num_attention_heads == 0,
        f"model.num_attention_heads={m.num_attention_heads} does not divide model.hidden_size={m.hidden_size}",
    )
    need(
        m.num_attention_heads % m.num_query_groups == 0,
        f"model.num_query_groups={m.num_query_groups} does not divide "
        f"model.num_attention_heads={m.num_attention_heads}",
    )
    need(
        1 <= m.moe_router_topk <= m.num_moe_experts,
        f"model.moe_router_topk={m.moe_router_topk} must be between 1 and model.num_moe_experts={m.num_moe_experts}",
    )
    need(
        0 <= m.num_dense_layers < m.num_layers,
        f"model.num_dense_layers={m.num_dense_layers} must be below model.num_layers={m.num_layers}",
    )
    need(
        m.num_layers % m.global_attn_every == 0,
        f"model.num_layers={m.num_layers} is not a multiple of model.global_attn_every="
        f"{m.global_attn_every} (the stack must end on a global layer)",
    )
    need(
        m.sliding_window < p.seq_length,
        f"model.sliding_window={m.sliding_window} must be smaller than the pre-training "
        f"sequence pretrain.seq_length={p.seq_length}",
    )
    need(
        m.moe_router_score_function in ("sigmoid", "softmax"),
        f"model.moe_router_score_function={m.moe_router_score_function!r} is not sigmoid/softmax",
    )
    need(
        m.padded_vocab_size >= t.vocab_size,
        f"model.padded_vocab_size={m.padded_vocab_size} is smaller than tokenizer.vocab_size={t.vocab_size}",
    )
    pad = VOCAB_DIVISOR * max(1, preset.compute.tensor_parallel)
    need(
        m.padded_vocab_size % pad == 0,
        f"model.padded_vocab_size={m.padded_vocab_size} is not a multiple of {pad} (Megatron's "
        f"make_vocab_size_divisible_by={VOCAB_DIVISOR} x compute.tensor_parallel)",
    )
    need(
        m.mtp_num_layers >= 0 and 0 <= m.mtp_loss_scaling_factor <= 1,
        "model.mtp_num_layers must be >= 0 and mtp_loss_scaling_factor within [0, 1]",
    )

    need(
        0 < t.base_vocab_size < t.vocab_size,
        f"tokenizer.base_vocab_size={t.base_vocab_size} must be positive and below tokenizer.vocab_size={t.vocab_size}",
    )
    need(0 < t.keep_base_fraction <= 1, "tokenizer.keep_base_fraction must be within (0, 1]")
    need(
        t.keep_base_ancestors in ("counted", "extra"),
        f"tokenizer.keep_base_ancestors={t.keep_base_ancestors!r} is not counted or extra",
    )
    need(0 <= t.superword_fraction < 1, "tokenizer.superword_fraction must be within [0, 1)")
    need(
        set(t.superword_allocation) == {"en", "ko", "other"} and all(v > 0 for v in t.superword_allocation.values()),
        "tokenizer.superword_allocation must give positive shares to en, ko and other",
    )
    need(
        set(t.base_domains) <= set(d.domains) and set(t.reallocation_domains) <= set(d.domains),
        "tokenizer.base_domains and reallocation_domains must be corpus domains (data.domains)",
    )
    need(
        t.reallocation_split in ("pooled", "by_need"),
        f"tokenizer.reallocation_split={t.reallocation_split!r} is not pooled or by_need",
    )
    need(0 < t.held_out_fraction < 0.5, "tokenizer.held_out_fraction must be within (0, 0.5)")
    need(
        int(t.base_vocab_size * t.keep_base_fraction)
        < t.vocab_size * (1 - t.superword_fraction) - len(t.special_tokens) - 256,
        "tokenizer: the kept base tokens must fit below the transition size vocab_size x (1 - superword_fraction)",
    )
    need(
        t.normalization in ("NFC", "NFKC", "NFD", "NFKD"),
        f"tokenizer.normalization={t.normalization!r} is not a Unicode normal form",
    )

    unknown_langs = set(d.languages) - set(LANGUAGES)
    need(not unknown_langs, f"data.languages has unknown languages {sorted(unknown_langs)}")
    need(set(d.domains) >= set(d.languages), "data.domains must include every data.languages entry")
    need(
        set(d.language_score_threshold) == set(d.languages),
        "data.language_score_threshold must have exactly one entry per language",
    )
    need(
        all(0 <= v <= 1 for v in d.language_score_threshold.values()),
        "data.language_score_threshold values must be within [0, 1]",
    )
    need(0 < d.language_purity_threshold <= 1, "data.language_purity_threshold must be within (0, 1]")
    need(0 < d.minhash_threshold < 1, "data.minhash_threshold must be within (0, 1)")
    need(
        set(d.stage_mixtures) == {"stage1", "stage2", "stage3"},
        "data.stage_mixtures must define stage1, stage2 and stage3",
    )
    for stage, mix in d.stage_mixtures.items():
        need(
            set(mix) <= set(d.domains) | {"thinking_augmented", "multilingual_synthetic"},
            f"data.stage_mixtures.{stage} names unknown sources {sorted(set(mix) - set(d.domains))}",
        )
        need(
            abs(sum(mix.values()) - 1.0) < 1e-6 and all(v >= 0 for v in mix.values()),
            f"data.stage_mixtures.{stage} weights must be >= 0 and sum to 1 (got {sum(mix.values()):.4f})",
        )
    errs.extend(_corpus_filter_problems(d))

    need(
        p.total_tokens > 0 and p.seq_length > 0 and p.global_batch_size > 0,
        "pretrain.total_tokens, seq_length and global_batch_size must be positive",
    )
    need(
        set(p.stage_token_fractions) == {"stage1", "stage2", "stage3"}
        and abs(sum(p.stage_token_fractions.values()) - 1.0) < 1e-6,
        "pretrain.stage_token_fractions must cover stage1..3 and sum to 1",
    )
    need(p.optimizer in ("muon", "adam"), f"pretrain.optimizer={p.optimizer!r} is not muon/adam")
    need(
        p.lr_schedule == "WSD",
        f"pretrain.lr_schedule={p.lr_schedule!r}: only WSD (warmup-stable-decay, the "
        "report's schedule) is built by model.training",
    )
    need(0 < p.min_lr <= p.max_lr, "pretrain.min_lr must be positive and not above pretrain.max_lr")
    need(
        0 <= p.warmup_fraction and 0 <= p.decay_fraction and p.warmup_fraction + p.decay_fraction <= 1,
        "pretrain.warmup_fraction + decay_fraction must be within [0, 1]",
    )
    need(p.checkpoint_every_steps > 0, "pretrain.checkpoint_every_steps must be positive")
    need(
        p.log_every_steps > 0 and p.keep_checkpoints > 0,
        "pretrain.log_every_steps and keep_checkpoints must be positive",
    )
    need(p.muon_extra_scale_factor > 0, "pretrain.muon_extra_scale_factor must be positive")

    prev = p.seq_length
    for stage, cs in c.stages.items():
        need(
            cs.seq_length > prev,
            f"context.stages.{stage}.seq_length={cs.seq_length} must exceed the previous length {prev}",
        )
        prev = cs.seq_length
        need(
            cs.lr > 0 and 0 <= cs.retrieval_share <= 1 and cs.context_parallel >= 1 and cs.checkpoint_every_steps > 0,
            f"context.stages.{stage}: lr must be positive, retrieval_share within [0, 1], "
            "context_parallel >= 1, checkpoint_every_steps > 0",
        )
        need(
            0 < cs.retrieval_min_length <= cs.seq_length,
            f"context.stages.{stage}.retrieval_min_length={cs.retrieval_min_length} must be within "
            f"(0, seq_length={cs.seq_length}]",
        )
        need(
            isinstance(cs.answer_loss_weight, int) and 1 <= cs.answer_loss_weight <= 255,
            f"context.stages.{stage}.answer_loss_weight={cs.answer_loss_weight!r} must be an integer within [1, 255]",
        )
        need(
            set(cs.mixture) == {"rehearsal", "synthetic_reasoning", "long_documents"}
            and abs(sum(cs.mixture.values()) - 1.0) < 1e-6,
            f"context.stages.{stage}.mixture must split rehearsal/synthetic_reasoning/long_documents summing to 1",
        )

    need(0 < e.niah_threshold <= 1, "eval.niah_threshold must be within (0, 1]")
    need(
        e.niah_num_lengths >= 1 and e.niah_num_depths >= 1 and e.niah_trials >= 1,
        "eval.niah grid sizes must be positive",
    )
    need(e.short_context_ppl_tolerance >= 0, "eval.short_context_ppl_tolerance must be >= 0")

    sizes = ("tensor_parallel", "pipeline_parallel", "expert_parallel", "nodes_per_training_step", "micro_batch_size")
    for name in (*sizes, "sft_context_parallel", "policy_tensor_parallel", "policy_expert_parallel"):
        need(getattr(k, name) >= 1, f"compute.{name} must be >= 1")
    need(k.recompute in ("none", "full"), f"compute.recompute must be 'none' or 'full' (got {k.recompute!r})")
    if k.pipeline_parallel >= 1:
        need(
            m.num_layers % k.pipeline_parallel == 0,
            f"compute.pipeline_parallel={k.pipeline_parallel} does not divide model.num_layers={m.num_layers}",
        )
    if k.tensor_parallel >= 1:
        need(
            m.num_query_groups % k.tensor_parallel == 0,
            f"compute.tensor_parallel={k.tensor_parallel} does not divide model.num_query_groups={m.num_query_groups}",
        )
    if k.policy_tensor_parallel >= 1 and m.num_query_groups % k.policy_tensor_parallel:
        need(
            False,
            f"compute.policy_tensor_parallel={k.policy_tensor_parallel} does not divide "
            f"model.num_query_groups={m.num_query_groups}",
        )
    if k.policy_expert_parallel >= 1 and m.num_moe_experts % k.policy_expert_parallel:
        need(
            False,
            f"compute.policy_expert_parallel={k.policy_expert_parallel} does not divide "
            f"model.num_moe_experts={m.num_moe_experts}",
        )
    if k.expert_parallel >= 1:
        need(
            m.num_moe_experts % k.expert_parallel == 0,
            f"compute.expert_parallel={k.expert_parallel} does not divide model.num_moe_experts={m.num_moe_experts}",
        )
    errs.extend(_synthetic_problems(preset))
    errs.extend(_posttrain_problems(preset))
    errs.extend(_release_problems(preset))
    return errs


def _release_problems(preset: Preset) -> list[str]:
    r, m = preset.release, preset.model
    checks = [
        (r.hf_dtype in ("bfloat16", "float32"), f"release.hf_dtype must be bfloat16 or float32 (got {r.hf_dtype!r})"),
        (r.hf_max_shard_bytes >= 1024, "release.hf_max_shard_bytes must be >= 1024"),
        (r.temperature > 0 and 0 < r.top_p <= 1, "release: need temperature > 0 and top_p in (0, 1]"),
        (
            1 <= r.num_speculative_tokens <= 3,
            f"release.num_speculative_tokens must lie in 1..3 (got {r.num_speculative_tokens})",
        ),
        (
            r.num_speculative_tokens == 0 or m.mtp_num_layers >= 1,
            "release.num_speculative_tokens needs an MTP layer (model.mtp_num_layers >= 1)",
        ),
        (r.parity_prompts >= 1, "release.parity_prompts must be >= 1"),
        (
            r.parity_prompt_tokens > m.sliding_window,
            f"release.parity_prompt_tokens={r.parity_prompt_tokens} must exceed "
            f"model.sliding_window={m.sliding_window} "
            "(the check must reach past the window)",
        ),
        (r.parity_max_abs_diff > 0, "release.parity_max_abs_diff must be positive"),
    ]
    return [message for ok, message in checks if not ok]


def _synthetic_problems(preset: Preset) -> list[str]:
    """Validation of the synthetic section (Preset.problems)."""
    s, d = preset.synthetic, preset.data
    errs = Problems()
    need = errs.need

    need(bool(s.template_version.strip()), "synthetic.template_version must not be empty")
    need(
        bool(s.thinking_sources) and set(s.thinking_sources) <= set(d.domains),
        f"synthetic.thinking_sources must be non-empty corpus domains (got {list(s.thinking_sources)})",
    )
    need(
        all(d.filters[x].lid_language for x in s.thinking_sources if x in d.filters),
        "synthetic.thinking_sources must have a language (data.filters.<source>.lid_language); code has none",
    )
    need(
        s.thinking_max_docs_per_source >= 1 and s.multilingual_max_docs_per_source >= 1,
        "synthetic.*_max_docs_per_source must be >= 1",
    )
    need(0 < s.thinking_min_chars < s.thinking_max_chars, "synthetic: need 0 < thinking_min_chars < thinking_max_chars")
    need(
        0 < s.multilingual_min_chars < s.multilingual_max_chars,
        "synthetic: need 0 < multilingual_min_chars < multilingual_max_chars",
    )
    need(
        bool(s.multilingual_directions) and set(s.multilingual_directions) <= set(d.domains),
        "synthetic.multilingual_directions must map corpus domains to target languages",
    )
    targets = {t for ts in s.multilingual_directions.values() for t in ts}
    need(
        targets <= set(d.languages),
        f"synthetic.multilingual_directions targets {sorted(targets - set(d.languages))} are not data.languages",
    )
    need(
        all(d.filters[src].lid_language not in ts for src, ts in s.multilingual_directions.items() if src in d.filters),
        "synthetic.multilingual_directions: a source cannot target its own language",
    )
    need(
        set(s.multilingual_target_chars) == targets and all(v > 0 for v in s.multilingual_target_chars.values()),
        "synthetic.multilingual_target_chars must give a positive character target to every target language",
    )
    need(
        s.teacher_max_tokens > 0 and 0 <= s.teacher_temperature <= 2,
        "synthetic.teacher_max_tokens must be positive and teacher_temperature within [0, 2]",
    )
    return errs


# task families posttrain.prompts builds (kept here as names: config imports no science package)
PROMPT_FAMILIES = ("arithmetic", "math_word", "multiple_choice", "code", "instruction", "tool")
ARITHMETIC_OPERATIONS = ("+", "-", "*", "next", "max")


def _posttrain_problems(preset: Preset) -> list[str]:
    """Validation of the post-training section (Preset.problems)."""
    pt = preset.posttrain
    errs = Problems()
    need = errs.need
    s = pt.sft
    need(
        s.seq_length >= 64 and s.global_batch_size >= 1 and s.steps >= 1,
        "posttrain.sft: need seq_length >= 64, global_batch_size >= 1 and steps >= 1",
    )
    need(
        s.seq_length <= max(cs.seq_length for cs in preset.context.stages.values()),
        f"posttrain.sft.seq_length={s.seq_length} is beyond the longest context stage (the model never saw it)",
    )
    need(0 < s.min_lr <= s.lr, "posttrain.sft: need 0 < min_lr <= lr")
    need(
        0 <= s.warmup_steps and 1 <= s.decay_steps and s.warmup_steps + s.decay_steps <= s.steps,
        "posttrain.sft: need warmup_steps >= 0, decay_steps >= 1 and warmup_steps + decay_steps <= steps",
    )
    need(s.checkpoint_every_steps >= 1, "posttrain.sft.checkpoint_every_steps must be >= 1")
    need(0 <= s.reasoning_share <= 1, "posttrain.sft.reasoning_share must lie in [0, 1]")
    need(s.max_conversations_per_source >= 1, "posttrain.sft.max_conversations_per_source must be >= 1")
    need(
        set(s.family_conversations) <= set(PROMPT_FAMILIES) and all(v >= 0 for v in s.family_conversations.values()),
        f"posttrain.sft.family_conversations: families must be among {', '.join(PROMPT_FAMILIES)} with counts >= 0",
    )
    t = pt.tool_tasks
    need(
        t.num_tasks >= 1 and t.tasks_per_request >= 1 and t.sandbox_timeout_s > 0 and t.sandbox_memory_mb >= 64,
        "posttrain.tool_tasks: need num_tasks >= 1, tasks_per_request >= 1, sandbox_timeout_s > 0 and "
        "sandbox_memory_mb >= 64",
    )
    fam = pt.prompts.families
    need(
        bool(fam) and set(fam) <= set(PROMPT_FAMILIES) and all(v >= 1 for v in fam.values()),
        f"posttrain.prompts.families must map some of {', '.join(PROMPT_FAMILIES)} to counts >= 1 (got {dict(fam)})",
    )
    need(0 < pt.prompts.held_out_fraction < 1, "posttrain.prompts.held_out_fraction must lie in (0, 1)")
    low, high = pt.prompts.arithmetic_range
    need(0 <= low <= high, "posttrain.prompts.arithmetic_range must be [low, high] with 0 <= low <= high")
    need(
        bool(pt.prompts.arithmetic_operations) and set(pt.prompts.arithmetic_operations) <= set(ARITHMETIC_OPERATIONS),
        f"posttrain.prompts.arithmetic_operations must be among {', '.join(ARITHMETIC_OPERATIONS)}",
    )
    for name, st in (("rl", pt.rl), ("preference", pt.preference)):
        need(
            st.steps >= 1 and st.prompts_per_step >= 1 and st.optimizer_steps_per_batch >= 1,
            f"posttrain.{name}: need steps, prompts_per_step and optimizer_steps_per_batch >= 1",
        )
        need(st.group_size >= 2, f"posttrain.{name}.group_size must be >= 2 (advantages compare responses in a group)")
        need(st.lr > 0, f"posttrain.{name}.lr must be positive")
        need(st.max_response_tokens >= 1, f"posttrain.{name}.max_response_tokens must be >= 1")
        need(
            0 < st.temperature <= 2 and 0 < st.top_p <= 1,
            f"posttrain.{name}: need temperature in (0, 2] and top_p in (0, 1]",
        )
        need(st.checkpoint_every_steps >= 1, f"posttrain.{name}.checkpoint_every_steps must be >= 1")
        need(
            st.max_response_tokens < max(cs.seq_length for cs in preset.context.stages.values()),
            f"posttrain.{name}.max_response_tokens={st.max_response_tokens} is beyond the model's context",
        )
    need(pt.is_clip >= 1, f"posttrain.is_clip={pt.is_clip} must be >= 1 (a cap on the importance weight)")
    need(bool(pt.rubric) and len(set(pt.rubric)) == len(pt.rubric), "posttrain.rubric must list distinct dimensions")
    need(0 <= pt.rule_weight <= 1, "posttrain.rule_weight must lie in [0, 1]")
    need(
        pt.judge_max_tokens >= 16 and 0 <= pt.judge_temperature <= 2,
        "posttrain: need judge_max_tokens >= 16 and judge_temperature in [0, 2]",
    )
    need(pt.eval_samples >= 1 and pt.eval_max_prompts >= 1, "posttrain.eval_samples and eval_max_prompts must be >= 1")
    return errs


def _corpus_filter_problems(d: DataArgs) -> list[str]:
    """Validation of the corpus filter, MinHash and pipeline sections (Preset.problems)."""
    errs = Problems()
    need = errs.need

    need(set(d.filters) == set(d.domains), "data.filters must have exactly one entry per data.domains entry")
    for domain, f in d.filters.items():
        where = f"data.filters.{domain}"
        need(
            f.word_tokenizer in ("space_delimited", "japanese_script", "code"),
            f"{where}.word_tokenizer={f.word_tokenizer!r} is not space_delimited/japanese_script/code",
        )
        need(
            f.lid_language is None or f.lid_language in d.language_score_threshold,
            f"{where}.lid_language={f.lid_language!r} has no data.language_score_threshold entry",
        )
        g = f.gopher_quality
        if g is not None:
            need(
                0 < g.min_doc_words < g.max_doc_words, f"{where}.gopher_quality: need 0 < min_doc_words < max_doc_words"
            )
            need(
                g.min_avg_word_length is None
                or g.max_avg_word_length is None
                or 0 < g.min_avg_word_length < g.max_avg_word_length,
                f"{where}.gopher_quality: need 0 < min_avg_word_length < max_avg_word_length",
            )
            need(
                all(
                    0 <= v <= 1
                    for v in (
                        g.max_symbol_word_ratio,
                        g.max_bullet_lines_ratio,
                        g.max_ellipsis_lines_ratio,
                        g.min_alpha_words_ratio,
                    )
                ),
                f"{where}.gopher_quality ratios must be within [0, 1]",
            )
            need(
                0 <= g.min_stop_words <= len(g.stop_words),
                f"{where}.gopher_quality.min_stop_words={g.min_stop_words} exceeds the "
                f"{len(g.stop_words)} stop words listed",
            )
        r = f.gopher_repetition
        if r is not None:
            fracs = [
                r.dup_line_frac,
                r.dup_para_frac,
                r.dup_line_char_frac,
                r.dup_para_char_frac,
                *(v for _, v in r.top_n_grams),
                *(v for _, v in r.dup_n_grams),
            ]
            need(
                all(0 < v <= 1 for v in fracs) and all(n >= 1 for n, _ in (*r.top_n_grams, *r.dup_n_grams)),
                f"{where}.gopher_repetition fractions must be within (0, 1] and n-gram sizes >= 1",
            )
        w = f.fineweb_quality
        if w is not None:
            need(
                all(0 <= v <= 1 for v in (w.line_punct_thr, w.short_line_thr, w.char_duplicates_ratio))
                and w.short_line_length > 0
                and w.new_line_ratio > 0,
                f"{where}.fineweb_quality ratios must be within [0, 1] and lengths positive",
            )
        c = f.c4
        if c is not None:
            need(
                c.min_num_sentences >= -1 and c.min_words_per_line >= -1 and c.max_word_length > 0,
                f"{where}.c4: sentence/word counts must be >= -1 and max_word_length positive",
            )
        k = f.code_quality
        if k is not None:
            need(
                k.max_line_length > 0
                and 0 < k.max_mean_line_length <= k.max_line_length
                and 0 <= k.min_alphanum_fraction <= 1
                and k.min_lines >= 0
                and k.max_bytes > 0,
                f"{where}.code_quality: lengths must be positive (mean <= max) and min_alphanum_fraction within [0, 1]",
            )
        need(
            f.code_quality is not None or f.gopher_quality is not None or f.lid_language is not None,
            f"{where} applies no filter at all",
        )
    m = d.minhash
    need(
        m.n_grams >= 1 and m.num_buckets >= 1 and m.hashes_per_bucket >= 1,
        "data.minhash.n_grams, num_buckets and hashes_per_bucket must be >= 1",
    )
    if m.num_buckets >= 1 and m.hashes_per_bucket >= 1 and not m.candidate_check:
        need(
            abs(m.lsh_threshold - d.minhash_threshold) <= 0.1,
            f"data.minhash: its candidate similarity (1/num_buckets)^(1/hashes_per_bucket)="
            f"{m.lsh_threshold:.2f} is more than 0.1 away from data.minhash_threshold={d.minhash_threshold}",
        )
    if m.num_buckets >= 1 and m.hashes_per_bucket >= 1 and m.candidate_check:
        found = 1 - (1 - d.minhash_threshold**m.hashes_per_bucket) ** m.num_buckets
        need(
            found >= 0.9,
            f"data.minhash: only {found:.0%} of pairs at data.minhash_threshold="
            f"{d.minhash_threshold} become candidates; band more loosely (more buckets or fewer "
            "hashes per bucket) for the candidate check to see them",
        )
    pl = d.pipeline
    need(pl.tasks >= 1, f"data.pipeline.tasks must be >= 1 (got {pl.tasks})")
    need(pl.purity_min_chars >= 1, "data.pipeline.purity_min_chars must be >= 1")
    return errs
