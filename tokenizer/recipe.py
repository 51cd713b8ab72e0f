"""The tokenizer recipe as pure functions over per-domain document streams (no Dagster).

``domains`` maps a corpus domain (en, ko, es, de, ja, vi, code, stem) to a callable returning a fresh
iterator of ``(doc_id, text)``. A deterministic hash of the doc id holds ``held_out_fraction`` of every
domain out of training; the report measures on exactly those documents.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator, Mapping, Sequence

from tokenizers import Tokenizer

from config import Preset
from tokenizer.superbpe import (
    SuperBPEPlan,
    SuperBPEResult,
    TextStream,
    bytes_per_token,
    is_superword,
    superword_usage,
    train_base_tokenizer,
    train_plain_bpe,
    train_superbpe,
)

DocStream = Callable[[], Iterator[tuple[str, str]]]
# The report's efficiency domains (Fig. 3): English, Korean, the other languages, STEM, code.
REPORT_DOMAINS = {
    "en": ("en",),
    "ko": ("ko",),
    "multilingual": ("es", "de", "ja", "vi"),
    "stem": ("stem",),
    "code": ("code",),
}
# ... and each other language on its own: no language may lose against plain BPE (issue 20).
EFFICIENCY_DOMAINS = {
    "en": ("en",),
    "ko": ("ko",),
    "es": ("es",),
    "de": ("de",),
    "ja": ("ja",),
    "vi": ("vi",),
    "multilingual": ("es", "de", "ja", "vi"),
    "stem": ("stem",),
    "code": ("code",),
}


def is_held_out(doc_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def training_texts(domains: Mapping[str, DocStream], names: Sequence[str], held_out_fraction: float) -> TextStream:
    missing = [n for n in names if n not in domains]
    if missing:
        raise KeyError(f"tokenizer training needs corpus domains {missing} (have {sorted(domains)})")

    def texts() -> Iterator[str]:
        for name in names:
            for doc_id, text in domains[name]():
                if not is_held_out(doc_id, held_out_fraction):
                    yield text

    return texts


def held_out_texts(domains: Mapping[str, DocStream], names: Sequence[str], held_out_fraction: float) -> TextStream:
    """The held-out documents of the named domains, as a re-iterable stream (never a list in memory)."""

    def texts() -> Iterator[str]:
        for name in names:
            for doc_id, text in domains[name]():
                if is_held_out(doc_id, held_out_fraction):
                    yield text

    return texts


def superbpe_plan(preset: Preset) -> SuperBPEPlan:
    t = preset.tokenizer
    return SuperBPEPlan(
        vocab_size=t.vocab_size,
        special_tokens=tuple(t.special_tokens),
        padded_vocab_size=preset.model.padded_vocab_size,
        keep_base_fraction=t.keep_base_fraction,
        superword_fraction=t.superword_fraction,
        superword_allocation=t.superword_allocation,
        max_superword_words=t.max_superword_words,
        normalization=t.normalization,
        reallocation_split=t.reallocation_split,
        keep_base_ancestors=t.keep_base_ancestors,
    )


def build_base_tokenizer(preset: Preset, domains: Mapping[str, DocStream]) -> Tokenizer:
    t = preset.tokenizer
    return train_base_tokenizer(
        training_texts(domains, t.base_domains, t.held_out_fraction), t.base_vocab_size, t.special_tokens
    )


def build_superbpe_tokenizer(preset: Preset, base: Tokenizer, domains: Mapping[str, DocStream]) -> SuperBPEResult:
    t = preset.tokenizer
    languages = preset.data.domains
    other = tuple(d for d in languages if d not in ("en", "ko"))
    groups = {"en": ("en",), "ko": ("ko",), "other": other}
    return train_superbpe(
        superbpe_plan(preset),
        base,
        all_texts=training_texts(domains, languages, t.held_out_fraction),
        reallocation_texts=training_texts(domains, t.reallocation_domains, t.held_out_fraction),
        superword_texts={g: training_texts(domains, names, t.held_out_fraction) for g, names in groups.items()},
        reallocation_by_domain={d: training_texts(domains, (d,), t.held_out_fraction) for d in t.reallocation_domains},
    )


def build_plain_bpe(preset: Preset, domains: Mapping[str, DocStream]) -> Tokenizer:
    """The control for the report: same data and vocabulary size as SuperBPE, no superwords."""
    return train_plain_bpe(
        training_texts(domains, preset.data.domains, preset.tokenizer.held_out_fraction), superbpe_plan(preset)
    )


def efficiency_rows(
    tokenizers: Mapping[str, Tokenizer], domains: Mapping[str, DocStream], held_out_fraction: float
) -> list[dict]:
    """Bytes per token on held-out text for every tokenizer x domain (+ superword usage): the report's
    domains and each language of its multilingual one."""
    rows = []
    for report_domain, names in EFFICIENCY_DOMAINS.items():
        texts = held_out_texts(domains, [n for n in names if n in domains], held_out_fraction)
        n_docs = n_bytes = 0
        for text in texts():
            n_docs += 1
            n_bytes += len(text.encode("utf-8"))
        for name, tok in tokenizers.items():
            rows.append(
                {
                    "tokenizer": name,
                    "domain": report_domain,
                    "documents": n_docs,
                    "bytes": n_bytes,
                    "bytes_per_token": bytes_per_token(tok, texts()),
                    "superword_token_share": superword_usage(tok, texts()),
                }
            )
    return rows


def superword_vocab_share(tok: Tokenizer) -> float:
    vocab = tok.get_vocab()
    real = [t for t in vocab if not t.startswith("<|reserved_")]
    return sum(is_superword(t) for t in real) / len(real)


def superword_policy_rows(tok: Tokenizer, plan: SuperBPEPlan, merges_by_group: Mapping[str, int]) -> list[dict]:
    """The superword policy against what training achieved: each group's share of the superword merges
    (en : ko : other = 2 : 3 : 1) and the superword share of the vocabulary (about 20 %)."""
    weights = plan.superword_allocation
    budget = plan.superword_budget()
    learned = sum(merges_by_group.values())
    rows = [
        {
            "group": g,
            "policy_pct": round(100 * w / sum(weights.values()), 1),
            "budget_merges": budget[g],
            "learned_merges": merges_by_group.get(g, 0),
            "achieved_pct": round(100 * merges_by_group.get(g, 0) / learned, 1) if learned else 0.0,
        }
        for g, w in weights.items()
    ]
    rows.append(
        {
            "group": "vocabulary",
            "policy_pct": round(100 * plan.superword_fraction, 1),
            "budget_merges": plan.superword_merges,
            "learned_merges": learned,
            "achieved_pct": round(100 * superword_vocab_share(tok), 1),
        }
    )
    return rows
