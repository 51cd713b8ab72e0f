"""model/inference.py: greedy generation on the tiny model."""

from __future__ import annotations

import pytest

from model import training
from model.architecture import build_model
from model.inference import generate, generate_batch
from tests.model_support import MEGATRON_QUIET, random_tokens

pytestmark = MEGATRON_QUIET


def test_greedy_generation_is_deterministic_and_the_kv_cache_changes_nothing(tiny):
    preset, model = tiny
    vocab = preset.tokenizer.vocab_size
    prompt = random_tokens(1, 40, vocab, seed=11)[0].tolist()  # longer than the 16-token window
    first = generate(model, prompt, 30, vocab_size=vocab)
    assert len(first) == 30 and all(0 <= t < vocab for t in first)
    assert generate(model, prompt, 30, vocab_size=vocab) == first
    assert generate(model, prompt, 30, vocab_size=vocab, use_kv_cache=False) == first
    assert generate(model, prompt, 30, vocab_size=vocab, eos_token_id=first[4]) == first[:5]
    assert model.training  # generate() restores the mode it found


def test_a_batch_of_prompts_decodes_as_each_prompt_alone(tiny):
    preset, model = tiny
    vocab = preset.tokenizer.vocab_size
    prompts = random_tokens(5, 40, vocab, seed=3).tolist()
    alone = [generate(model, p, 12, vocab_size=vocab) for p in prompts]
    assert generate_batch(model, prompts, 12, vocab_size=vocab) == alone
    assert len({tuple(a) for a in alone}) > 1  # different prompts, different answers: rows are not mixed up
    stop = alone[2][3]  # one row stops early at its eos, the others go on
    stopped = generate_batch(model, prompts, 12, vocab_size=vocab, eos_token_id=stop)
    assert stopped[2] == alone[2][: alone[2].index(stop) + 1]
    assert [len(r) for r in stopped] == [len(a[: a.index(stop) + 1]) if stop in a else 12 for a in alone]
    with pytest.raises(ValueError, match="prompts of one length"):
        generate_batch(model, [prompts[0], prompts[1][:30]], 4, vocab_size=vocab)


def test_generation_reproduces_a_sequence_the_model_overfitted(megatron_cpu):
    preset = megatron_cpu.with_overrides({"pretrain.max_lr": 1e-2, "pretrain.min_lr": 1e-3})
    vocab = preset.tokenizer.vocab_size
    model = build_model(preset)
    optimizer = training.adamw(model, preset)
    scheduler = training.wsd_scheduler(optimizer, preset)
    sequence = random_tokens(1, 49, vocab, seed=7)
    prompt, continuation = sequence[0, :8].tolist(), sequence[0, 8:].tolist()
    assert generate(model, prompt, 41, vocab_size=vocab) != continuation  # not known before training
    batch = training.batch_from_tokens(sequence.repeat(2, 1))
    losses = [
        training.train_step(model, optimizer, scheduler, batch, grad_clip=preset.pretrain.grad_clip).lm_loss
        for _ in range(30)
    ]
    assert losses[-1] < 0.05 < losses[0]
    assert generate(model, prompt, 41, vocab_size=vocab) == continuation


def test_prompt_template_hook_shapes_what_the_model_sees(tiny):
    preset, model = tiny
    calls = []

    def chat(ids, reasoning):
        calls.append((list(ids), reasoning))
        return [1, 2, 3] + list(ids) + ([4] if reasoning else [5])

    out = generate(model, [10, 11, 12], 5, reasoning=True, prompt_template=chat)
    assert calls == [([10, 11, 12], True)]
    assert out == generate(model, [1, 2, 3, 10, 11, 12, 4], 5)
    generate(model, [10, 11, 12], 5, prompt_template=chat)  # non-reasoning mode is the default
    assert calls[-1] == ([10, 11, 12], False)


def test_bad_prompts_are_rejected_before_decoding(tiny):
    preset, model = tiny
    with pytest.raises(ValueError, match="at least one prompt token"):
        generate(model, [], 3)
    with pytest.raises(ValueError, match=r"prompt token ids must lie in \[0, 1536\)"):
        generate(model, [5, 2000], 3, vocab_size=preset.tokenizer.vocab_size)
    with pytest.raises(ValueError, match="vocab_size=4096 must be within 1..2048"):
        generate(model, [5], 3, vocab_size=4096)
    assert generate(model, [5], 0) == []
