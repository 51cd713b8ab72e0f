"""The post-training objectives as pure functions on torch tensors (no Dagster, no Megatron, no model).

The report (§3.3-3.5) describes its objectives in words; its equations could not be retrieved, so the forms
below are this project's reading, built from the report's description, the EXAONE 4.0 report (AGAPO) and
the SimPER paper. Every place where the form is ours is marked **choice** in the docstring that uses it.

Shapes (B prompts, G responses per prompt, T token positions, padded):

* rewards / scores: ``[B, G]`` (a single group ``[G]`` is accepted where it is natural);
* token tensors (policy log-probs, rollout log-probs, mask): ``[B, G, T]``; ``mask`` is True (or 1) on the
  response tokens and False on padding and prompt tokens; padded positions may hold anything (even -inf),
  they never reach the loss or its gradient;
* advantages: ``[B, G]``, one per response, constant (detached) in every loss.

AGAPO (RL with verifiable rewards), per batch::

    keep = zero_variance_mask(rewards).keep                       # drop groups whose G rewards are equal
    adv = normalize_advantages(group_advantages(rewards[keep]))   # leave-one-out, then global normalization
    loss, stats = agapo_loss(logprobs[keep], rollout_logprobs[keep], adv, mask[keep], clip=2.0)

GROUPER (group-wise SimPER), per batch::

    grouped = grouper_advantages(scores)                          # drops all-equal groups, a in [-1, 1]
    loss = grouper_loss(logprobs[grouped.keep], mask[grouped.keep], grouped.advantages)

No KL term and no reference model in either (report). Everything is vectorized: no Python loop over
groups or tokens.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

EPS = 1e-6  # the normalization epsilon of both AGAPO and GROUPER: (x - mean) / (std + EPS)


class GroupFilter(NamedTuple):
    keep: torch.Tensor  # [B] bool: True for a group whose rewards are not all equal
    dropped_share: float  # share of the B groups dropped, in [0, 1]


class GrouperAdvantages(NamedTuple):
    advantages: torch.Tensor  # [K, G]: one row per kept group, in [-1, 1], max |a| = 1 per row
    keep: torch.Tensor  # [B] bool: which groups of the input are the K rows
    dropped_share: float  # share of the B groups dropped, in [0, 1]


def _as_groups(values: torch.Tensor | Sequence, what: str) -> torch.Tensor:
    """``values`` as a floating, detached ``[B, G]`` tensor (a ``[G]`` input becomes ``[1, G]``)."""
    t = torch.as_tensor(values).detach()
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"{what} must have shape [G] or [B, G] (got {tuple(t.shape)})")
    if t.shape[-1] < 2:
        raise ValueError(f"{what}: a group needs G >= 2 responses (got G = {t.shape[-1]})")
    return t


def _equal_groups(groups: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: True where every value of the group equals the group's first value (exact equality)."""
    return (groups == groups[:, :1]).all(dim=-1)


def zero_variance_mask(rewards: torch.Tensor | Sequence) -> GroupFilter:
    """Zero-variance filtering (AGAPO step 1): keep the groups whose rewards are not all equal.

    A group whose G rewards are all equal has every leave-one-out advantage 0: it carries no signal and
    only dilutes the token mean, so it is dropped before advantages are normalized. Equality is exact
    (rewards come from verifiers; **choice**: no tolerance).

    ``rewards``: ``[B, G]`` (or ``[G]``, one group), G >= 2. Returns ``GroupFilter(keep [B] bool,
    dropped_share)``, the share to report (report: "the share dropped").
    """
    groups = _as_groups(rewards, "rewards")
    keep = ~_equal_groups(groups)
    return GroupFilter(keep=keep, dropped_share=1.0 - keep.float().mean().item())


