"""SuperBPE with the stock HF ``tokenizers`` library (no fork), and the K-EXAONE vocabulary policy.

The report (§2.2) replaced a 100K BPE with a 150K SuperBPE tokenizer:

* **base tokenizer** (the previous generation): byte-level BPE, NFKC, a GPT-2-style regex, trained on the
  languages the previous model covered (en, ko, es) plus code and STEM.
* **stage 1** (ordinary BPE up to the transition size t = V - superword budget): start from the merges
  that produce the most frequent base tokens, ``keep_base_fraction`` (70 %) of the base vocabulary with
  or without the merge ancestors they need (``SuperBPEPlan.keep_base_ancestors``), then learn the rest of
  the budget on de/ja/vi, STEM and code — "keep the top 70 %, reallocate the rest". The rest is split
  among those domains by one pooled BPE or by need (``allocate_by_need``: chunks to the domain furthest
  below a plain BPE of the final size; ``SuperBPEPlan.reallocation_split``).
* **stage 2** (superwords): continue learning merges *without* whitespace pre-tokenization; text is
  only split at boundaries (digits, punctuation runs, line breaks — ": " is punctuation, so no merge
  crosses it). The superword budget (``superword_fraction`` x V) is split en : ko : other = 2 : 3 : 1 and
  learned per group; merges that would span more than ``max_superword_words`` words are dropped with
  everything built on them.

Stock ``BpeTrainer`` cannot resume from existing merges, so continuation uses one trick
(``continue_bpe``): encode each pre-token with the tokenizer so far, write every token id as one
private code point, and let a fresh ``BpeTrainer`` learn merges over those "characters". Each learned
merge maps back to a merge of two existing tokens, appended after the old merges — so the old merge list
is always a prefix of the new one, and the final tokenizer is a plain BPE ``tokenizer.json``.

Corpora are passed as *re-iterable streams* of texts (a callable returning an iterator), so nothing holds
a corpus in memory; the trainer only keeps word counts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

TextStream = Callable[[], Iterator[str]]  # a fresh iterator over the texts each time it is called

# Stage-1 / plain-BPE pre-tokenizer: letters of every script (+ combining marks for Vietnamese) with
# at most one leading non-letter (" the", "(self", ".name"), single digits, punctuation runs, line breaks,
# whitespace runs. Digits are one token each (as in LLaMA, Mistral, Qwen): every number of n digits is n
# tokens of a 10-symbol alphabet, so copying or comparing a number is the same operation wherever it sits
# (with groups of up to 3, "48213" was "48" "2" "13" and "90512" was "9" "0" "5" "12").
_LETTER_PIECE = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
)
_OTHER_PIECES = r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
MULTILINGUAL_REGEX = _LETTER_PIECE + _OTHER_PIECES
# Stage 2 drops only the whitespace split: consecutive letter pieces (" the" " cat" " sat") form one piece,
# so superwords can span words, while digits, punctuation runs (": " included), line breaks and
# whitespace runs stay boundaries. Every stage-1 piece lies whole inside one stage-2 piece, so stage-1
# merges segment words exactly as they did in stage 1.
SUPERWORD_BOUNDARY_REGEX = f"(?:{_LETTER_PIECE})+" + _OTHER_PIECES
# The previous generation's regex (GPT-2 style): ASCII-minded contractions, letters, numbers, the rest.
BASE_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

_BYTE_TO_UNICODE = pre_tokenizers.ByteLevel.alphabet()  # the 256 byte-level symbols
_PRIVATE_BASE = 0x10000  # token id i <-> chr(_PRIVATE_BASE + i) while continuing BPE (never real text)


class TokenizerTrainingError(ValueError):
    pass


# -- building blocks ----------------------------------------------------------------------------


def _byte_level(split_regex: str, normalization: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = getattr(normalizers, normalization)()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _from_merges(merges: Sequence[tuple[str, str]], split_regex: str, normalization: str) -> Tokenizer:
    """A byte-level BPE whose vocabulary is the 256 bytes plus one token per merge, in merge order."""
    vocab: dict[str, int] = {}
    for symbol in sorted(_BYTE_TO_UNICODE):  # sorted: the byte ids do not depend on set order
        vocab[symbol] = len(vocab)
    for a, b in merges:
        merged = a + b
        if merged not in vocab:
            vocab[merged] = len(vocab)
    tok = _byte_level(split_regex, normalization)
    tok.model = models.BPE(vocab=vocab, merges=list(merges))
    return tok


def merges_of(tok: Tokenizer) -> list[tuple[str, str]]:
    model = json.loads(tok.to_str())["model"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]


def train_bpe(texts: TextStream, vocab_size: int, split_regex: str, normalization: str) -> Tokenizer:
    """Ordinary byte-level BPE with the given pre-tokenizer (no special tokens: added at the end)."""
    tok = _byte_level(split_regex, normalization)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False, initial_alphabet=_BYTE_TO_UNICODE
    )
    tok.train_from_iterator(texts(), trainer=trainer)
    # Re-create from the merge list so vocabulary ids follow merge order (deterministic, comparable).
    return _from_merges(merges_of(tok), split_regex, normalization)


def continue_bpe(
    start_merges: Sequence[tuple[str, str]],
    texts: TextStream,
    new_merges: int,
    *,
    piece_regex: str,
    normalization: str,
    superwords_only: bool = False,
    max_words: int | None = None,
) -> list[tuple[str, str]]:
    """Learn up to ``new_merges`` merges on top of ``start_merges``, over pieces cut by ``piece_regex``.

    Each piece is encoded with the start merges and rewritten as one private code point per token, so a
    stock BpeTrainer learns merges *of existing tokens*. With ``superwords_only`` (stage 2), merges whose
    result does not span whitespace, or spans more than ``max_words`` words, are dropped together with
    every later merge that builds on them; the trainer is asked for more merges until enough remain.
    """
    if new_merges <= 0:
        return []
    encoder = _from_merges(start_merges, piece_regex, normalization)
    id_to_token = {i: t for t, i in encoder.get_vocab().items()}

    def mapped() -> Iterator[str]:
        batch: list[str] = []
        for text in texts():
            batch.append(text)
            if len(batch) == 256:
                yield from _mapped_pieces(encoder, batch)
                batch = []
        yield from _mapped_pieces(encoder, batch)

    def decode(symbol: str) -> str:
        return "".join(id_to_token[ord(c) - _PRIVATE_BASE] for c in symbol)

    alphabet = [chr(_PRIVATE_BASE + i) for i in sorted(id_to_token)]
    budget = new_merges
    while True:
        learner = Tokenizer(models.BPE())  # no normalizer, no pre-tokenizer: each yielded piece is one word
        trainer = trainers.BpeTrainer(
            vocab_size=len(alphabet) + budget,
            min_frequency=2,
            show_progress=False,
            initial_alphabet=alphabet,
            limit_alphabet=len(alphabet),
        )
        learner.train_from_iterator(mapped(), trainer=trainer)
        learned = merges_of(learner)
        out: list[tuple[str, str]] = []
        dropped: set[str] = set()
        existing = set(id_to_token.values())
        for a, b in learned:
            if a in dropped or b in dropped:
                dropped.add(a + b)
                continue
            left, right = decode(a), decode(b)
            if superwords_only and not (
                is_superword(left + right) and (max_words is None or word_count(left + right) <= max_words)
            ):
                dropped.add(a + b)
                continue
            if left + right in existing:
                continue  # already a token of the start vocabulary
            out.append((left, right))
            existing.add(left + right)
            if len(out) == new_merges:
                return out
        # Not enough kept: ask for more merges, unless the corpus has no more pairs to give.
        if len(learned) < budget or budget >= 16 * new_merges:
            return out
        budget *= 2


def _mapped_pieces(encoder: Tokenizer, texts: list[str]) -> Iterator[str]:
    """Encode texts (in Rust, batched) and yield each multi-token pre-token piece as private code points."""
    if not texts:
        return
    for enc in encoder.encode_batch(texts, add_special_tokens=False):
        piece: list[str] = []
        current = None
        for token_id, word in zip(enc.ids, enc.word_ids):
            if word != current and piece:
                if len(piece) > 1:
                    yield "".join(piece)
                piece = []
            current = word
            piece.append(chr(_PRIVATE_BASE + token_id))
        if len(piece) > 1:
            yield "".join(piece)


def reallocation_candidates(
    start_merges: Sequence[tuple[str, str]],
    domain_texts: Mapping[str, TextStream],
    new_merges: int,
    *,
    piece_regex: str,
    normalization: str,
) -> dict[str, list[tuple[str, str]]]:
    """Each domain's own merge list on top of ``start_merges`` (as if it had the whole budget)."""
    return {
        d: continue_bpe(start_merges, texts, new_merges, piece_regex=piece_regex, normalization=normalization)
        for d, texts in domain_texts.items()
    }


