"""Tokenizer recipe variants prototyped for issue 20 (bench only: tokenizer/ stays as shipped).

CJK script-run pre-tokenization (``cjk_patched``):

* stage 1 (and plain fill merges): Japanese/Chinese letter runs are split where the script changes:
  Han runs, Hiragana runs and Katakana runs are separate pre-tokens (the prolonged-sound mark "ー" joins
  either kana run). The shipped letter pieces are unchanged for every other script (their letter
  classes only lose Han/Hiragana/Katakana), so en/ko/de/es/vi pre-tokenize exactly as before.
* stage 2: consecutive letter pieces of any script join, CJK runs included (``日本語`` ``の`` ``テキスト``
  -> one piece), the analog of joining words across whitespace.
* a token is a superword if it spans whitespace (shipped rule) or spans a boundary between two stage-1
  letter pieces of which one is CJK (``語の``, ``のテ``, ``Pythonの``); its word count (for
  ``max_superword_words``) is the number of stage-1 letter pieces it touches.

The patch swaps module globals of ``tokenizer.superbpe`` in the process that trains (each tokenizer is
trained in its own subprocess), so ``train_superbpe`` runs unchanged over the new regexes and rules.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Iterator

from tokenizers import Regex, pre_tokenizers

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}ーｰ"
_NON_CJK_LETTER = rf"[[\p{{Lm}}\p{{Lo}}]&&[^{_CJK}]]"  # \p{Lm} / \p{Lo} without the CJK scripts
_SUFFIX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_LEAD = r"[^\r\n\p{L}\p{N}]?"
_LETTER_PIECE = (
    rf"{_LEAD}[\p{{Lu}}\p{{Lt}}\p{{M}}{_NON_CJK_LETTER}]*[\p{{Ll}}\p{{M}}{_NON_CJK_LETTER}]+{_SUFFIX}"
    rf"|{_LEAD}[\p{{Lu}}\p{{Lt}}\p{{M}}{_NON_CJK_LETTER}]+[\p{{Ll}}\p{{M}}{_NON_CJK_LETTER}]*{_SUFFIX}"
)
# One script run: Han (+ marks), Hiragana (+ ー), Katakana (+ ー, halfwidth ｰ).
_CJK_PIECE = (
    rf"{_LEAD}(?:\p{{Han}}[\p{{Han}}\p{{M}}]*"
    rf"|[\p{{Hiragana}}ー][\p{{Hiragana}}ー\p{{M}}]*"
    rf"|[\p{{Katakana}}ーｰ][\p{{Katakana}}ーｰ\p{{M}}]*)"
)
_OTHER_PIECES = r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
CJK_STAGE1_REGEX = f"{_LETTER_PIECE}|{_CJK_PIECE}" + _OTHER_PIECES
CJK_STAGE2_REGEX = f"(?:{_LETTER_PIECE}|{_CJK_PIECE})+" + _OTHER_PIECES

_STAGE1 = pre_tokenizers.Split(Regex(CJK_STAGE1_REGEX), behavior="isolated")
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]")


def _letter_pieces(text: str) -> list[str]:
    return [p for p, _ in _STAGE1.pre_tokenize_str(text) if any(c.isalpha() for c in p)]


@functools.lru_cache(maxsize=1 << 20)
def is_superword(token: str) -> bool:
    from tokenizer.superbpe import token_text

    text = token_text(token)
    if re.search(r"\S\s+\S", text):
        return True
    if not _CJK_CHAR.search(text):
        return False
    return len(_letter_pieces(text)) > 1


@functools.lru_cache(maxsize=1 << 20)
def word_count(token: str) -> int:
    from tokenizer.superbpe import token_text

    text = token_text(token)
    return max(len(text.split()), len(_letter_pieces(text)))


@contextlib.contextmanager
def cjk_patched() -> Iterator[None]:
    """Train with the CJK script-run regexes and superword rule (see the module docstring)."""
    import tokenizer.superbpe as sb

    saved = {
        n: getattr(sb, n) for n in ("MULTILINGUAL_REGEX", "SUPERWORD_BOUNDARY_REGEX", "is_superword", "word_count")
    }
    sb.MULTILINGUAL_REGEX = CJK_STAGE1_REGEX
    sb.SUPERWORD_BOUNDARY_REGEX = CJK_STAGE2_REGEX
    sb.is_superword = is_superword
    sb.word_count = word_count
    try:
        yield
    finally:
        for n, v in saved.items():
            setattr(sb, n, v)


def superword_vocab_share(tok) -> float:
    vocab = tok.get_vocab()
    real = [t for t in vocab if not t.startswith("<|reserved_")]
    return sum(is_superword(t) for t in real) / len(real)


def superword_usage(tok, texts) -> float:
    vocab = {i: t for t, i in tok.get_vocab().items()}
    total = sup = 0
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        for i in enc.ids:
            total += 1
            sup += is_superword(vocab[i])
    return sup / total if total else 0.0