def group_advantages(rewards: torch.Tensor | Sequence) -> torch.Tensor:
    """Leave-one-out group advantage (AGAPO step 2): ``A_i = r_i - (1 / (G - 1)) * sum_{j != i} r_j``.

    Each response is compared with the mean reward of the other G - 1 responses of its prompt (computed
    as ``(G * r_i - sum_j r_j) / (G - 1)``). ``rewards``: ``[B, G]`` or ``[G]``; the result has the same
    shape and is detached. G >= 2, else ``ValueError``.
    """
    t = torch.as_tensor(rewards)
    groups = _as_groups(t, "rewards")
    g = groups.shape[-1]
    adv = (g * groups - groups.sum(dim=-1, keepdim=True)) / (g - 1)
    return adv.reshape(t.shape)


def normalize_advantages(advantages: torch.Tensor | Sequence) -> torch.Tensor:
    """Global normalization (AGAPO step 3): ``A = (A_group - mean) / (std + 1e-6)`` over every element.

    Mean and std are taken over all responses passed in, which must be the responses of the **kept**
    groups of the whole batch (not per group: the groups are already centred by the leave-one-out step).
    **Choice:** std with ddof = 0 (population std). Any shape; the result has the same shape, detached.
    ``ValueError`` when empty (every group dropped: the caller skips the batch).
    """
    t = torch.as_tensor(advantages).detach()
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.numel() == 0:
        raise ValueError("no advantages to normalize: every group was dropped (skip this batch)")
    return (t - t.mean()) / (t.std(correction=0) + EPS)


def _check_tokens(logprobs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, **others) -> torch.Tensor:
    """Shape checks shared by the losses; returns the mask as bool."""
    if logprobs.dim() < 2:
        raise ValueError(f"logprobs must have shape [B, G, T] (got {tuple(logprobs.shape)})")
    for name, other in {"mask": mask, **others}.items():
        if other.shape != logprobs.shape:
            raise ValueError(f"{name} has shape {tuple(other.shape)}, logprobs {tuple(logprobs.shape)}")
    if advantages.shape != logprobs.shape[:-1]:
        raise ValueError(
            f"advantages must have shape {tuple(logprobs.shape[:-1])} (one per response), got {tuple(advantages.shape)}"
        )
    return mask.bool()


def agapo_loss(
    logprobs: torch.Tensor,
    rollout_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float | int]]:
    """AGAPO's token-level policy-gradient loss with truncated importance sampling (AGAPO step 4).

    ``L = -(1 / T) * sum_i sum_t w_it * A_i * log pi_theta(o_it | q, o_i<t)``, with
    ``w_it = min(pi_theta(o_it) / pi_rollout(o_it), C) = min(exp(logprobs - rollout_logprobs), C)``.

    * ``w_it`` is **detached** (truncated IS corrects for the rollout engine's policy drifting from the
      trained one; it scales the gradient, it is not differentiated): ``dL/dlogprobs_it = -w_it A_i / T``.
    * **Choice:** T is the number of response tokens in the batch (``mask.sum()``): a token-level mean
      over the whole batch, so long responses weigh by their length, not a per-sequence mean.
    * ``C = clip`` (2 is a common choice); no KL term, no reference model (report).

    ``logprobs`` ``[B, G, T]`` (requires grad: log pi_theta of the sampled tokens), ``rollout_logprobs``
    ``[B, G, T]`` (kept from the rollout), ``advantages`` ``[B, G]`` (from ``normalize_advantages``),
    ``mask`` ``[B, G, T]``. Pass only the kept groups. ``rollout_logprobs`` and ``advantages`` are
    detached: the gradient flows only through ``logprobs``.

    Returns ``(loss, stats)``: the scalar loss and ``{"truncated_share": share of response tokens whose
    ratio exceeded C, "mean_weight": mean w over response tokens, "tokens": T}``.
    """
    if not clip > 0:
        raise ValueError(f"clip must be > 0 (got {clip!r})")
    m = _check_tokens(logprobs, mask, advantages, rollout_logprobs=rollout_logprobs)
    tokens = int(m.sum().item())
    if tokens == 0:
        raise ValueError("the batch has no response tokens (mask is all False)")
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    lp = torch.where(m, logprobs, zero)  # padding may hold -inf: never let it into the loss or the gradient
    ratio = torch.exp(lp.detach() - torch.where(m, rollout_logprobs.detach(), zero))
    weight = torch.clamp(ratio, max=clip)
    per_token = weight * advantages.detach().to(lp.dtype).unsqueeze(-1) * lp
    loss = -torch.where(m, per_token, zero).sum() / tokens
    stats = {
        "truncated_share": (ratio > clip)[m].float().mean().item(),
        "mean_weight": weight[m].mean().item(),
        "tokens": tokens,
    }
    return loss, stats