def allocate_by_need(
    start_merges: Sequence[tuple[str, str]],
    candidates: Mapping[str, Sequence[tuple[str, str]]],
    samples: Mapping[str, Sequence[str]],
    targets: Mapping[str, float],
    new_merges: int,
    *,
    piece_regex: str,
    normalization: str,
    rounds: int = 32,
    rest: TextStream | None = None,
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Split ``new_merges`` among domains by need, not by corpus size.

    The merges are handed out in ``rounds`` chunks, each from one domain's own list (``candidates``, in
    its order): the chunk goes to the domain whose bytes per token on its sample is lowest relative to its
    target. A pooled BPE instead ranks merges by raw pair counts over all domains, so a script the start
    merges already serve (Latin) takes merges from one they do not (Japanese). Once every domain is at
    its target, the merges left are learned by one BPE over ``rest`` (pooled, counted as "pooled"): need
    decides only who is below target. Returns the merges and how many each domain contributed.
    """
    position = {d: 0 for d in candidates}
    taken = {d: 0 for d in candidates}
    out: list[tuple[str, str]] = []
    existing = {a + b for a, b in start_merges}
    chunk = max(1, -(-new_merges // rounds))
    while len(out) < new_merges:
        open_domains = [d for d in candidates if position[d] < len(candidates[d])]
        if not open_domains:
            break
        tok = _from_merges(list(start_merges) + out, piece_regex, normalization)
        need = {d: bytes_per_token(tok, samples[d]) / targets[d] for d in candidates}
        if rest is not None and min(need.values()) >= 1.0:
            pooled = continue_bpe(
                list(start_merges) + out,
                rest,
                new_merges - len(out),
                piece_regex=MULTILINGUAL_REGEX,
                normalization=normalization,
            )
            taken["pooled"] = len(pooled)
            return out + pooled, taken
        d = min(open_domains, key=lambda name: (need[name], name))
        given = 0
        while given < chunk and position[d] < len(candidates[d]) and len(out) < new_merges:
            a, b = candidates[d][position[d]]
            position[d] += 1
            if a + b in existing:
                continue  # another domain (or the start) already made this token
            out.append((a, b))
            existing.add(a + b)
            taken[d] += 1
            given += 1
    return out, taken


def text_sample(texts: TextStream, max_bytes: int, block_chars: int = 2000) -> list[str]:
    """About ``max_bytes`` of text spread over the whole stream: blocks of whole lines (about
    ``block_chars`` each, so one long document cannot fill or empty the sample) chosen by a hash."""
    total = sum(len(t.encode("utf-8")) for t in texts())
    keep = 1.0 if total <= max_bytes else max_bytes / total
    sample = []
    for text in texts():
        for block in _line_blocks(text, block_chars):
            if keep >= 1.0 or _hash_fraction(block) < keep:
                sample.append(block)
    return sample


def _line_blocks(text: str, block_chars: int) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.find("\n", start + block_chars)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _hash_fraction(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") / 2**32


# -- superwords --------------------------------------------------------------------------------


def token_text(token: str) -> str:
    """A byte-level token as the text it stands for (partial UTF-8 sequences shown as U+FFFD)."""
    byte_decoder = {c: b for b, c in enumerate(_BYTE_TO_UNICODE_ORDERED)}
    return bytes(byte_decoder[c] for c in token if c in byte_decoder).decode("utf-8", errors="replace")


def _bytes_to_unicode() -> list[str]:
    # GPT-2's byte -> printable-character table (what ByteLevel uses), indexed by byte value.
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


_BYTE_TO_UNICODE_ORDERED = _bytes_to_unicode()


def word_count(token: str) -> int:
    """How many whitespace-separated words a byte-level token's text spans."""
    return len(token_text(token).split())


