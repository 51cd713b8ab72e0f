"""posttrain/objectives.py against hand-computed numbers: the reference's AGAPO worked example, zero-variance
filtering, truncated importance sampling (values and the exact gradient), GROUPER's advantages and loss, and
GROUPER with G = 2 against SimPER's loss."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.objectives import (
    agapo_loss,
    group_advantages,
    grouper_advantages,
    grouper_loss,
    mean_token_logprob,
    normalize_advantages,
    simper_loss,
    zero_variance_mask,
)

F64 = torch.float64


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-12, atol: float = 1e-12) -> None:
    """Same shape and dtype, |actual - expected| <= atol + rtol * |expected| everywhere (torch.allclose;
    torch.testing.assert_close costs 1.7 s of lazy imports on its first call)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual, expected)
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual, expected)


# --- AGAPO advantages ---------------------------------------------------------------------------------


def test_the_worked_example_of_the_reference():
    rewards = torch.tensor([1.0, 0.5, 0.5, 0.0], dtype=F64)
    a_group = group_advantages(rewards)
    assert_close(a_group, torch.tensor([2 / 3, 0.0, 0.0, -2 / 3], dtype=F64), rtol=0, atol=1e-12)
    a = normalize_advantages(a_group)
    assert_close(a, torch.tensor([math.sqrt(2), 0, 0, -math.sqrt(2)], dtype=F64), rtol=0, atol=1e-5)


def test_leave_one_out_per_group_of_a_batch():
    rewards = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]], dtype=F64)
    # group 0: 1 - 0, 0 - 1/2, 0 - 1/2; group 1: 0 - 3/4, 0.5 - 1/2, 1 - 1/4
    expected = torch.tensor([[1.0, -0.5, -0.5], [-0.75, 0.0, 0.75]], dtype=F64)
    assert_close(group_advantages(rewards), expected, rtol=0, atol=1e-12)


def test_a_group_needs_two_responses():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([[1.0], [0.0]]))
    with pytest.raises(ValueError, match="G >= 2"):
        zero_variance_mask(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="G >= 2"):
        grouper_advantages(torch.tensor([[3.0]]))


def test_normalization_is_global_over_the_batch_with_ddof_0():
    adv = torch.tensor([[1.0, -1.0], [3.0, -3.0]], dtype=F64)  # mean 0, population std sqrt(5)
    expected = adv / (math.sqrt(5) + 1e-6)
    assert_close(normalize_advantages(adv), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="every group was dropped"):
        normalize_advantages(torch.zeros(0, 4))


def test_zero_variance_groups_are_dropped_and_their_share_reported():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 1.0, 0.5]])
    kept = zero_variance_mask(rewards)
    assert kept.keep.tolist() == [False, True, False, True]
    assert kept.dropped_share == pytest.approx(0.5)
    assert zero_variance_mask(torch.tensor([0.3, 0.3])).dropped_share == pytest.approx(1.0)
    assert zero_variance_mask(torch.tensor([0.3, 0.4])).dropped_share == 0.0
    # a dropped group would only have zero leave-one-out advantages
    assert group_advantages(rewards[~kept.keep]).abs().max().item() == 0.0


# --- AGAPO loss ---------------------------------------------------------------------------------------


def _tiny_batch():
    """B=1, G=2, T=3; response 1 has 2 tokens (the third is padding, holding -inf). Ratios per token:
    e^0 = 1, e^1.5 = 4.48 (> C = 2: truncated), e^-0.5 = 0.607; e^0.25 = 1.28, e^-1 = 0.368."""
    logprobs = torch.tensor([[[-1.0, -0.5, -2.0], [-0.75, -3.0, -math.inf]]], dtype=F64, requires_grad=True)
    rollout = torch.tensor([[[-1.0, -2.0, -1.5], [-1.0, -2.0, -math.inf]]], dtype=F64)
    mask = torch.tensor([[[True, True, True], [True, True, False]]])
    advantages = torch.tensor([[1.5, -0.5]], dtype=F64)
    return logprobs, rollout, advantages, mask


