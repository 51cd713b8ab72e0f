"""model/decoding.py: the windowed KV cache and MTP self-speculative decoding on the tiny model (fp32).

Tolerances: logits within 1e-5 of Megatron's own forward / MTP block (fp32, different summation order);
greedy ids identical; sampling checked by a chi-square test against the exact distribution (p > 1e-3, fixed
seeds, so the outcome is deterministic)."""

from __future__ import annotations

import pytest
import torch

from model import training
from model.architecture import build_model
from model.decoding import (
    Decoder,
    LayerCache,
    SpeculativeSession,
    _attend,
    decode_attention,
    greedy_generate,
    speculative_generate,
)
from model.inference import generate_batch, top_p_filter
from model.plan import kv_cache_bytes
from tests.model_support import MEGATRON_QUIET, random_tokens

pytestmark = MEGATRON_QUIET


@pytest.fixture(scope="module")
def trained(megatron_cpu):
    """The tiny model after a few steps on two random sequences: its MTP layer then drafts some tokens right
    and some wrong (``steps`` picked so both happen). Returns (preset, model, sequences)."""
    preset = megatron_cpu.with_overrides({"pretrain.max_lr": 1e-2, "pretrain.min_lr": 1e-3})
    model = build_model(preset)
    optimizer = training.adamw(model, preset)
    scheduler = training.wsd_scheduler(optimizer, preset)
    sequences = random_tokens(2, 64, preset.tokenizer.vocab_size, seed=7)
    batch = training.batch_from_tokens(sequences)
    for _ in range(12):
        training.train_step(model, optimizer, scheduler, batch, grad_clip=preset.pretrain.grad_clip)
    model.eval()
    return preset, model, sequences


@pytest.mark.timeout(30)
def test_decode_attention_matches_the_masked_multi_token_path():
    gen = torch.Generator().manual_seed(0)
    b, hq, hkv, s, d = 3, 4, 2, 16, 8
    q = torch.randn(b, hq, d, generator=gen)
    k, v = torch.randn(b, hkv, s, d, generator=gen), torch.randn(b, hkv, s, d, generator=gen)
    qpos = torch.tensor([20, 9, 3])
    # a ring of 16 slots after 21 / 10 / 4 tokens: slot p % 16 holds position p, the rest empty
    positions = torch.full((b, s), -1)
    for row, last in enumerate(qpos.tolist()):
        for p in range(max(0, last - s + 1), last + 1):
            positions[row, p % s] = p
    for window in (None, 16, 5):
        out = decode_attention(q, k, v, positions, qpos, window=window, scale=0.3)
        cache = LayerCache(k, v, positions, window)
        empty = torch.zeros(b, hkv, 0, d)
        ref = _attend(
            q.unsqueeze(2), cache, empty, empty, torch.zeros(b, 0, dtype=torch.long), qpos[:, None], window, 0.3
        )
        assert torch.allclose(out, ref[:, :, 0], atol=1e-6)
        # by hand, row 0 head 3 (KV group 1): the keys in (q - window, q]
        keep = (positions[0] >= 0) & (positions[0] <= 20) & (positions[0] > 20 - (window or 10**9))
        weights = torch.softmax((k[0, 1, keep] @ q[0, 3]) * 0.3, dim=0)
        assert torch.allclose(out[0, 3], weights @ v[0, 1, keep], atol=1e-6)