def is_superword(token: str) -> bool:
    """A token whose text has whitespace *between* two non-space characters: it spans words."""
    return re.search(r"\S\s+\S", token_text(token)) is not None


# -- the K-EXAONE recipe ------------------------------------------------------------------------


@dataclass(frozen=True)
class SuperBPEPlan:
    vocab_size: int  # before padding, special tokens included
    special_tokens: tuple[str, ...]
    padded_vocab_size: int
    keep_base_fraction: float
    superword_fraction: float
    superword_allocation: Mapping[str, int]  # en / ko / other
    max_superword_words: int
    normalization: str
    reallocation_split: str = "pooled"  # pooled | by_need (allocate_by_need)
    keep_base_ancestors: str = "extra"  # extra | counted (kept_base_merges)

    @property
    def superword_merges(self) -> int:
        return round(self.vocab_size * self.superword_fraction)

    @property
    def transition_vocab_size(self) -> int:
        """t: the vocabulary at the end of stage 1 (bytes + stage-1 merges + special tokens)."""
        return self.vocab_size - self.superword_merges

    def superword_budget(self) -> dict[str, int]:
        total = sum(self.superword_allocation.values())
        shares = {g: self.superword_merges * w // total for g, w in self.superword_allocation.items()}
        shares["ko"] += self.superword_merges - sum(shares.values())  # rounding remainder
        return shares


def base_token_frequencies(base: Tokenizer, texts: TextStream, batch_size: int = 256) -> Counter:
    counts: Counter = Counter()
    batch: list[str] = []
    for text in texts():
        batch.append(text)
        if len(batch) == batch_size:
            for enc in base.encode_batch(batch, add_special_tokens=False):
                counts.update(enc.ids)
            batch = []
    for enc in base.encode_batch(batch, add_special_tokens=False):
        counts.update(enc.ids)
    return counts


def kept_base_merges(
    base: Tokenizer, frequencies: Counter, keep_fraction: float, ancestors: str = "extra"
) -> list[tuple[str, str]]:
    """The base merges that keep the most frequent base tokens; merges stay in base order.

    A kept token needs its whole merge ancestry (BPE only reaches "ation" through, say, "ati"), so the
    closure is taken. ``ancestors`` says whether those ancestors count in the kept share:

    * ``extra``: the top ``keep_fraction`` tokens are kept and their ancestors come on top (about 80 % of
      the base vocabulary at keep 70 %, since intermediate tokens are rarely frequent themselves);
    * ``counted``: tokens are taken in frequency order, each with the ancestors it still lacks, while the
      kept vocabulary (bytes included, special tokens not) stays within ``keep_fraction`` of the base's;
      a token whose missing ancestors do not fit is passed over for the next.
    """
    if ancestors not in ("counted", "extra"):
        raise TokenizerTrainingError(f"keep_base_ancestors={ancestors!r} is not counted or extra")
    vocab = base.get_vocab()
    ranked = sorted(vocab, key=lambda t: (-frequencies.get(vocab[t], 0), vocab[t]))
    base_merges = merges_of(base)
    parents = {a + b: (a, b) for a, b in base_merges}

    def missing_ancestry(token: str, have: set[str]) -> set[str]:
        missing: set[str] = set()
        stack = [token]
        while stack:
            t = stack.pop()
            if t in parents and t not in have and t not in missing:
                missing.add(t)
                stack.extend(parents[t])
        return missing

    needed: set[str] = set()
    if ancestors == "extra":
        for token in ranked[: int(len(vocab) * keep_fraction)]:
            needed |= missing_ancestry(token, needed)
    else:
        kept_vocab = set(_BYTE_TO_UNICODE) & set(vocab)  # the 256 bytes
        limit = math.ceil((len(kept_vocab) + len(parents)) * keep_fraction)
        for token in ranked:
            if len(kept_vocab) >= limit:
                break
            missing = missing_ancestry(token, needed)
            if missing and len(kept_vocab) + len(missing) <= limit:
                needed |= missing
                kept_vocab |= missing
    return [(a, b) for a, b in base_merges if a + b in needed]


@dataclass
class SuperBPEResult:
    tokenizer: Tokenizer
    stage1_merges: list[tuple[str, str]]
    kept_base_merges: int
    superword_merges_by_group: dict[str, int]
    fill_merges: int  # ordinary merges that took the superword budget the corpus could not use
    reallocated_merges_by_domain: dict[str, int]  # by_need: each domain's share, fill included ({} pooled)
    need_targets: dict[str, float]  # by_need: the plain BPE's bytes/token per domain on its sample ({} pooled)


def train_superbpe(
    plan: SuperBPEPlan,
    base: Tokenizer,
    *,
    all_texts: TextStream,
    reallocation_texts: TextStream,
    superword_texts: Mapping[str, TextStream],
    reallocation_by_domain: Mapping[str, TextStream] | None = None,
) -> SuperBPEResult:
    """Stage 1 (kept base merges + reallocated merges) then stage 2 (superwords per language group).

    With ``plan.reallocation_split == "by_need"`` the reallocated merges are split among the domains of
    ``reallocation_by_domain`` by ``allocate_by_need``, against a plain BPE of the final size on
    ``all_texts``. A domain's target is lowered by what stage 2 adds to it: a first allocation is followed
    by stage 2, each domain's gain from it is measured, and the allocation and stage 2 are done again with
    targets divided by those gains. Languages without spaces (ja) get no superwords, so they need their
    whole margin from stage 1.
    """
    if plan.reallocation_split not in ("pooled", "by_need"):
        raise TokenizerTrainingError(f"reallocation_split={plan.reallocation_split!r} is not pooled or by_need")
    if plan.reallocation_split == "by_need" and not reallocation_by_domain:
        raise TokenizerTrainingError("reallocation_split=by_need needs each reallocation domain's texts")
    if plan.keep_base_ancestors not in ("counted", "extra"):
        raise TokenizerTrainingError(f"keep_base_ancestors={plan.keep_base_ancestors!r} is not counted or extra")
    n_special = len(plan.special_tokens)
    stage1_merge_budget = plan.transition_vocab_size - 256 - n_special
    kept = kept_base_merges(
        base, base_token_frequencies(base, all_texts), plan.keep_base_fraction, plan.keep_base_ancestors
    )
    if len(kept) > stage1_merge_budget:
        raise TokenizerTrainingError(
            f"keeping {len(kept)} base merges exceeds the stage-1 budget of {stage1_merge_budget} merges"
        )
    realloc_budget = stage1_merge_budget - len(kept)
    taken: dict[str, int] = {}
    plain: dict[str, float] = {}
    if plan.reallocation_split == "by_need":
        samples = {d: text_sample(texts, NEED_SAMPLE_BYTES) for d, texts in reallocation_by_domain.items()}
        empty = sorted(d for d, sample in samples.items() if not sample)
        if empty:
            raise TokenizerTrainingError(f"reallocation domains {empty} have no training text")
        reference = train_bpe(all_texts, plan.vocab_size - n_special, MULTILINGUAL_REGEX, plan.normalization)
        plain = {d: bytes_per_token(reference, sample) for d, sample in samples.items()}
        candidates = reallocation_candidates(
            kept,
            reallocation_by_domain,
            realloc_budget,
            piece_regex=MULTILINGUAL_REGEX,
            normalization=plan.normalization,
        )
        targets = {d: plain[d] * (1 + NEED_MARGIN) for d in samples}
        for first in (True, False):
            realloc, taken = allocate_by_need(
                kept,
                candidates,
                samples,
                targets,
                realloc_budget,
                piece_regex=MULTILINGUAL_REGEX,
                normalization=plan.normalization,
                rounds=NEED_ROUNDS,
                rest=reallocation_texts,
            )
            per_group, stage2 = _superword_merges(plan, kept + realloc, superword_texts)
            if first:
                stage1_tok = _from_merges(kept + realloc, MULTILINGUAL_REGEX, plan.normalization)
                final_tok = _from_merges(kept + realloc + stage2, SUPERWORD_BOUNDARY_REGEX, plan.normalization)
                gain = {
                    d: bytes_per_token(final_tok, sample) / bytes_per_token(stage1_tok, sample)
                    for d, sample in samples.items()
                }
                targets = {d: plain[d] * (1 + NEED_MARGIN) / gain[d] for d in samples}
    else:
        realloc = continue_bpe(
            kept,
            reallocation_texts,
            realloc_budget,
            piece_regex=MULTILINGUAL_REGEX,
            normalization=plan.normalization,
        )
        per_group, stage2 = _superword_merges(plan, kept + realloc, superword_texts)
    stage1_merges = kept + realloc
    # A corpus too small to give the whole superword budget (or groups that learned the same superwords)
    # would leave vocabulary slots unused; spend the shortfall on ordinary (within-word) merges, appended
    # last so they never pre-empt superwords. by_need: they go to the domains furthest below plain BPE.
    shortfall = plan.superword_merges - len(stage2)
    if shortfall <= 0:
        fill = []
    elif plan.reallocation_split == "by_need":
        fill_candidates = reallocation_candidates(
            stage1_merges + stage2,
            reallocation_by_domain,
            shortfall,
            piece_regex=MULTILINGUAL_REGEX,
            normalization=plan.normalization,
        )
        fill, fill_taken = allocate_by_need(
            stage1_merges + stage2,
            fill_candidates,
            samples,
            {d: plain[d] * (1 + NEED_MARGIN) for d in samples},
            shortfall,
            piece_regex=SUPERWORD_BOUNDARY_REGEX,  # measured with the final tokenizer's pre-tokenizer
            normalization=plan.normalization,
            rounds=8,
            rest=all_texts,
        )
        taken = {d: taken.get(d, 0) + fill_taken.get(d, 0) for d in {**taken, **fill_taken}}
    else:
        fill = continue_bpe(
            stage1_merges + stage2,
            all_texts,
            shortfall,
            piece_regex=MULTILINGUAL_REGEX,
            normalization=plan.normalization,
        )
    final = _from_merges(stage1_merges + stage2 + fill, SUPERWORD_BOUNDARY_REGEX, plan.normalization)
    finish_vocabulary(final, plan.special_tokens, plan.padded_vocab_size)
    return SuperBPEResult(
        final,
        stage1_merges,
        len(kept),
        {g: len(m) for g, m in per_group.items()},
        len(fill),
        taken,
        {d: round(v, 4) for d, v in plain.items()},
    )


NEED_SAMPLE_BYTES = 1_000_000  # per reallocation domain: what allocate_by_need measures on
NEED_ROUNDS = 64  # chunks of the reallocation budget (each about 1/64 of it)
# Aim 0.5 % above plain BPE (about the run-to-run spread of BpeTrainer at 32K): a domain exactly at its
# target on the training sample can land just under it on held-out text.
NEED_MARGIN = 0.005


def _superword_merges(
    plan: SuperBPEPlan, stage1_merges: list[tuple[str, str]], superword_texts: Mapping[str, TextStream]
) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str]]]:
    """Stage 2 per language group; group lists are interleaved so each keeps its internal order."""
    per_group = {}
    for group, budget in plan.superword_budget().items():
        per_group[group] = continue_bpe(
            stage1_merges,
            superword_texts[group],
            budget,
            piece_regex=SUPERWORD_BOUNDARY_REGEX,
            normalization=plan.normalization,
            superwords_only=True,
            max_words=plan.max_superword_words,
        )
    stage2: list[tuple[str, str]] = []
    seen = {a + b for a, b in stage1_merges}
    for merge in _interleave(list(per_group.values())):
        if merge[0] + merge[1] not in seen:
            stage2.append(merge)
            seen.add(merge[0] + merge[1])
    return per_group, stage2


