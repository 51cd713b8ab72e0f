"""model/layout.py against hand computations: per-GPU memory of the full preset's layout, the layouts that cannot
run and why, and the preset's own layouts for every training stage."""

from __future__ import annotations

import pytest

from config import get_preset
from model.layout import GPUS, Layout, Workload, fits, layout_problems, memory, problems, with_layout

FULL = get_preset("k-exaone-236b")
PRETRAIN = Workload("pretraining", 8192, 1024, micro_batch_size=1, recompute="full")


def test_the_full_preset_pretraining_layout_by_hand():
    """TP4 PP2 EP32 DP8 at 8K tokens, full recomputation: the last pipeline stage (layers 24-47, all MoE, the
    output layer, the final norm and the MTP block) is the most loaded."""
    h, V, q, kv, E, f, s, k, F = 6144, 153_600, 64 * 128, 8 * 128, 128, 2048, 2048, 8, 18_432
    attention = h * (q + 2 * kv) + q * h + 2 * 128  # QKV, output projection, QK norms
    router, shared, routed = E * h, 3 * h * s, E * 3 * h * f
    mtp = 2 * h + 2 * h * h + (2 * h + attention + 3 * h * F) + h  # norms, eh_proj, one dense layer, final norm
    muon_dense = (24 * attention + 24 * (router + shared) + mtp) / 4  # TP 4
    muon_expert = 24 * routed / 32  # EP 32, whole experts
    adamw = V * h / 4 + 2 * h * 24 + h  # output layer (TP 4), the stage's norms, the final norm
    params = muon_dense + muon_expert + adamw
    assert params == pytest.approx(4_902_927_424)
    weights, grads = 2 * params, 4 * params  # bf16 weights, fp32 main gradients
    optimizer = 8 * (muon_dense + muon_expert) + 12 * adamw  # fp32 master + Muon momentum / AdamW m, v
    moe_layer = (6 * h + 4 * q + 4 * kv) + (2 * h + 4 * E + 2 * k * h + 6 * k * f + 6 * s)
    per_token = 2 * h * 25 + moe_layer + 4 * V * 2  # layer inputs (24 + MTP), one layer live, fp32 logits x 2 heads
    activations = per_token / 4 * 8192 * 1  # SP over TP 4; one microbatch in flight on the last of 2 stages
    mem = memory(FULL.model, Layout(tp=4, pp=2, ep=32, cp=1, dp=8), PRETRAIN)
    assert mem["stage"] == 1 and mem["microbatches_in_flight"] == 1
    assert mem["params"] == pytest.approx(params)
    assert (mem["weights"], mem["grads"]) == (pytest.approx(weights), pytest.approx(grads))
    assert mem["optimizer"] == pytest.approx(optimizer)
    assert mem["activations"] == pytest.approx(activations)
    assert mem["total"] == pytest.approx(weights + grads + optimizer + activations)
    assert 73e9 < mem["total"] < 74e9


def test_the_distributed_optimizer_shards_master_weights_and_states_over_data_parallel_ranks():
    layout = Layout(tp=4, pp=2, ep=32, cp=1, dp=8)
    plain = memory(FULL.model, layout, PRETRAIN)
    sharded = memory(FULL.model, layout, Workload("pretraining", 8192, 1024, 1, "full", distributed_optimizer=True))
    params_expert = 24 * 128 * 3 * 6144 * 2048 / 32
    # experts: expert-data-parallel = TP x CP x DP / EP = 1, so their 8 B stay; everything else divides by DP 8
    assert sharded["optimizer"] == pytest.approx(8 * params_expert + (plain["optimizer"] - 8 * params_expert) / 8)
    assert sharded["weights"] == plain["weights"] and sharded["activations"] == plain["activations"]


def test_a_layout_that_cannot_run_says_why_in_one_line():
    m = FULL.model
    assert problems(m, Layout(tp=16, pp=1, ep=8, cp=1, dp=4), PRETRAIN) == ["TP16 does not divide the 8 KV heads"]
    assert problems(m, Layout(tp=4, pp=5, ep=8, cp=1, dp=2), PRETRAIN)[0] == "PP5 does not divide the 48 layers"
    assert "EP64 does not divide TP x CP x DP = 8 (whole experts)" in problems(
        m, Layout(tp=4, pp=8, ep=64, cp=1, dp=2), PRETRAIN
    )
    ok, line = fits(m, Layout(tp=8, pp=1, ep=8, cp=1, dp=1), PRETRAIN, GPUS["h200"])  # the old one-node layout
    assert not ok and line.startswith("needs 4") and "GB per GPU" in line and "\n" not in line


def test_every_training_stage_of_the_full_preset_fits_its_layout_and_the_old_one_node_layout_does_not():
    assert layout_problems(FULL) == []
    assert layout_problems(get_preset("tiny")) == []
    one_node = with_layout(FULL, nodes_per_training_step=1, tensor_parallel=8, pipeline_parallel=1, expert_parallel=8)
    found = layout_problems(one_node)
    assert found[0].startswith("pretraining (TP8 PP1 EP8 CP1 DP1, 8192 tokens): needs")
    assert any(p.startswith("context_stage2: TP8 PP1 EP8 CP8 DP1 is 64 GPUs, the stage has 8") for p in found)
    no_recompute = layout_problems(with_layout(FULL, recompute="none"))
    # the 256K stage and the RL stage (34K tokens without CP, TP8 PP1 EP64) need recomputation
    assert [p.split(" (")[0] for p in no_recompute] == ["context_stage2", "rl"]


def test_the_policy_stages_are_planned_with_adamw_on_every_matrix():
    """posttrain.policy_train trains with AdamW (m and v: 8 B) where pre-training's Muon keeps 4 B of momentum."""
    from model.layout import POLICY_PROMPT_TOKENS, preset_layout, stage_workloads

    workloads = stage_workloads(FULL)
    rl, cp = workloads["rl"]
    assert str(preset_layout(FULL, cp, "rl")) == "TP8 PP1 EP64 CP1 DP8"  # no pipeline schedule in policy_train
    assert cp == 1 and rl.optimizer == "adamw"
    assert rl.seq_length == FULL.posttrain.rl.max_response_tokens + POLICY_PROMPT_TOKENS
    assert rl.global_batch_size == 256 * 16 // 4  # prompts x group over the off-policy updates per round
    layout = Layout(tp=4, pp=2, ep=32, cp=1, dp=8)
    muon = memory(FULL.model, layout, Workload("x", rl.seq_length, rl.global_batch_size, 1, "full"))
    adamw = memory(FULL.model, layout, rl)
    last = 4_902_927_424  # parameters of the last pipeline stage (the hand computation above)
    adamw_only = FULL.model.padded_vocab_size * 6144 / 4 + 2 * 6144 * 24 + 6144  # already AdamW under Muon
    assert adamw["optimizer"] - muon["optimizer"] == pytest.approx(4 * (last - adamw_only))
    assert adamw["activations"] == muon["activations"]