@pytest.mark.timeout(60)
def test_cached_logits_match_the_full_forward_and_the_cache_holds_only_the_window(tiny):
    preset, model = tiny
    model.eval()
    m = preset.model
    vocab = preset.tokenizer.vocab_size
    ids = random_tokens(2, 45, vocab, seed=1)  # 45 > the 16-token window
    with torch.no_grad():
        full = model(ids, torch.arange(45).expand(2, -1), None)
    dec = Decoder(model, 2, 45)
    logits, _ = dec.prefill(ids[:, :20], chunk=7)  # chunks smaller than, equal to, across the window
    assert (logits - full[:, :20]).abs().max() < 1e-5
    # three tokens at once, not written; commit only the first two, then the rest one at a time
    pos = torch.arange(20, 23).expand(2, -1)
    three, _, pending = dec.forward(ids[:, 20:23], pos, write=False)
    assert (three - full[:, 20:23]).abs().max() < 1e-5
    assert all(int(c.positions.max()) == 19 for c in dec.main)  # nothing written yet
    dec.commit(pending, 2)
    assert all(int(c.positions.max()) == 21 for c in dec.main)
    for p in range(22, 45):
        step, _, _ = dec.forward(ids[:, p : p + 1], torch.full((2, 1), p))
        assert (step[:, 0] - full[:, p]).abs().max() < 1e-5
    windows = [c.window for c in dec.main]
    assert windows == [16, 16, 16, None]  # LLLG
    for cache in dec.main:
        slots = cache.positions.shape[1]
        assert slots == (45 if cache.window is None else m.sliding_window)
        held = sorted(cache.positions[0].tolist())
        assert held == (list(range(45)) if cache.window is None else list(range(45 - 16, 45)))
    # the plan's bf16 arithmetic (one sequence) counts exactly these values
    assert dec.cache_values() // dec.batch * 2 == kv_cache_bytes(m, 45)
    assert dec.cache_bytes() == dec.cache_values() * 4  # fp32 here
    assert Decoder(model, 1, 45, cache_dtype=torch.bfloat16).cache_bytes() == kv_cache_bytes(m, 45)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_generate_is_identical_to_generate_batch(megatron_cpu, seed):
    preset = megatron_cpu
    vocab = preset.tokenizer.vocab_size
    model = build_model(preset, seed=seed)
    prompts = random_tokens(3, 40, vocab, seed=seed + 10).tolist()  # longer than the window
    reference = generate_batch(model, prompts, 40, vocab_size=vocab)  # 80 positions: many ring wraps
    assert greedy_generate(model, prompts, 40, vocab_size=vocab) == reference
    stop = reference[1][5]
    assert greedy_generate(model, prompts, 40, vocab_size=vocab, eos_token_id=stop) == generate_batch(
        model, prompts, 40, vocab_size=vocab, eos_token_id=stop
    )
    assert model.training  # restored


@pytest.mark.timeout(60)
def test_mtp_logits_equal_megatrons_mtp_block(trained):
    """Teacher-forced: every row's MTP logits from the decoding path (main hidden states from the cached
    path, MTP rows committed in two pieces and one at a time) against ``model.mtp`` inside Megatron's own
    forward. Megatron's last row embeds the rolled-in token 0; fed the same, it matches too."""
    preset, model, sequences = trained
    ids = sequences[:, :40]
    captured = {}
    handle = model.mtp.register_forward_hook(lambda mod, args, out: captured.setdefault("h", out))
    try:
        with torch.no_grad():
            model(ids, torch.arange(40).expand(2, -1), None)
    finally:
        handle.remove()
    h_mtp = captured["h"].chunk(2, dim=0)[1]  # [main rows; MTP rows] along the sequence
    with torch.no_grad():
        megatron_logits = model.output_layer(h_mtp, runtime_gather_output=True)[0].transpose(0, 1)
    dec = Decoder(model, 2, 40)
    _, hidden = dec.prefill(ids, chunk=16)
    rolled = torch.cat([ids[:, 1:], torch.zeros(2, 1, dtype=torch.long)], dim=1)
    pieces = []
    for start, end in [(0, 23), (23, 30)] + [(p, p + 1) for p in range(30, 40)]:
        pos = torch.arange(start, end).expand(2, -1)
        logits, _, _ = dec.mtp_forward(hidden[start:end], rolled[:, start:end], pos)
        pieces.append(logits)
    ours = torch.cat(pieces, dim=1)
    assert (ours - megatron_logits).abs().max() < 1e-5
    assert megatron_logits.abs().max() > 1.0  # real logits, not a degenerate zero
    assert dec.mtp.window == 16 and dec.mtp.positions.shape[1] == 16  # the MTP layer is a window layer