def _interleave(lists: list[list[tuple[str, str]]]) -> Iterator[tuple[str, str]]:
    """Merge lists proportionally (by position fraction), preserving each list's order."""
    keyed = [((i + 1) / len(lst), g, m) for g, lst in enumerate(lists) for i, m in enumerate(lst)]
    for _, _, merge in sorted(keyed, key=lambda x: (x[0], x[1])):
        yield merge


def finish_vocabulary(tok: Tokenizer, special_tokens: Sequence[str], padded_vocab_size: int) -> None:
    """Add the chat/reasoning special tokens, then reserved tokens up to the padded size the model uses."""
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > padded_vocab_size:
        raise TokenizerTrainingError(f"vocabulary of {size} tokens exceeds the padded size {padded_vocab_size}")
    reserved = [
        AddedToken(f"<|reserved_{i}|>", special=True, normalized=False) for i in range(padded_vocab_size - size)
    ]
    if reserved:
        tok.add_special_tokens(reserved)


def train_base_tokenizer(texts: TextStream, vocab_size: int, special_tokens: Sequence[str]) -> Tokenizer:
    """The previous-generation tokenizer: NFKC, GPT-2 style regex, byte-level BPE."""
    tok = train_bpe(texts, vocab_size - len(special_tokens), BASE_REGEX, "NFKC")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    return tok


