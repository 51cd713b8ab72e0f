"""The chat format (report §3.3 modes): one rendering of a conversation into text, the same text the HF
chat template renders, and its token ids with loss weights on the assistant's tokens only.

A conversation is a list of messages (plain dicts, JSON as written in the data artifacts)::

    {"role": "system" | "user" | "assistant" | "tool", "content": str,
     "reasoning": str,                       # assistant only, optional: the trajectory of reasoning mode
     "tool_calls": [{"name": str, "arguments": {...}}]}   # assistant only, optional

Rendered text (the special tokens are the tokenizer's, ``tokenizer.special_tokens`` in the preset)::

    <|system|>{content}\\n
    <|user|>{content}\\n
    <|assistant|><think>\\n{reasoning}\\n</think>\\n{content}{tool calls}<|endoftext|>
    <|tool|>{content}\\n

* Reasoning mode: the assistant turn opens with ``<think>`` ... ``</think>`` holding the trajectory.
  Non-reasoning mode (**choice**, as EXAONE 4.0 and Qwen3 do): the same turn with an *empty* think block
  ``<think>\\n\\n</think>\\n``, so one template serves both and the mode is visible in the ids.
* A tool call is a line ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` after the assistant's
  content (**choice**: plain-text tags, no extra special tokens); the tool's answer is a ``<|tool|>`` turn.
* An assistant turn ends with ``<|endoftext|>`` (the EOD/EOS id): the model learns to stop; other turns
  end with a newline.
* Generation prompt: ``<|assistant|><think>\\n`` in reasoning mode, ``<|assistant|><think>\\n\\n</think>\\n``
  in non-reasoning mode: the model writes the trajectory (or directly the answer) and stops at EOS.
* Loss weights (SFT): 1 on every token of an assistant turn after its ``<|assistant|>`` tag, EOS
  included; 0 on system, user and tool turns and on the role tags.

``CHAT_TEMPLATE`` is the same rendering in Jinja, shipped as ``tokenizer_config.json``'s ``chat_template``
so ``transformers``' ``apply_chat_template`` gives the ids training used (a test checks it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

ROLES = ("system", "user", "assistant", "tool")
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>", "tool": "<|tool|>"}
EOS = "<|endoftext|>"
PAD = "<|pad|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
CHAT_SPECIAL_TOKENS = (EOS, PAD, *ROLE_TOKENS.values(), THINK_OPEN, THINK_CLOSE)

Message = Mapping[str, Any]


class ChatFormatError(ValueError):
    """A conversation that cannot be rendered; one line naming the message and the problem."""


def _check(messages: Sequence[Message]) -> None:
    if not messages:
        raise ChatFormatError("a conversation needs at least one message")
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            raise ChatFormatError(f"message {i}: role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(m.get("content", ""), str):
            raise ChatFormatError(f"message {i}: content must be a string")
        if role != "assistant" and ("reasoning" in m or "tool_calls" in m):
            raise ChatFormatError(f"message {i}: only assistant turns carry reasoning or tool_calls")
        text = m.get("content", "") + m.get("reasoning", "")
        for tok in CHAT_SPECIAL_TOKENS:
            if tok in text:
                raise ChatFormatError(f"message {i}: text contains the special token {tok!r}")


def tool_call_text(call: Mapping[str, Any]) -> str:
    body = json.dumps({"name": call["name"], "arguments": call.get("arguments", {})}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def think_block(reasoning: str | None) -> str:
    """``<think>\\n{reasoning}\\n</think>\\n``; reasoning None or "" gives the empty (non-reasoning) block."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n" if reasoning else f"{THINK_OPEN}\n\n{THINK_CLOSE}\n"


def assistant_body(m: Message) -> str:
    """An assistant turn after its role tag: think block, content, tool calls, EOS."""
    calls = "".join("\n" + tool_call_text(c) for c in m.get("tool_calls") or [])
    return think_block(m.get("reasoning")) + m.get("content", "") + calls + EOS


def generation_prompt(reasoning: bool) -> str:
    return ROLE_TOKENS["assistant"] + (f"{THINK_OPEN}\n" if reasoning else think_block(None))


def segments(messages: Sequence[Message]) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) pieces, each piece's boundaries on special tokens."""
    _check(messages)
    out: list[tuple[str, bool]] = []
    for m in messages:
        out.append((ROLE_TOKENS[m["role"]], False))
        if m["role"] == "assistant":
            out.append((assistant_body(m), True))
        else:
            out.append((m.get("content", "") + "\n", False))
    return out