@pytest.mark.timeout(60)
def test_speculative_greedy_is_identical_to_plain_greedy(trained, tiny):
    """k = 1, 2, 3 on a model whose drafts are partly right (both branches taken) and on a random-init
    model (every draft rejected); prompts longer than the window."""
    preset, model, sequences = trained
    vocab = preset.tokenizer.vocab_size
    prompts = [sequences[0, :8].tolist(), sequences[1, :24].tolist(), random_tokens(1, 30, vocab, seed=5)[0].tolist()]
    accepted, rejected = 0, 0
    for prompt in prompts:
        plain = greedy_generate(model, [prompt], 40, vocab_size=vocab)[0]
        for k in (1, 2, 3):
            ids, stats = speculative_generate(model, prompt, 40, num_draft_tokens=k, vocab_size=vocab)
            assert ids == plain, (k, prompt[:3])
            assert stats.drafted == k * stats.rounds and stats.forwards == stats.rounds + 1
            accepted += stats.accepted
            rejected += sum(stats.verified_at) - stats.accepted
        cut = plain[7]
        ids, _ = speculative_generate(model, prompt, 40, num_draft_tokens=2, vocab_size=vocab, eos_token_id=cut)
        assert ids == plain[: plain.index(cut) + 1]
    assert accepted > 20 and rejected > 5  # both acceptance and rejection exercised
    _, fresh = tiny
    prompt = random_tokens(1, 30, vocab, seed=6)[0].tolist()
    plain = greedy_generate(fresh, [prompt], 25, vocab_size=vocab)[0]
    for k in (1, 3):
        assert speculative_generate(fresh, prompt, 25, num_draft_tokens=k, vocab_size=vocab)[0] == plain


def _exact_two_token_distribution(model, context: list[int], vocab: int, temperature: float, top_p: float):
    """P(a, b | context) of plain sampling (temperature, top-p): p(a) p(b | a) over a's support."""
    with torch.no_grad():
        first = model(torch.tensor([context]), torch.arange(len(context))[None], None)[0, -1, :vocab]
        p_a = torch.softmax(top_p_filter(first / temperature, top_p), dim=-1)
        joint = {}
        for a in torch.nonzero(p_a > 0).flatten().tolist():
            ids = torch.tensor([context + [a]])
            nxt = model(ids, torch.arange(len(context) + 1)[None], None)[0, -1, :vocab]
            p_b = torch.softmax(top_p_filter(nxt / temperature, top_p), dim=-1)
            for b in torch.nonzero(p_b > 0).flatten().tolist():
                joint[(a, b)] = float(p_a[a] * p_b[b])
    return joint