def train_plain_bpe(texts: TextStream, plan: SuperBPEPlan) -> Tokenizer:
    """The control: same vocabulary size, new normalization and regex, no superwords."""
    tok = train_bpe(texts, plan.vocab_size - len(plan.special_tokens), MULTILINGUAL_REGEX, plan.normalization)
    finish_vocabulary(tok, plan.special_tokens, plan.padded_vocab_size)
    return tok


# -- measurement ---------------------------------------------------------------------------------


def bytes_per_token(tok: Tokenizer, texts: Iterable[str], batch_size: int = 256) -> float:
    """UTF-8 bytes per token over ``texts``, encoded in batches (Rust threads), streamed."""
    n_bytes = n_tokens = 0
    batch: list[str] = []
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        batch.append(text)
        if len(batch) == batch_size:
            n_tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
            batch = []
    if batch:
        n_tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
    return n_bytes / n_tokens if n_tokens else 0.0


def superword_usage(tok: Tokenizer, texts: Iterable[str]) -> float:
    """Share of emitted tokens that are superwords."""
    vocab = {i: t for t, i in tok.get_vocab().items()}
    total = sup = 0
    for text in texts:
        for i in tok.encode(text, add_special_tokens=False).ids:
            total += 1
            sup += is_superword(vocab[i])
    return sup / total if total else 0.0


def fingerprint(tok: Tokenizer) -> str:
    return hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]
