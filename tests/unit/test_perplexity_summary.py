"""evaluation/perplexity.py on the real tiny model, and evaluation/summary.py's page and drift chart."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.perplexity import Drift, drift, held_out_windows, perplexity
from evaluation.summary import (
    CHAIN_ORDER,
    NOT_AVAILABLE,
    CorpusStat,
    DriftSection,
    EvaluationSections,
    LossCurve,
    NiahStage,
    PostTrainingSection,
    TokenizerEfficiency,
    drift_plot_png,
    evaluation_summary_markdown,
)
from model import training
from model.architecture import build_model
from tests.model_support import MEGATRON_QUIET

pytestmark = MEGATRON_QUIET  # Megatron-Core's CPU-fallback warnings are not our findings
EOD = 1


def _held_out(n_docs: int = 12, seed: int = 0) -> list[list[int]]:
    """Documents that repeat a short motif: learnable in a few steps, and ending with EOD as stored."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(2, 1536, size=6).tolist() * 8) + [EOD] for _ in range(n_docs)]


# --- held_out_windows -----------------------------------------------------------------------------


def test_windows_are_non_overlapping_cuts_of_the_concatenated_documents():
    docs = [[2, 3, EOD], [4, 5, 6, 7, EOD], [8, EOD], [9, 10, 11, EOD]]
    stream = [t for d in docs for t in d]  # 14 tokens: three windows of 4, the 2-token tail dropped
    windows = held_out_windows(docs, seq_length=3, max_windows=10)
    assert windows == [stream[0:4], stream[4:8], stream[8:12]]
    assert held_out_windows(docs, seq_length=3, max_windows=10) == windows  # deterministic


def test_more_windows_than_asked_keeps_evenly_spaced_ones():
    docs = [list(range(2, 102))]  # 100 tokens: 20 windows of 5
    windows = held_out_windows(docs, seq_length=4, max_windows=3)
    assert [w[0] for w in windows] == [2, 2 + 5 * 10, 2 + 5 * 19]  # first, middle, last
    assert all(len(w) == 5 for w in windows)


@pytest.mark.parametrize(
    "docs, seq, n, message",
    [
        ([[2, 3, EOD]], 3, 1, "fewer than one window of seq_length + 1 = 4"),
        ([[2, 3, EOD]], 0, 1, "seq_length must be an integer >= 1"),
        ([[2, 3, EOD]], 1, 0, "max_windows must be an integer >= 1"),
    ],
)
def test_bad_window_arguments_fail_with_one_line(docs, seq, n, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        held_out_windows(docs, seq, n)


# --- perplexity on the tiny Megatron model ---------------------------------------------------------


def test_random_init_scores_near_the_vocabulary_size_and_equals_the_main_heads_cross_entropy(tiny):  # noqa: F811 (pytest fixture)
    preset, model = tiny
    windows = held_out_windows(_held_out(), seq_length=32, max_windows=8)
    result = perplexity(model, windows, batch_size=3)  # 8 windows: batches of 3, 3, 2
    assert result.windows == 8 and result.tokens == 8 * 32
    assert math.isfinite(result.perplexity) and result.perplexity == pytest.approx(math.exp(result.mean_loss))
    # Near-uniform logits over the padded embedding (2048 rows): perplexity of that order.
    assert preset.model.padded_vocab_size / 3 < result.perplexity < preset.model.padded_vocab_size * 3
    assert model.training  # the mode it found

    # The loss GPTModel returns with labels is the main head's: same as cross entropy of its logits.
    model.eval()
    with torch.no_grad():
        batch = training.batch_from_tokens(torch.tensor(windows))
        logits = model(batch["input_ids"], batch["position_ids"], None)
        manual = F.cross_entropy(logits.flatten(0, 1).double(), batch["labels"].flatten()).item()
    assert result.mean_loss == pytest.approx(manual, rel=1e-5)


def test_a_few_training_steps_on_the_windows_lower_their_perplexity(megatron_cpu):  # noqa: F811 (pytest fixture)
    preset = megatron_cpu.with_overrides({"pretrain.max_lr": 1e-2, "pretrain.min_lr": 1e-3})
    model = build_model(preset)
    optimizer, windows = training.adamw(model, preset), held_out_windows(_held_out(), 32, 8)
    scheduler = training.wsd_scheduler(optimizer, preset)
    before = perplexity(model, windows, batch_size=8)
    batch = training.batch_from_tokens(torch.tensor(windows))
    for _ in range(8):
        training.train_step(model, optimizer, scheduler, batch, grad_clip=preset.pretrain.grad_clip)
    after = perplexity(model, windows, batch_size=8)
    assert after.perplexity < before.perplexity / 2
    assert perplexity(model, windows, batch_size=8) == after  # scoring changes nothing


def test_bad_perplexity_input_fails_before_the_model_runs(tiny):  # noqa: F811 (pytest fixture)
    _, model = tiny
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        perplexity(model, [[2, 3, 4]], batch_size=0)
    with pytest.raises(ValueError, match="with seq_length >= 1"):
        perplexity(model, [[2]], batch_size=1)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2048\)"):
        perplexity(model, [[2, 5000]], batch_size=1)