@pytest.mark.timeout(60)
def test_speculative_sampling_keeps_the_target_distribution(trained):
    """After a fixed prompt and first token, the next two emitted tokens of speculative sampling (k = 2,
    temperature 1, top-p 0.95) over 400 seeds against the exact plain-sampling distribution p(a) p(b | a):
    chi-square p-value > 1e-3 (cells with expected count < 5 pooled). For the test the output layer (shared by
    the main model and the MTP layer) is scaled x5 so that a few tokens carry the mass, and the MTP's final
    norm halved so that the draft q is far from p (total variation > 0.3): the acceptance rule must correct
    it, and the same counts reject q itself."""
    preset, model, sequences = trained
    vocab, temperature, top_p, trials = preset.tokenizer.vocab_size, 1.0, 0.95, 400
    prompt = sequences[0, 8:14].tolist() + sequences[1, 12:16].tolist()  # a spread-out next token
    weight = model.output_layer.weight.data.clone()
    mtp_norm = model.mtp.layers[0].final_layernorm.weight
    mtp_norm_weight = mtp_norm.data.clone()
    model.output_layer.weight.data.mul_(5.0)
    mtp_norm.data.mul_(0.5)  # a worse draft: q flatter than p
    try:
        base = SpeculativeSession(
            model,
            64,
            num_draft_tokens=2,
            vocab_size=vocab,
            temperature=temperature,
            top_p=top_p,
            generator=torch.Generator().manual_seed(123),
        )
        first = base.start(prompt)
        exact = _exact_two_token_distribution(model, prompt + [first], vocab, temperature, top_p)
        _, draft_logits = base.clone()._draft()
        counts: dict[tuple[int, int], int] = {}
        stats = []
        for seed in range(trials):
            session = base.clone(torch.Generator().manual_seed(seed))
            emitted: list[int] = []
            while len(emitted) < 2:
                emitted += session.round()
            counts[(emitted[0], emitted[1])] = counts.get((emitted[0], emitted[1]), 0) + 1
            stats.append(session.stats)
    finally:
        model.output_layer.weight.data.copy_(weight)
        mtp_norm.data.copy_(mtp_norm_weight)
    q = torch.softmax(top_p_filter(draft_logits[0] / temperature, top_p), dim=-1)
    p_a = torch.zeros(vocab, dtype=torch.float64)
    for (a, _), v in exact.items():
        p_a[a] += v
    assert 0.5 * float((q.double() - p_a).abs().sum()) > 0.3  # the draft is far from the target
    assert set(counts) <= set(exact)  # never a token outside the target's support
    chi2, dof, p_value = _chi_square(counts, exact, trials)
    assert dof >= 5, exact  # several likely outcomes, not a near-certain one
    assert p_value > 1e-3, (chi2, dof)
    # the test has power: the first emitted token's counts are far from the draft distribution q, which a
    # rule that accepted drafts blindly would have produced
    first_counts: dict[int, int] = {}
    for (a, _), n in counts.items():
        first_counts[a] = first_counts.get(a, 0) + n
    q_cells = {t: float(q[t]) for t in torch.nonzero(q > 0).flatten().tolist()}
    assert _chi_square(first_counts, q_cells, trials)[2] < 1e-6
    accepted = sum(s.accepted for s in stats)
    rejected = sum(sum(s.verified_at) - s.accepted for s in stats)
    assert accepted > 50 and rejected > 50  # both branches of the acceptance rule ran


def _chi_square(counts: dict, probs: dict, trials: int) -> tuple[float, int, float]:
    """Pearson's chi-square of ``counts`` against ``trials * probs`` (cells expecting < 5 pooled into one):
    (statistic, degrees of freedom, p-value)."""
    observed, expected, pool_o, pool_e = [], [], 0, 0.0
    for cell in sorted(probs, key=probs.get, reverse=True):
        e = probs[cell] * trials
        if e >= 5:
            observed.append(counts.get(cell, 0))
            expected.append(e)
        else:
            pool_o += counts.get(cell, 0)
            pool_e += e
    observed.append(pool_o + sum(n for cell, n in counts.items() if cell not in probs))
    expected.append(max(pool_e, 1e-12))
    obs, exp = torch.tensor(observed, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    dof = len(observed) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(chi2 / 2)))
    return chi2, dof, p_value


@pytest.mark.timeout(60)
def test_decoding_routes_through_the_fused_router_exactly_as_megatron(tiny):
    """Inside greedy / speculative decoding every MoE router runs ``kernels.router`` (its torch reference on
    CPU); its (probs, routing_map) equal Megatron's own ``TopKRouter.routing``, and the patch is undone after."""
    from megatron.core.transformer.moe.router import TopKRouter

    from model.decoding import _eval_mode

    _, model = tiny
    routers = [m for m in model.modules() if isinstance(m, TopKRouter)]
    assert len(routers) == 3  # the three MoE layers (the MTP layer is dense)
    g = torch.Generator().manual_seed(0)
    with _eval_mode(model):
        for router in routers:
            router.expert_bias.copy_(torch.randn(router.expert_bias.shape, generator=g) * 0.1)
            logits = torch.randn(5, 3, router.config.num_moe_experts, generator=g)
            assert "routing" in vars(router)  # the instance routes through the kernel module
            probs, routing_map = router.routing(logits)
            ref_probs, ref_map = TopKRouter.routing(router, logits.clone())
            assert torch.equal(routing_map, ref_map)
            assert torch.allclose(probs, ref_probs, atol=1e-7, rtol=1e-6)
    assert all("routing" not in vars(r) for r in routers) and model.training
