"""Greedy generation for evaluation (NIAH, short-context checks) on the Megatron model.

``generate(model, prompt_ids, max_new_tokens)`` runs the main model only: Megatron's ``InferenceMode``
makes ``GPTModel`` skip the MTP block, as the report's evaluation does (§4.1, "MTP disabled").

With ``use_kv_cache=True`` (default) the prompt is encoded once and every new token attends to cached
keys/values (Megatron's ``StaticInferenceContext``); sliding-window layers mask cached positions older
than the window exactly as in training. ``use_kv_cache=False`` recomputes the whole sequence per token,
the simplest reference for the cached path.

Chat formatting is a hook: ``prompt_template`` turns (prompt ids, reasoning) into the ids the model
sees. The default, ``raw_prompt``, passes ids through; the post-training issue supplies the chat
template with its reasoning / non-reasoning variants (``<think>`` tags) through this parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

PromptTemplate = Callable[[Sequence[int], bool], list[int]]


def raw_prompt(prompt_ids: Sequence[int], reasoning: bool) -> list[int]:
    """No chat formatting: the model continues the ids as given (pre-training-style evaluation)."""
    return list(prompt_ids)


def _logits(model: torch.nn.Module, ids: torch.Tensor, position_ids: torch.Tensor, context=None) -> torch.Tensor:
    return model(ids, position_ids, None, inference_context=context, runtime_gather_output=True)


def generate(
    model: torch.nn.Module,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    *,
    eos_token_id: int | None = None,
    vocab_size: int | None = None,
    reasoning: bool = False,
    prompt_template: PromptTemplate = raw_prompt,
    use_kv_cache: bool = True,
) -> list[int]:
    """Greedy decoding; returns only the generated ids (stops after ``eos_token_id`` if given).

    ``vocab_size`` is the tokenizer's: rows of the padded embedding beyond it are never produced.
    """
    return generate_batch(
        model,
        [prompt_ids],
        max_new_tokens,
        eos_token_id=eos_token_id,
        vocab_size=vocab_size,
        reasoning=reasoning,
        prompt_template=prompt_template,
        use_kv_cache=use_kv_cache,
    )[0]


@torch.no_grad()
def generate_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_token_id: int | None = None,
    vocab_size: int | None = None,
    reasoning: bool = False,
    prompt_template: PromptTemplate = raw_prompt,
    use_kv_cache: bool = True,
) -> list[list[int]]:
    """Greedy decoding of several prompts of the same length at once (one forward per new token for the
    whole batch; no padding, so each row decodes exactly as it would alone). Returns each row's generated
    ids; a row stops after ``eos_token_id``."""
    from megatron.core.inference.contexts import StaticInferenceContext
    from megatron.core.inference.utils import InferenceMode

    rows = [prompt_template(p, reasoning) for p in prompts]
    if not rows or not all(rows):
        raise ValueError("generate() needs at least one prompt token")
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"generate_batch() needs prompts of one length (got {sorted({len(r) for r in rows})})")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
    vocab = model.vocab_size if vocab_size is None else vocab_size
    if not 0 < vocab <= model.vocab_size:
        raise ValueError(f"vocab_size={vocab} must be within 1..{model.vocab_size} (the model's padded vocabulary)")
    low, high = min(min(r) for r in rows), max(max(r) for r in rows)
    if low < 0 or high >= vocab:
        raise ValueError(f"prompt token ids must lie in [0, {vocab}) (got {low}..{high})")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batch, length = len(rows), len(rows[0])
    out: list[list[int]] = [[] for _ in rows]
    done = [False] * batch
    try:
        with InferenceMode.active():
            tokens = torch.tensor(rows, dtype=torch.long, device=device)
            context = StaticInferenceContext(batch, length + max_new_tokens) if use_kv_cache else None
            step_input, offset = tokens, 0
            for _ in range(max_new_tokens):
                positions = torch.arange(offset, offset + step_input.shape[1], device=device).unsqueeze(0)
                logits = _logits(model, step_input, positions.expand(batch, -1), context)
                next_ids = logits[:, -1, :vocab].argmax(dim=-1)
                for row, next_id in enumerate(next_ids.tolist()):
                    if not done[row]:
                        out[row].append(next_id)
                        done[row] = eos_token_id is not None and next_id == eos_token_id
                if all(done):
                    break
                tokens = torch.cat([tokens, next_ids.unsqueeze(1)], dim=1)
                if context is None:
                    step_input = tokens
                else:
                    context.sequence_len_offset += step_input.shape[1]
                    offset = context.sequence_len_offset
                    step_input = tokens[:, -1:]
    finally:
        model.train(was_training)
    return out


@dataclass(frozen=True)
class SampledRow:
    ids: list[int]  # generated ids, EOS included when produced
    # log pi(o_t) of each sampled token under the rollout model at temperature 1 over the full vocabulary
    # (**choice**: the policy the trainer re-scores is the model itself, so the importance ratio of the first
    # update after a rollout is exactly 1; temperature and top-p only shape which tokens are drawn)
    logprobs: list[float]
    entropy: list[float]  # entropy of that distribution at each step (nats)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits outside the smallest set of tokens whose probability reaches ``top_p`` set to -inf."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@torch.no_grad()
def _world_max(value: int, device: torch.device) -> int:
    """The largest ``value`` over every rank of the world (all ranks call this together)."""
    t = torch.tensor([value], dtype=torch.long, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t)


def sample_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float,
    top_p: float,
    eos_token_id: int | None,
    vocab_size: int,
    generator: torch.Generator,
    lockstep: bool = False,
) -> list[SampledRow]:
    """Sampling (temperature, nucleus) of several prompts of one length at once, KV cache and MTP off as in
    ``generate_batch``; deterministic given ``generator``. Rows stop at EOS independently (a finished row
    keeps decoding in the batch, its tokens discarded).

    ``lockstep`` (a model split over ranks, expert or tensor parallel: every forward is a collective whose
    ranks must bring as many tokens as each other): all ranks of the world call this together, each with its
    own prompts (the same batch size on every rank), and run the same forwards. The prefill is right-padded
    to the longest prompt of any rank (causal attention: the real positions never see the padding; the
    next-token logits are read at the last real position and the cache offset set there, so the padding's
    cache entries are overwritten before any query reaches them), and decoding goes on while any rank has a
    row alive (a finished rank keeps decoding, its tokens discarded)."""
    from megatron.core.inference.contexts import StaticInferenceContext
    from megatron.core.inference.utils import InferenceMode

    rows = [list(p) for p in prompts]
    if not rows or not all(rows) or len({len(r) for r in rows}) != 1:
        raise ValueError("sample_batch() needs non-empty prompts of one length")
    if temperature <= 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    if not 0 < vocab_size <= model.vocab_size:
        raise ValueError(f"vocab_size={vocab_size} must be within 1..{model.vocab_size}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batch, length = len(rows), len(rows[0])
    padded = _world_max(length, device) if lockstep else length
    out = [SampledRow([], [], []) for _ in rows]
    done = [False] * batch
    try:
        with InferenceMode.active():
            tokens = torch.tensor(rows, dtype=torch.long, device=device)
            context = StaticInferenceContext(batch, padded + max_new_tokens)
            step_input, offset = tokens, 0
            if padded > length:
                step_input = torch.cat([tokens, tokens[:, -1:].expand(batch, padded - length)], dim=1)
                context.config.materialize_only_last_token_logits = False  # the last real position's logits
            for _ in range(max_new_tokens):
                positions = torch.arange(offset, offset + step_input.shape[1], device=device).unsqueeze(0)
                last = length - 1 if offset == 0 and padded > length else -1  # lockstep's padded prefill
                logits = _logits(model, step_input, positions.expand(batch, -1), context)[:, last, :vocab_size]
                logits = logits.float()
                logp = torch.log_softmax(logits, dim=-1)
                probs = torch.softmax(top_p_filter(logits / temperature, top_p), dim=-1)
                next_ids = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
                chosen = logp.gather(1, next_ids.unsqueeze(1)).squeeze(1)
                entropy = -(logp.exp() * logp).sum(dim=-1)
                for row in range(batch):
                    if not done[row]:
                        token = int(next_ids[row])
                        out[row].ids.append(token)
                        out[row].logprobs.append(float(chosen[row]))
                        out[row].entropy.append(float(entropy[row]))
                        done[row] = eos_token_id is not None and token == eos_token_id
                if (_world_max(int(not all(done)), device) == 0) if lockstep else all(done):
                    break
                tokens = torch.cat([tokens, next_ids.unsqueeze(1)], dim=1)
                context.sequence_len_offset = tokens.shape[1] - 1
                offset = context.sequence_len_offset
                step_input = tokens[:, -1:]
    finally:
        model.train(was_training)
    return out


__all__ = ["PromptTemplate", "SampledRow", "generate", "generate_batch", "raw_prompt", "sample_batch", "top_p_filter"]
