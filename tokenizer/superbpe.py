"""SuperBPE with the stock HF ``tokenizers`` library (no fork), and the K-EXAONE vocabulary policy.

The report (§2.2) replaced a 100K BPE with a 150K SuperBPE tokenizer:

* **base tokenizer** (the previous generation): byte-level BPE, NFKC, a GPT-2-style regex, trained on the
  languages the previous model covered (en, ko, es) plus code and STEM.
* **stage 1** (ordinary BPE up to the transition size t = V - superword budget): start from the merges
  that produce the top ``keep_base_fraction`` (70 %) most frequent base tokens, then learn the rest of
  the budget on de/ja/vi, STEM and code — "keep the top 70 %, reallocate the rest".
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


def kept_base_merges(base: Tokenizer, frequencies: Counter, keep_fraction: float) -> list[tuple[str, str]]:
    """The base merges needed to produce the top ``keep_fraction`` most frequent base tokens.

    A kept token needs its whole merge ancestry, so the closure is taken; merges stay in base order.
    """
    vocab = base.get_vocab()
    keep_n = int(len(vocab) * keep_fraction)
    ranked = sorted(vocab, key=lambda t: (-frequencies.get(vocab[t], 0), vocab[t]))
    wanted = set(ranked[:keep_n])
    base_merges = merges_of(base)
    parents = {a + b: (a, b) for a, b in base_merges}
    needed: set[str] = set()
    stack = [t for t in wanted if t in parents]
    while stack:
        t = stack.pop()
        if t in needed:
            continue
        needed.add(t)
        stack.extend(p for p in parents[t] if p in parents)
    return [(a, b) for a, b in base_merges if a + b in needed]


@dataclass
class SuperBPEResult:
    tokenizer: Tokenizer
    stage1_merges: list[tuple[str, str]]
    kept_base_merges: int
    superword_merges_by_group: dict[str, int]
    fill_merges: int  # ordinary merges that took the superword budget the corpus could not use


def train_superbpe(
    plan: SuperBPEPlan,
    base: Tokenizer,
    *,
    all_texts: TextStream,
    reallocation_texts: TextStream,
    superword_texts: Mapping[str, TextStream],
) -> SuperBPEResult:
    """Stage 1 (kept base merges + reallocated merges) then stage 2 (superwords per language group)."""
    n_special = len(plan.special_tokens)
    stage1_merge_budget = plan.transition_vocab_size - 256 - n_special
    kept = kept_base_merges(base, base_token_frequencies(base, all_texts), plan.keep_base_fraction)
    if len(kept) > stage1_merge_budget:
        raise TokenizerTrainingError(
            f"keeping {len(kept)} base merges exceeds the stage-1 budget of {stage1_merge_budget} merges"
        )
    realloc = continue_bpe(
        kept,
        reallocation_texts,
        stage1_merge_budget - len(kept),
        piece_regex=MULTILINGUAL_REGEX,
        normalization=plan.normalization,
    )
    stage1_merges = kept + realloc

    # Stage 2 per language group; interleave group merge lists so each keeps its internal order.
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
    # A corpus too small to give the whole superword budget would leave vocabulary slots unused; spend
    # the shortfall on ordinary (within-word) merges, appended last so they never pre-empt superwords.
    shortfall = plan.superword_merges - len(stage2)
    fill = (
        continue_bpe(
            stage1_merges + stage2,
            all_texts,
            shortfall,
            piece_regex=MULTILINGUAL_REGEX,
            normalization=plan.normalization,
        )
        if shortfall > 0
        else []
    )
    final = _from_merges(stage1_merges + stage2 + fill, SUPERWORD_BOUNDARY_REGEX, plan.normalization)
    finish_vocabulary(final, plan.special_tokens, plan.padded_vocab_size)
    return SuperBPEResult(final, stage1_merges, len(kept), {g: len(m) for g, m in per_group.items()}, len(fill))


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


def bytes_per_token(tok: Tokenizer, texts: Iterable[str]) -> float:
    n_bytes = n_tokens = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tok.encode(text, add_special_tokens=False).ids)
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