# --- drift -------------------------------------------------------------------------------------------


def test_drift_flags_exactly_the_domains_above_tolerance():
    base = {"en": 10.0, "ko": 20.0, "code": 5.0, "stem": 8.0}
    now = {"en": 10.4, "ko": 21.2, "code": 5.25, "stem": 7.0}  # +4 %, +6 %, +5 % (not over), -12.5 %
    flagged = drift(base, now, tolerance=0.05)
    assert [d.domain for d in flagged] == ["ko"]
    assert flagged[0] == Drift("ko", 20.0, 21.2, pytest.approx(0.06))
    assert drift(base, base, 0.0) == []
    assert [d.domain for d in drift(base, now, 0.0)] == ["en", "ko", "code"]


@pytest.mark.parametrize(
    "now, tolerance, message",
    [
        ({"en": 10.0}, 0.05, "only baseline: ko; only stage: -"),
        ({"en": 10.0, "ko": float("nan")}, 0.05, "stage perplexity must be a finite number > 0"),
        ({"en": 10.0, "ko": 1.0}, -0.1, "tolerance must be a finite number >= 0"),
    ],
)
def test_bad_drift_input_fails_with_one_line(now, tolerance, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        drift({"en": 10.0, "ko": 20.0}, now, tolerance)
    assert "\n" not in str(err.value)


# --- summary -----------------------------------------------------------------------------------------

PPL = {
    "pretrain_stage1": {"en": 40.0, "ko": 60.0},
    "pretrain_stage2": {"en": 30.0, "ko": 45.0},
    "pretrain_stage3": {"en": 25.0, "ko": 40.0},
    "context_ext_stage1": {"en": 25.5, "ko": 44.0},
    "context_ext_stage2": {"en": 26.0, "ko": 43.0},
}


def _ppl_rows() -> list[dict]:
    rows = [{"checkpoint": c, "domain": d, "perplexity": v} for c, values in PPL.items() for d, v in values.items()]
    return rows[::-1]  # warehouse order is arbitrary: the chain order comes from CHAIN_ORDER


def _sections(**overrides) -> EvaluationSections:
    args = dict(
        corpus=[CorpusStat("en", 120, 80_000, 100, 90), CorpusStat("ko", 60, 50_000, 55, 50)],
        tokenizer=[
            TokenizerEfficiency(t, d, v)
            for t, d, v in [("base", "en", 4.1), ("superbpe", "en", 5.3), ("base", "ko", 2.2), ("superbpe", "ko", 3.0)]
        ],
        loss_curves=[LossCurve(c, f"loss_{c}.png", final_lm_loss=3.2, steps=24) for c in reversed(CHAIN_ORDER)],
        niah=[
            NiahStage("context_ext_stage1", "niah_context_ext_stage1.png", 0.97, 0.95, True),
            NiahStage("context_ext_stage2", "niah_context_ext_stage2.png", 0.62, 0.95, False),
        ],
        drift=DriftSection(_ppl_rows(), baseline="pretrain_stage3", tolerance=0.05, image="short_context_drift.png"),
        notes=["preset `tiny`"],
    )
    args.update(overrides)
    return EvaluationSections(**args)


def test_the_summary_holds_every_section_in_chain_order_with_its_images():
    md = evaluation_summary_markdown(_sections())
    headings = [
        "## Corpus",
        "## Tokenizer efficiency",
        "## Training loss",
        "## Needle in a haystack",
        "## Short-context drift",
    ]
    assert [md.index(h) for h in headings] == sorted(md.index(h) for h in headings)
    assert "| **total** | 180 | 130,000 | 155 | 140 |" in md
    assert "| en | 4.10 | 5.30 |" in md and "| domain | base | superbpe |" in md
    loss_links = [md.index(f"![loss curve {c}](loss_{c}.png)") for c in CHAIN_ORDER]
    assert loss_links == sorted(loss_links)  # chain order although given reversed
    assert "![NIAH heatmap context_ext_stage1](niah_context_ext_stage1.png)" in md
    assert "![NIAH heatmap context_ext_stage2](niah_context_ext_stage2.png)" in md
    assert "| context_ext_stage1 | 0.970 | 0.95 | PASS |" in md and "| context_ext_stage2 | 0.620 | 0.95 | FAIL |" in md
    assert "![short-context perplexity per domain](short_context_drift.png)" in md
    # ko: 40 -> 44 (+10 %) and 43 (+7.5 %) are over 5 %; en: +2 %, +4 % are not.
    assert "| ko | 60.00 | 45.00 | 40.00 | 44.00 (+10.0%) **over** | 43.00 (+7.5%) **over** |" in md
    assert "| en | 40.00 | 30.00 | 25.00 | 25.50 (+2.0%) | 26.00 (+4.0%) |" in md
    assert "**Drift over tolerance:** `context_ext_stage1` ko 40.00 -> 44.00 (+10.0%)" in md


POST = ("context_ext_stage2", "sft_checkpoint", "rl_checkpoint", "preference_checkpoint")


def _post_rows() -> list[dict]:
    """post_training_eval.json rows: math in one mode, pass@1 rising along the chain."""
    rows = []
    for i, c in enumerate(POST):
        for samples, rubric in ((100, 0.5 + 0.1 * i), (300, 0.3 + 0.1 * i)):
            domain = "math" if samples == 300 else "code"
            rows.append(
                dict(checkpoint=c, domain=domain, mode="non_reasoning", prompts=samples // 4, samples=samples,
                     pass_at_1=0.1 * i, mean_score=0.1 * i, think_well_formed=1.0, mean_response_tokens=4.0,
                     rubric_score=rubric)
            )  # fmt: skip
    return rows


def test_the_post_training_section_compares_the_checkpoints_and_says_whether_long_context_survived():
    section = PostTrainingSection(_post_rows(), POST, niah_accuracy=0.987, niah_passed=True, threshold=0.95,
                                  image="images/post.png")  # fmt: skip
    md = evaluation_summary_markdown(_sections(post_training=section))
    post = md[md.index("## Post-training") :]
    assert md.index("## Short-context drift") < md.index("## Post-training")
    assert "| math | non_reasoning | 0.0% (100% wf) | 10.0% (100% wf) | 20.0% (100% wf) | 30.0% (100% wf) |" in post
    # rubric pooled over domains by samples: (100 x 0.5 + 300 x 0.3) / 400 = 0.35 for the base, +0.1 per stage
    assert "| 0.350 | 0.450 | 0.550 | 0.650 |" in post
    assert "mean accuracy 0.987, every cell >= 0.95: **PASS**" in post and "`preference_checkpoint`" in post
    assert "![held-out pass@1 per checkpoint](images/post.png)" in post
    failed = PostTrainingSection(_post_rows(), POST, niah_accuracy=0.8, niah_passed=False, threshold=0.95)
    assert "**FAIL**" in evaluation_summary_markdown(_sections(post_training=failed))


def test_missing_inputs_leave_a_visible_gap_and_no_drift_says_so():
    md = evaluation_summary_markdown(EvaluationSections())
    assert md.count(NOT_AVAILABLE) == 6 and md.count("## ") == 6
    calm = [r | {"perplexity": 25.0 if r["domain"] == "en" else 40.0} for r in _ppl_rows()]
    md = evaluation_summary_markdown(_sections(drift=DriftSection(calm, "pretrain_stage3", 0.05)))
    assert "No domain rose more than 5% over `pretrain_stage3`." in md and "**over**" not in md


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_curves": [LossCurve("pretrain_stage1", "/abs/loss.png")]}, "must be relative"),
        ({"niah": [NiahStage("context_ext_stage1", "../x.png", 1.0, 0.95, True)]}, "must be relative"),
        ({"loss_curves": [LossCurve("sft", "loss.png")]}, "unknown checkpoint(s) sft"),
        ({"drift": DriftSection(_ppl_rows(), "context_ext_stage3", 0.05)}, "baseline 'context_ext_stage3' has no"),
        (
            {"drift": DriftSection([{"checkpoint": "pretrain_stage3", "domain": "en"}], "pretrain_stage3", 0.05)},
            "lacks perplexity",
        ),
    ],
)
def test_bad_summary_input_fails_with_one_line(overrides, message):
    with pytest.raises(ValueError) as err:
        evaluation_summary_markdown(_sections(**overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_drift_plot_is_written_as_a_png(tmp_path):
    path = tmp_path / "short_context_drift.png"
    drift_plot_png(_ppl_rows(), path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000
    drift_plot_png(_ppl_rows(), tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == data  # same rows, same bytes
    with pytest.raises(ValueError, match="at least one perplexity row"):
        drift_plot_png([], tmp_path / "empty.png")