def grouper_advantages(scores: torch.Tensor | Sequence) -> GrouperAdvantages:
    """GROUPER's advantages (steps 1-2): drop all-equal groups, standardize, scale into [-1, 1].

    ``z_i = (s_i - mean_group) / (std_group + 1e-6)`` (std with ddof = 0), then **choice:**
    ``a_i = z_i / max_j |z_j|``, so the best- or worst-scored response of each group has ``|a| = 1``.
    (The std and the epsilon cancel in the scaling: ``a_i = (s_i - mean) / max_j |s_j - mean|``.)
    Groups whose scores are all equal (exactly) are dropped: z is 0 for all and cannot be scaled.

    ``scores``: ``[B, G]`` (or ``[G]``), G >= 2. Returns ``GrouperAdvantages(advantages [K, G] for the K
    kept groups, keep [B] bool, dropped_share)``; index the token tensors with ``keep``.
    """
    groups = _as_groups(scores, "scores")
    keep = ~_equal_groups(groups)
    kept = groups[keep]
    z = (kept - kept.mean(dim=-1, keepdim=True)) / (kept.std(dim=-1, correction=0, keepdim=True) + EPS)
    a = z / z.abs().amax(dim=-1, keepdim=True)
    return GrouperAdvantages(advantages=a, keep=keep, dropped_share=1.0 - keep.float().mean().item())


def mean_token_logprob(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(1 / |y_i|) * sum_t log pi_theta(y_it)`` per response: ``[B, G, T]`` -> ``[B, G]``; every response
    needs at least one token (``ValueError`` otherwise)."""
    m = mask.bool()
    lengths = m.sum(dim=-1)
    if bool((lengths == 0).any()):
        raise ValueError("every response needs at least one token (a row of mask is all False)")
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    return torch.where(m, logprobs, zero).sum(dim=-1) / lengths


def grouper_loss(logprobs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """GROUPER's loss (step 3): ``L = -(1 / G) * sum_i a_i * exp(mean_t log pi_theta(y_it | x, y_i<t))``.

    ``exp`` of the mean token log-prob is the response's inverse perplexity; it is pushed up for responses
    scored above their group's mean and down for those below, weighted by ``a_i``. No reference model.
    **Choice:** the loss of a batch is the mean over its groups.

    ``logprobs`` ``[K, G, T]``, ``mask`` ``[K, G, T]``, ``advantages`` ``[K, G]`` (from
    ``grouper_advantages``, detached here). With G = 2 and ``a = (+1, -1)`` this is SimPER's loss times
    1 / G = 1/2 (``simper_loss``: same minimiser and gradient direction, half the scale).
    """
    m = _check_tokens(logprobs, mask, advantages)
    inverse_ppl = torch.exp(mean_token_logprob(logprobs, m))
    return -(advantages.detach().to(inverse_ppl.dtype) * inverse_ppl).mean(dim=-1).mean()


def simper_loss(logp_chosen_mean: torch.Tensor, logp_rejected_mean: torch.Tensor) -> torch.Tensor:
    """SimPER's loss: ``-exp(mean log p(y_w | x)) + exp(mean log p(y_l | x))``, averaged over the pairs.

    Inputs are the per-response mean token log-probs (``mean_token_logprob``), any matching shape (one
    value per pair). Kept for the G = 2 check of ``grouper_loss``: there ``grouper_loss == simper_loss / 2``.
    """
    if logp_chosen_mean.shape != logp_rejected_mean.shape:
        raise ValueError(
            f"chosen and rejected shapes differ: {tuple(logp_chosen_mean.shape)} vs {tuple(logp_rejected_mean.shape)}"
        )
    return (-torch.exp(logp_chosen_mean) + torch.exp(logp_rejected_mean)).mean()