def test_agapo_loss_on_a_hand_computed_batch():
    logprobs, rollout, advantages, mask = _tiny_batch()
    loss, stats = agapo_loss(logprobs, rollout, advantages, mask, clip=2.0)
    w = [1.0, 2.0, math.exp(-0.5), math.exp(0.25), math.exp(-1.0)]
    lp = [-1.0, -0.5, -2.0, -0.75, -3.0]
    a = [1.5, 1.5, 1.5, -0.5, -0.5]
    expected = -sum(wi * ai * li for wi, ai, li in zip(w, a, lp)) / 5
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats["tokens"] == 5
    assert stats["truncated_share"] == pytest.approx(1 / 5)
    assert stats["mean_weight"] == pytest.approx(sum(w) / 5, abs=1e-12)


def test_the_importance_weights_are_truncated_at_c_and_carry_no_gradient():
    logprobs, rollout, advantages, mask = _tiny_batch()
    loss, _ = agapo_loss(logprobs, rollout, advantages, mask, clip=2.0)
    loss.backward()
    # dL/dlogprob = -(w * A) / T with w the truncated weight as a constant (no d w / d logprob term)
    w = torch.tensor([[[1.0, 2.0, math.exp(-0.5)], [math.exp(0.25), math.exp(-1.0), 0.0]]], dtype=F64)
    expected = -(w * advantages.unsqueeze(-1)) / 5
    assert_close(logprobs.grad, expected, rtol=1e-15, atol=0)
    assert logprobs.grad[0, 0, 1].item() == pytest.approx(-(2.0 * 1.5) / 5, abs=1e-15)  # truncated: C * A / T
    assert logprobs.grad[0, 1, 2].item() == 0.0  # padding (-inf) gets a zero gradient, not NaN


def test_exact_gradient_when_every_number_is_a_binary_fraction():
    logprobs = torch.tensor([[[-1.0, -2.0], [-0.5, -4.0]]], dtype=F64, requires_grad=True)
    rollout = torch.tensor([[[-1.0, -40.0], [-0.5, -4.0]]], dtype=F64)  # ratios 1, e^38 -> 3, 1, 1
    advantages = torch.tensor([[0.75, -0.25]], dtype=F64)
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    loss, stats = agapo_loss(logprobs, rollout, advantages, mask, clip=3.0)
    loss.backward()
    w = torch.tensor([[[1.0, 3.0], [1.0, 1.0]]], dtype=F64)
    assert torch.equal(logprobs.grad, -(w * advantages.unsqueeze(-1)) / 4)
    assert stats["truncated_share"] == 0.25
    assert stats["mean_weight"] == 1.5


def test_agapo_gradients_flow_only_through_logprobs():
    logprobs, rollout, advantages, mask = _tiny_batch()
    rollout.requires_grad_(True)
    advantages.requires_grad_(True)
    loss, _ = agapo_loss(logprobs, rollout, advantages, mask)
    loss.backward()
    assert logprobs.grad is not None and torch.isfinite(logprobs.grad).all()
    assert rollout.grad is None and advantages.grad is None


def test_agapo_refuses_bad_inputs():
    logprobs, rollout, advantages, mask = _tiny_batch()
    with pytest.raises(ValueError, match="no response tokens"):
        agapo_loss(logprobs, rollout, advantages, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="advantages must have shape"):
        agapo_loss(logprobs, rollout, advantages[0], mask)
    with pytest.raises(ValueError, match="clip"):
        agapo_loss(logprobs, rollout, advantages, mask, clip=0.0)


