"""The MoE block: sigmoid top-k routing with expert bias, aux-loss-free balancing, dropless dispatch and
the sequence-level aux loss, each checked against a from-first-principles reference."""

from __future__ import annotations

import torch

from model import training
from model.architecture import build_model
from tests.model_support import MEGATRON_QUIET

pytestmark = MEGATRON_QUIET


def _reference_routing(x: torch.Tensor, router, topk: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """K-EXAONE routing by hand: sigmoid scores, top-k of (score + expert bias), weights = scores of the
    chosen experts normalised to sum 1, times the scaling factor. Returns (chosen mask, weights) [tokens, E]."""
    logits = x.reshape(-1, x.shape[-1]).float() @ router.weight.float().t()
    scores = torch.sigmoid(logits)
    chosen = torch.topk(scores + router.expert_bias, topk, dim=1).indices
    mask = torch.zeros_like(scores, dtype=torch.bool).scatter(1, chosen, True)
    picked = scores * mask
    return mask, scaling * picked / picked.sum(dim=1, keepdim=True)


def test_router_picks_exactly_top_k_experts_per_token(tiny):
    preset, model = tiny
    m = preset.model
    router = model.decoder.layers[1].mlp.router
    with torch.no_grad():
        router.expert_bias.copy_(torch.linspace(-0.05, 0.05, m.num_moe_experts))  # bias takes part in the choice
    model.eval()
    x = torch.randn(32, 2, m.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        probs, routing_map = router(x)
    assert routing_map.shape == (64, m.num_moe_experts)
    assert (routing_map.sum(dim=1) == m.moe_router_topk).all()
    mask, weights = _reference_routing(x, router, m.moe_router_topk, m.moe_router_topk_scaling_factor)
    assert torch.equal(routing_map, mask)
    assert torch.allclose(probs, weights, atol=1e-6)
    assert torch.allclose(probs.sum(dim=1), torch.full((64,), m.moe_router_topk_scaling_factor), atol=1e-5)


def test_expert_bias_moves_against_the_load_after_a_step(tiny):
    """A batch of one repeated token sends every token to the same top-k experts in each MoE layer. After
    the step, those experts' bias drops by the preset's update rate and every idle expert's rises by it."""
    preset, model = tiny
    m = preset.model
    optimizer = training.adamw(model, preset)
    scheduler = training.wsd_scheduler(optimizer, preset)
    routers = [layer.mlp.router for layer in model.decoder.layers[1:]]
    loads: dict[int, torch.Tensor] = {}

    def record(index):
        def hook(module, args, output):
            loads[index] = output[1].sum(dim=0).float()

        return hook

    handles = [r.register_forward_hook(record(i)) for i, r in enumerate(routers)]
    before = [r.expert_bias.clone() for r in routers]
    batch = training.batch_from_tokens(torch.full((2, 65), 7, dtype=torch.long))
    training.train_step(model, optimizer, scheduler, batch, grad_clip=preset.pretrain.grad_clip)
    for h in handles:
        h.remove()
    rate = m.moe_router_bias_update_rate
    assert rate == 1e-4
    for i, router in enumerate(routers):
        load, delta = loads[i], router.expert_bias - before[i]
        overloaded, idle = load > load.mean(), load < load.mean()
        assert overloaded.sum() == m.moe_router_topk and load[overloaded].sum() == 2 * 64 * m.moe_router_topk
        assert idle.sum() == m.num_moe_experts - m.moe_router_topk
        assert torch.allclose(delta[overloaded], torch.full_like(delta[overloaded], -rate))
        assert torch.allclose(delta[idle], torch.full_like(delta[idle], rate))
        assert (router.local_tokens_per_expert == 0).all()  # counters restart for the next global batch


def _dropless_error(model, m) -> float:
    """Largest gap between the MoE layer's output and sum_{top-k} p * expert(x) + shared(x), with a router
    skewed so every token picks experts 0 and 1 (both far beyond an even share)."""
    moe = model.decoder.layers[1].mlp
    model.eval()
    with torch.no_grad():
        moe.router.expert_bias.zero_()
        moe.router.expert_bias[:2] = 10.0
        x = torch.randn(64, 2, m.hidden_size, generator=torch.Generator().manual_seed(4))
        out, _ = moe(x)
        mask, weights = _reference_routing(x, moe.router, m.moe_router_topk, m.moe_router_topk_scaling_factor)
        assert mask[:, :2].all()  # the skew worked: 128 tokens on each of two experts
        flat = x.reshape(-1, m.hidden_size)
        ref = moe.shared_experts(flat)
        for e, expert in enumerate(moe.experts.local_experts):
            ref = ref + weights[:, e : e + 1] * expert(flat)[0]
    return float((out.reshape(-1, m.hidden_size) - ref).abs().max())


def test_dropless_keeps_every_token_under_a_skewed_router(tiny):
    preset, model = tiny
    assert model.config.moe_expert_capacity_factor is None
    assert _dropless_error(model, preset.model) < 1e-5
    # The same check catches dropping: with capacity factor 1 (32 slots per expert) 96 tokens per
    # overloaded expert lose its contribution.
    capped = preset.with_overrides({"model.moe_expert_capacity_factor": 1.0})
    assert _dropless_error(build_model(capped), capped.model) > 1e-3


def _reference_seq_aux(x: torch.Tensor, weight: torch.Tensor, topk: int, coeff: float) -> torch.Tensor:
    """DeepSeek-V3 sequence-wise balance loss: per sequence, sum_e f_e * P_e with f_e = E/(k T) * tokens
    choosing e (top-k of the normalised sigmoid scores, no bias) and P_e = mean normalised score; averaged
    over sequences, times the coefficient."""
    seq, batch, _ = x.shape
    experts = weight.shape[0]
    losses = []
    for b in range(batch):
        s = torch.sigmoid(x[:, b].float() @ weight.t())
        s = s / s.sum(dim=1, keepdim=True)
        chosen = torch.topk(s, topk, dim=1).indices
        counts = torch.zeros(experts).scatter_add(0, chosen.flatten(), torch.ones(chosen.numel()))
        losses.append((experts / (topk * seq) * counts * s.mean(dim=0)).sum())
    return coeff * torch.stack(losses).mean()


def test_seq_aux_loss_uses_the_preset_coefficient(megatron_cpu):
    from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker

    base = megatron_cpu
    assert base.model.moe_aux_loss_coeff == 1e-4
    for coeff in (base.model.moe_aux_loss_coeff, 3e-2):
        preset = base.with_overrides({"model.moe_aux_loss_coeff": coeff})
        model = build_model(preset)
        router = model.decoder.layers[1].mlp.router
        router.train()
        get_moe_metrics_tracker().clear()
        x = torch.randn(32, 3, preset.model.hidden_size, generator=torch.Generator().manual_seed(5))
        probs, _ = router(x)
        (probs * 0).sum().backward()  # only the attached aux loss sends gradient to the router
        weight = router.weight.detach().clone().requires_grad_(True)
        expected = _reference_seq_aux(x, weight, preset.model.moe_router_topk, coeff)
        expected.backward()
        assert torch.allclose(router.weight.grad, weight.grad, rtol=1e-4, atol=1e-12), coeff
        assert router.weight.grad.abs().max() > 0
        logged = get_moe_metrics_tracker().metrics["seq_load_balancing_loss"].values
        assert torch.allclose(logged.sum(), expected.detach() / coeff, rtol=1e-5)  # logged without the coefficient
