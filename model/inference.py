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

from typing import Callable, Sequence

import torch

PromptTemplate = Callable[[Sequence[int], bool], list[int]]


def raw_prompt(prompt_ids: Sequence[int], reasoning: bool) -> list[int]:
    """No chat formatting: the model continues the ids as given (pre-training-style evaluation)."""
    return list(prompt_ids)


def _logits(model: torch.nn.Module, ids: torch.Tensor, position_ids: torch.Tensor, context=None) -> torch.Tensor:
    return model(ids, position_ids, None, inference_context=context, runtime_gather_output=True)


@torch.no_grad()
def generate(model: torch.nn.Module, prompt_ids: Sequence[int], max_new_tokens: int, *,
             eos_token_id: int | None = None, vocab_size: int | None = None, reasoning: bool = False,
             prompt_template: PromptTemplate = raw_prompt, use_kv_cache: bool = True) -> list[int]:
    """Greedy decoding; returns only the generated ids (stops after ``eos_token_id`` if given).

    ``vocab_size`` is the tokenizer's: rows of the padded embedding beyond it are never produced.
    """
    from megatron.core.inference.contexts import StaticInferenceContext
    from megatron.core.inference.utils import InferenceMode

    ids = prompt_template(prompt_ids, reasoning)
    if not ids:
        raise ValueError("generate() needs at least one prompt token")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
    vocab = model.vocab_size if vocab_size is None else vocab_size
    if not 0 < vocab <= model.vocab_size:
        raise ValueError(f"vocab_size={vocab} must be within 1..{model.vocab_size} (the model's padded vocabulary)")
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt token ids must lie in [0, {vocab}) (got {min(ids)}..{max(ids)})")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[int] = []
    try:
        with InferenceMode.active():
            tokens = torch.tensor([ids], dtype=torch.long, device=device)
            context = StaticInferenceContext(1, len(ids) + max_new_tokens) if use_kv_cache else None
            step_input, offset = tokens, 0
            for _ in range(max_new_tokens):
                positions = torch.arange(offset, offset + step_input.shape[1], device=device).unsqueeze(0)
                logits = _logits(model, step_input, positions, context)
                next_id = int(logits[0, -1, :vocab].argmax())
                out.append(next_id)
                if eos_token_id is not None and next_id == eos_token_id:
                    break
                tokens = torch.cat([tokens, tokens.new_tensor([[next_id]])], dim=1)
                if context is None:
                    step_input = tokens
                else:
                    context.sequence_len_offset += step_input.shape[1]
                    offset = context.sequence_len_offset
                    step_input = tokens[:, -1:]
    finally:
        model.train(was_training)
    return out


__all__ = ["PromptTemplate", "generate", "raw_prompt"]
