"""SFT data (report §3.3): conversations in both modes from the project's own data, packed into training
samples whose loss weights cover the assistant's tokens only.

Sources and modes (**choice** where the report is silent):

* ``thinking``: each ``thinking_augmented_data`` sample is a user turn (document + question) and an
  assistant turn whose trajectory goes in the think block (reasoning mode). The *same* problem is also
  answered directly (non-reasoning mode) for a ``1 - reasoning_share`` share of them, chosen by a hash.
* ``multilingual``: ``multilingual_synthetic_data`` documents answer a request to state the given facts in
  the target language (non-reasoning: they carry no trajectory).
* ``tool``: ``tool_use_tasks`` reference transcripts (tool calls and results in the turns; non-reasoning).
* ``family:<name>``: reference answers of the RL prompt families' **train** split (so RL starts from a
  model that knows the answer format); reasoning mode for a ``reasoning_share`` share (hash), else direct.

Packing: conversations are shuffled with the seed, encoded (``posttrain.chat.encode_conversation``) and
packed first-fit into rows of ``seq_length + 1`` tokens, padded with the pad id (loss weight 0). A
conversation longer than a row is dropped and counted, never cut: a truncated assistant turn would teach
the model to stop mid-answer. Packed rows attend across conversation boundaries, as pre-training does
across documents (no per-document attention mask on the CPU path).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from posttrain.chat import Encode, encode_conversation
from posttrain.prompts import unit_interval  # mode choices by a stable hash, never by order

THINK_RE = re.compile(r"<think>(.*?)</think>", re.S)


def thinking_conversations(samples: Iterable[Mapping[str, Any]], reasoning_share: float) -> list[dict]:
    """``thinking_augmented_data`` rows (``text`` = document + question + think block + answer)."""
    out = []
    for s in samples:
        text = s["text"]
        m = THINK_RE.search(text)
        if not m or not m.group(1).strip():
            continue
        prompt = text[: m.start()].strip()
        answer = str(s.get("answer") or text[m.end() :].strip())
        user = {"role": "user", "content": prompt}
        out.append(
            {
                "id": f"{s['id']}/reasoning",
                "source": "thinking",
                "mode": "reasoning",
                "messages": [user, {"role": "assistant", "reasoning": m.group(1).strip(), "content": answer}],
            }
        )
        if unit_interval(f"{s['id']}/direct") >= reasoning_share:
            out.append(
                {
                    "id": f"{s['id']}/direct",
                    "source": "thinking",
                    "mode": "non_reasoning",
                    "messages": [user, {"role": "assistant", "content": answer}],
                }
            )
    return out


LANGUAGE_NAMES = {
    "en": "English",
    "ko": "Korean",
    "de": "German",
    "ja": "Japanese",
    "vi": "Vietnamese",
    "es": "Spanish",
}


def multilingual_conversations(documents: Iterable[Mapping[str, Any]]) -> list[dict]:
    """``multilingual_synthetic_data`` rows: facts -> a document in the target language."""
    out = []
    for d in documents:
        language = d.get("target_language") or d.get("language")
        facts = d.get("facts") or []
        if not language or not facts:
            continue
        request = (
            f"Write a short text in {LANGUAGE_NAMES.get(language, language)} that states these facts: "
            + "; ".join(str(f) for f in facts)
        )
        out.append(
            {
                "id": f"{d['id']}/multilingual",
                "source": "multilingual",
                "mode": "non_reasoning",
                "language": language,
                "messages": [{"role": "user", "content": request}, {"role": "assistant", "content": d["text"]}],
            }
        )
    return out


def tagged(conversations: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], source: str) -> list[dict]:
    """(id, messages) pairs of a source whose messages are final (tool transcripts): mode from the turns."""
    out = []
    for cid, messages in conversations:
        reasoning = any(m.get("reasoning") for m in messages if m["role"] == "assistant")
        out.append(
            {
                "id": f"{cid}/{source}",
                "source": source,
                "mode": "reasoning" if reasoning else "non_reasoning",
                "messages": list(messages),
            }
        )
    return out


def cap_per_source(conversations: Sequence[dict], cap: int) -> list[dict]:
    seen: Counter = Counter()
    out = []
    for c in conversations:
        if seen[c["source"]] < cap:
            seen[c["source"]] += 1
            out.append(c)
    return out


@dataclass
class PackedSft:
    samples: np.ndarray  # [rows, seq_length + 1] token ids
    loss_weights: np.ndarray  # same shape: 1 on assistant tokens, 0 elsewhere (padding included)
    conversations: int = 0
    dropped_too_long: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    max_token_id: int = 0
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> mode -> conversations

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.tokens / max(1, self.samples.size)


def pack_conversations(
    conversations: Sequence[Mapping[str, Any]], encode: Encode, *, seq_length: int, pad_id: int, seed: int
) -> PackedSft:
    """Shuffle (seed), encode and pack first-fit into rows of ``seq_length + 1`` tokens."""
    if not conversations:
        raise ValueError("no SFT conversations to pack")
    order = list(conversations)
    random.Random(seed).shuffle(order)
    capacity = seq_length + 1
    rows: list[tuple[list[int], list[int]]] = []
    free: list[int] = []  # free space per row, for first-fit
    stats = PackedSft(np.zeros((0, capacity), np.int64), np.zeros((0, capacity), np.int64))
    by_source: dict[str, Counter] = {}
    for conv in order:
        enc = encode_conversation(encode, conv["messages"])
        if len(enc.ids) > capacity:
            stats.dropped_too_long += 1
            continue
        for r, space in enumerate(free):
            if space >= len(enc.ids):
                break
        else:
            rows.append(([], []))
            free.append(capacity)
            r = len(rows) - 1
        rows[r][0].extend(enc.ids)
        rows[r][1].extend(enc.loss_weights)
        free[r] -= len(enc.ids)
        stats.conversations += 1
        stats.tokens += len(enc.ids)
        stats.trained_tokens += enc.trained_tokens
        stats.max_token_id = max(stats.max_token_id, max(enc.ids))
        by_source.setdefault(conv["source"], Counter())[conv["mode"]] += 1
    if not rows:
        raise ValueError(f"every SFT conversation is longer than seq_length + 1 = {capacity} tokens")
    samples = np.full((len(rows), capacity), pad_id, dtype=np.int64)
    weights = np.zeros((len(rows), capacity), dtype=np.int64)
    for i, (ids, w) in enumerate(rows):
        samples[i, : len(ids)] = ids
        weights[i, : len(w)] = w
    stats.samples, stats.loss_weights = samples, weights
    stats.by_source = {s: dict(c) for s, c in sorted(by_source.items())}
    return stats


__all__ = [
    "PackedSft",
    "cap_per_source",
    "multilingual_conversations",
    "pack_conversations",
    "tagged",
    "thinking_conversations",
]