def test_the_agapo_chain_on_a_batch_with_a_dropped_group():
    rewards = torch.tensor([[1.0, 0.5, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=F64)
    kept = zero_variance_mask(rewards)
    adv = normalize_advantages(group_advantages(rewards[kept.keep]))
    assert_close(adv, torch.tensor([[math.sqrt(2), 0, 0, -math.sqrt(2)]], dtype=F64), atol=1e-5, rtol=0)
    logprobs = torch.full((2, 4, 3), -1.0, dtype=F64, requires_grad=True)
    mask = torch.ones(2, 4, 3, dtype=torch.bool)
    loss, stats = agapo_loss(logprobs[kept.keep], logprobs.detach()[kept.keep], adv, mask[kept.keep])
    loss.backward()
    assert stats["tokens"] == 12 and stats["truncated_share"] == 0.0
    assert logprobs.grad[1].abs().max().item() == 0.0  # the dropped group takes no part


# --- GROUPER ------------------------------------------------------------------------------------------


def test_grouper_advantages_by_hand():
    scores = torch.tensor([[3.0, 1.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0], [0.0, 1.0, 5.0, 2.0]], dtype=F64)
    out = grouper_advantages(scores)
    assert out.keep.tolist() == [True, False, True]
    assert out.dropped_share == pytest.approx(1 / 3)
    # group 0: mean 2, deviations (1, -1, 0, 0); group 2: mean 2, deviations (-2, -1, 3, 0)
    expected = torch.tensor([[1.0, -1.0, 0.0, 0.0], [-2 / 3, -1 / 3, 1.0, 0.0]], dtype=F64)
    assert_close(out.advantages, expected, rtol=0, atol=1e-12)


def test_grouper_advantages_lie_in_minus_one_one_with_max_one():
    scores = torch.rand(64, 8, generator=torch.Generator().manual_seed(0))
    a = grouper_advantages(scores).advantages
    assert a.shape == (64, 8)
    assert a.abs().max().item() <= 1.0
    assert torch.equal(a.abs().amax(dim=-1), torch.ones(64))
    assert grouper_advantages(torch.tensor([0.75, 0.25])).advantages.tolist() == [[1.0, -1.0]]  # G = 2: (+1, -1)


def test_grouper_loss_on_a_hand_computed_batch():
    logprobs = torch.tensor([[[-1.0, -3.0], [-0.5, -math.inf], [-2.0, -2.0]]], dtype=F64, requires_grad=True)
    mask = torch.tensor([[[True, True], [True, False], [True, True]]])
    advantages = torch.tensor([[1.0, -0.5, -0.5]], dtype=F64)
    assert_close(mean_token_logprob(logprobs, mask), torch.tensor([[-2.0, -0.5, -2.0]], dtype=F64))
    loss = grouper_loss(logprobs, mask, advantages)
    expected = -(math.exp(-2.0) - 0.5 * math.exp(-0.5) - 0.5 * math.exp(-2.0)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    # d/dlp_it = -(a_i / G) * exp(mean_i) / |y_i| on the response's tokens, 0 on padding
    g = logprobs.grad[0]
    assert g[0, 0].item() == pytest.approx(-(1.0 / 3) * math.exp(-2.0) / 2, abs=1e-15)
    assert g[1, 0].item() == pytest.approx((0.5 / 3) * math.exp(-0.5), abs=1e-15)
    assert g[1, 1].item() == 0.0


def test_grouper_with_two_responses_is_simper_up_to_the_factor_one_over_g():
    gen = torch.Generator().manual_seed(1)
    logprobs = (-3 * torch.rand(4, 2, 5, generator=gen, dtype=F64)).requires_grad_(True)
    mask = torch.ones(4, 2, 5, dtype=torch.bool)
    mask[:, 1, 3:] = False  # the rejected responses are shorter
    scores = torch.tensor([[1.0, 0.0], [0.2, 0.9], [3.0, 1.0], [0.0, 0.5]], dtype=F64)
    grouped = grouper_advantages(scores)
    assert grouped.keep.all()
    grouper = grouper_loss(logprobs, mask, grouped.advantages)
    (grad_grouper,) = torch.autograd.grad(grouper, logprobs)

    means = mean_token_logprob(logprobs, mask)
    chosen_is_first = scores[:, 0] > scores[:, 1]
    chosen = torch.where(chosen_is_first, means[:, 0], means[:, 1])
    rejected = torch.where(chosen_is_first, means[:, 1], means[:, 0])
    simper = simper_loss(chosen, rejected)
    (grad_simper,) = torch.autograd.grad(simper, logprobs)

    assert_close(grouper, simper / 2, rtol=1e-12, atol=1e-14)
    assert_close(grad_grouper, grad_simper / 2, rtol=1e-12, atol=1e-14)


def test_grouper_gradients_flow_only_through_logprobs():
    logprobs = torch.full((1, 2, 3), -1.0, requires_grad=True)
    mask = torch.ones(1, 2, 3, dtype=torch.bool)
    advantages = torch.tensor([[1.0, -1.0]], requires_grad=True)
    grouper_loss(logprobs, mask, advantages).backward()
    assert logprobs.grad is not None and advantages.grad is None
    with pytest.raises(ValueError, match="at least one token"):
        grouper_loss(logprobs, torch.zeros_like(mask), advantages)