def render(messages: Sequence[Message], *, add_generation_prompt: bool = False, reasoning: bool = True) -> str:
    text = "".join(t for t, _ in segments(messages))
    return text + generation_prompt(reasoning) if add_generation_prompt else text


Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class EncodedConversation:
    ids: list[int]
    loss_weights: list[int]  # per token: 1 = an assistant token (trained), 0 = context

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_weights)


def encode_conversation(encode: Encode, messages: Sequence[Message]) -> EncodedConversation:
    """Token ids of ``render(messages)`` with the assistant tokens marked.

    Pieces are encoded one by one; every boundary is a special token (which the tokenizer splits off before
    anything else), so the concatenation equals encoding the whole text at once. ``encode`` must not add
    special tokens of its own (``lambda t: tok.encode(t, add_special_tokens=False).ids``).
    """
    ids: list[int] = []
    weights: list[int] = []
    for text, trained in segments(messages):
        piece = encode(text)
        ids += piece
        weights += [int(trained)] * len(piece)
    return EncodedConversation(ids, weights)


def encode_prompt(encode: Encode, messages: Sequence[Message], *, reasoning: bool) -> list[int]:
    """The ids a model continues: the conversation so far plus the generation prompt of the mode."""
    return encode(render(messages, add_generation_prompt=True, reasoning=reasoning))


_THINK_RE = re.compile(r"^(.*?)" + re.escape(THINK_CLOSE) + r"\n?(.*)$", re.S)


@dataclass(frozen=True)
class ParsedResponse:
    reasoning: str  # the trajectory (empty in non-reasoning mode or when missing)
    answer: str  # the text after the think block, tool calls removed, stripped
    tool_calls: list[dict]
    well_formed: bool  # reasoning mode: exactly one closed think block with a non-empty trajectory


def parse_response(text: str, *, reasoning: bool) -> ParsedResponse:
    """Split a generated assistant turn (the text after the generation prompt, EOS removed).

    In reasoning mode the prompt already opened ``<think>\\n``: the response is ``{trajectory}\\n</think>\\n
    {answer}``. In non-reasoning mode the response is the answer itself.
    """
    text = text.removesuffix(EOS)
    trajectory, answer, well_formed = "", text, not reasoning
    if reasoning:
        match = _THINK_RE.match(text)
        if match:
            trajectory, answer = match.group(1).strip(), match.group(2)
            well_formed = bool(trajectory) and THINK_OPEN not in text and THINK_CLOSE not in answer
        else:
            trajectory, answer = text.strip(), ""
    calls = []
    for raw in re.findall(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), answer, re.S):
        try:
            call = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            calls.append({"name": call["name"], "arguments": call.get("arguments", {})})
    answer = re.sub(re.escape(TOOL_CALL_OPEN) + r".*?" + re.escape(TOOL_CALL_CLOSE), "", answer, flags=re.S)
    return ParsedResponse(trajectory, answer.strip(), calls, well_formed)


# The same rendering for transformers (``tokenizer_config.json``'s ``chat_template``). ``enable_thinking``
# (default true) picks the generation prompt's mode, as Qwen3 / EXAONE 4.0 templates name it; a message's
# ``reasoning`` key holds the trajectory.
CHAT_TEMPLATE = (
    # every piece of text is an expression: Jinja's whitespace control would also eat the template's newlines
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{{ '<|assistant|>' }}"
    "{%- if m.get('reasoning') -%}{{ '<think>\\n' + m['reasoning'] + '\\n</think>\\n' }}"
    "{%- else -%}{{ '<think>\\n\\n</think>\\n' }}{%- endif -%}"
    "{{ m.get('content') or '' }}"
    "{%- for c in m.get('tool_calls') or [] -%}"
    "{{ '\\n<tool_call>' }}{{ {'name': c['name'], 'arguments': c.get('arguments', {})} | tojson }}{{ '</tool_call>' }}"
    "{%- endfor -%}"
    "{{ '<|endoftext|>' }}"
    "{%- else -%}"
    "{{ '<|' + m['role'] + '|>' + (m.get('content') or '') + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<|assistant|><think>\\n\\n</think>\\n' }}"
    "{%- else -%}{{ '<|assistant|><think>\\n' }}{%- endif -%}"
    "{%- endif -%}"
)


def tokenizer_config() -> dict[str, Any]:
    """``tokenizer_config.json`` beside ``tokenizer.json``: what ``AutoTokenizer`` needs, with the template.
    No ``model_max_length``: the tokenizer artifact does not depend on the model's context (an HF export
    of a checkpoint writes its own)."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": EOS,
        "pad_token": PAD,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }


__all__ = [
    "CHAT_SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "ChatFormatError",
    "EncodedConversation",
    "ParsedResponse",
    "encode_conversation",
    "encode_prompt",
    "generation_prompt",
    "parse_response",
    "render",
    "segments",
    "tokenizer_config",
]
