"""Offline word tokenizers for datatrove's word-based filters and MinHash (no dictionaries, no downloads).

datatrove's filters take ``language=`` either as a language code (then they load spaCy, Kiwi, ... through
``load_word_tokenizer``) or as a ``WordTokenizer`` instance. We pass instances:

* ``SpaceDelimitedTokenizer`` for en, es, de, vi, STEM and Korean: words are runs of letters/digits joined by
  inner apostrophes or hyphens, every other non-space character is its own token (spaCy's blank tokenizer,
  which datatrove uses for these languages, splits the same way for the statistics the filters compute).
  Korean is space-delimited too: a token is an eojeol (a word with its attached particles).
* ``JapaneseScriptTokenizer`` for Japanese, which has no spaces: a *character-class* segmentation. A run of
  kanji, a run of katakana, a run of hiragana, a Latin/digit word, or a punctuation mark is one token. Kanji
  runs approximate content words, hiragana runs particles and inflections (の, に, は, ...), katakana runs loan
  words. This replaces a dictionary segmenter (Sudachi/MeCab need a 50-70 MB dictionary package), and the
  Japanese thresholds in the preset are set for these units, not for dictionary words.
* ``CodeTokenizer`` for source code: identifiers, numbers and single punctuation characters.

Sentence splitting (C4's sentence count) ends a sentence at terminal punctuation (``. ! ?`` and the CJK
``。！？``) or a line break.
"""

from __future__ import annotations

import regex
from datatrove.utils.word_tokenizers import WordTokenizer

# Letters (any script, with combining marks: Vietnamese tone marks) and digits, optionally joined by an
# inner apostrophe or hyphen ("don't", "Baden-Württemberg", "3.5" stays 3 . 5 like spaCy's blank tokenizer).
_WORD = r"[\p{L}\p{M}\p{N}]+(?:['’\-][\p{L}\p{M}\p{N}]+)*"
_SPACE_DELIMITED = regex.compile(rf"{_WORD}|[^\s\p{{L}}\p{{M}}\p{{N}}]")
_JAPANESE = regex.compile(
    r"\p{Han}+[々〆ヵヶ]*"  # kanji run (with iteration marks)
    r"|[\p{Katakana}ー]+"  # katakana run, with the long-vowel mark
    r"|\p{Hiragana}+"
    r"|[\p{Latin}\p{N}ａ-ｚＡ-Ｚ０-９]+(?:['’\-][\p{Latin}\p{N}]+)*"
    r"|[^\s\p{Han}\p{Katakana}\p{Hiragana}\p{Latin}\p{N}ー]"
)
_CODE = regex.compile(r"[\p{L}_][\p{L}\p{N}_]*|\p{N}+(?:\.\p{N}+)?|[^\s\p{L}\p{N}_]")
_SENTENCE = regex.compile(r"[^\n]*?(?:[.!?]+[\"'”’)]*(?=\s|$)|[。！？]+[」』）)]*|\n|$)")


class _RegexTokenizer(WordTokenizer):
    pattern: regex.Pattern

    def __init__(self, language: str):
        super().__init__(language)

    def word_tokenize(self, text: str) -> list[str]:
        return self.pattern.findall(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans = []
        for m in _SENTENCE.finditer(text):
            start, end = m.span()
            while start < end and text[start].isspace():
                start += 1
            stop = end
            while stop > start and text[stop - 1].isspace():
                stop -= 1
            if stop > start:
                spans.append((start, stop))
        return spans

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b] for a, b in self.span_tokenize(text)]

    # datatrove caches tokenizers by (hashable) identity in an lru_cache; equal configuration = equal key
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.language == self.language

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.language))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.language!r})"


class SpaceDelimitedTokenizer(_RegexTokenizer):
    pattern = _SPACE_DELIMITED


class JapaneseScriptTokenizer(_RegexTokenizer):
    pattern = _JAPANESE

    def __init__(self, language: str = "ja"):
        super().__init__(language)


class CodeTokenizer(_RegexTokenizer):
    pattern = _CODE

    def __init__(self, language: str = "code"):
        super().__init__(language)


TOKENIZERS = {
    "space_delimited": SpaceDelimitedTokenizer,
    "japanese_script": JapaneseScriptTokenizer,
    "code": CodeTokenizer,
}


def make_tokenizer(kind: str, language: str) -> WordTokenizer:
    """The tokenizer a partition's filters use (``kind`` comes from the preset's filter section)."""
    try:
        return TOKENIZERS[kind](language)
    except KeyError:
        raise ValueError(f"unknown word tokenizer {kind!r} (known: {', '.join(TOKENIZERS)})") from None
