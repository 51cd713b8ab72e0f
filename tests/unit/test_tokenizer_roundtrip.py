"""Round trip up to NFC (issue 20, part 4): decode(encode(t)) == NFC(t) for the trained tokenizers.

The SuperBPE tokenizer and its plain-BPE control normalize with NFC and are byte-level, so whatever the
input's normal form, decoding gives back exactly its NFC form, and a text and its NFC form encode to the
same ids. The previous-generation base tokenizer normalizes with NFKC, so it is *not* expected to meet
this (checked below so a change there is noticed). A tiny tokenizer is trained on the demo corpus in
a couple of seconds (tests/unit/test_tokenizer.py's recipe).

With ``KEXAONE_TOKENIZER_HELDOUT=<folder>`` (a corpus built by ``python -m bench.multilingual_corpus``),
every held-out document of that corpus is checked too, in NFC, NFD and NFKD form.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest

from tests.unit.test_tokenizer import train_all

NFC = "NFC"

# Held-out-like text in every benchmark language, STEM and code (written for the test).
TEXTS = {
    "en": "The committee's report, published on 3 March 2024, wasn't final: it listed 12 open questions.",
    "ko": "대한민국의 수도는 서울이며, 한글은 1443년 세종대왕이 창제하였다. 오늘은 날씨가 맑겠습니다.",
    "ja": "吾輩は猫である。名前はまだ無い。東京スカイツリーの高さは634メートルです。ｶﾀｶﾅ（半角）も使う。",
    "de": "Die Größe der Straße überrascht: Äpfel, Öl und Übermut kosten 3,50 € — „so“ sagte er.",
    "es": "¿Dónde está el niño? ¡Qué año! La pingüina comió piñas en Cádiz y Logroño.",
    "vi": "Tiếng Việt là ngôn ngữ chính thức của Việt Nam; người Việt viết chữ Quốc ngữ với dấu thanh.",
    "stem": r"Let $f(x)=\int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}$; then ∑ᵢ αᵢ ≤ ∞ and ∀ε>0 ∃δ.",
    "code": 'def área(r: float) -> float:\n\t"""π r²."""\r\n    return 3.14159 * r ** 2  # 面積\n',
}

# Deliberately non-NFC input, each with what NFC makes of it.
NON_NFC = {
    # conjoining Hangul jamo (U+1100 block) compose into syllables
    "hangul jamo": ("\u1112\u1161\u11ab\u1100\u1173\u11af \u110b\u1175\u11b8\u1105\u1167\u11a8", "한글 입력"),
    # Vietnamese with combining tone marks, in both canonical and non-canonical mark order
    "vietnamese marks": ("Vie\u0302\u0323t Nam, ngu\u031bo\u031b\u0300i, a\u0323\u0302", "Việt Nam, người, ậ"),
    "vietnamese reordered": ("a\u0302\u0323 e\u0323\u0302", "ậ ệ"),
    # German and Spanish with combining diaeresis / tilde / acute
    "latin combining": ("Gru\u0308\u00dfe aus Ko\u0308ln, sen\u0303or, cafe\u0301", "Grüße aus Köln, señor, café"),
    # Japanese combining (semi-)voiced sound marks
    "kana marks": ("か\u3099き\u3099は\u309aフ\u309a", "がぎぱプ"),
    # singletons that NFC replaces: Angstrom and Ohm signs, a CJK compatibility ideograph
    "singletons": ("\u212b \u2126 \uf900", "\u00c5 \u03a9 \u8c48"),
}

# Things NFC leaves alone and a byte-level tokenizer must keep exactly.
KEPT = [
    "ㅎㅏㄴ ㄱㅡㄹ",  # compatibility jamo: NFC does not compose them
    "ﬁ ① ｶﾀｶﾅ ²",  # compatibility characters: NFKC would change them, NFC must not
    "👩\u200d💻 🇰🇷 ✌\ufe0f 👍🏽",  # ZWJ sequence, flag, variation selector, skin tone
    "tab\there\r\nCRLF\u00a0nbsp\u3000ideographic space  ",
    "<think> and <|endofturn|> as plain text",  # special tokens inside text
    "\ufffd replacement and \u0000 NUL",
]


@pytest.fixture(scope="module")
def tokenizers():
    _, base, result, plain, _ = train_all()
    return {"superbpe": result.tokenizer, "plain": plain, "base": base}


def round_trip(tok, text: str) -> str:
    return tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["superbpe", "plain"])
def test_round_trip_is_nfc_in_every_language_and_form(tokenizers, name):
    tok = tokenizers[name]
    for domain, text in TEXTS.items():
        for form in ("NFC", "NFD", "NFKD", "NFKC"):
            variant = unicodedata.normalize(form, text)
            assert round_trip(tok, variant) == unicodedata.normalize(NFC, variant), (domain, form)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["superbpe", "plain"])
def test_non_nfc_input_decodes_to_its_nfc_form(tokenizers, name):
    tok = tokenizers[name]
    for case, (raw, nfc) in NON_NFC.items():
        assert raw != nfc and unicodedata.normalize(NFC, raw) == nfc, case  # the case really is non-NFC
        assert round_trip(tok, raw) == nfc, case
        # the normal form is what gets tokenized: the raw text and its NFC form give the same ids
        assert tok.encode(raw, add_special_tokens=False).ids == tok.encode(nfc, add_special_tokens=False).ids, case


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["superbpe", "plain"])
def test_what_nfc_keeps_round_trips_exactly(tokenizers, name):
    tok = tokenizers[name]
    for text in KEPT:
        assert unicodedata.normalize(NFC, text) == text
        assert round_trip(tok, text) == text


@pytest.mark.timeout(60)
def test_special_tokens_in_text_are_dropped_by_default_decode(tokenizers):
    """decode() skips special tokens unless told not to: literal '<think>' in a document is lost then."""
    tok = tokenizers["superbpe"]
    ids = tok.encode("a <think> b", add_special_tokens=False).ids
    assert tok.token_to_id("<think>") in ids
    assert tok.decode(ids, skip_special_tokens=False) == "a <think> b"
    assert "<think>" not in tok.decode(ids)


@pytest.mark.timeout(60)
def test_previous_generation_base_is_nfkc_not_nfc(tokenizers):
    base = tokenizers["base"]
    assert round_trip(base, "ﬁ ①") == unicodedata.normalize("NFKC", "ﬁ ①") != "ﬁ ①"


def _held_out_documents(folder: Path):
    for path in sorted(folder.glob("*/heldout.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield path.parent.name, json.loads(line)["text"]


@pytest.mark.timeout(120)
@pytest.mark.skipif(not os.environ.get("KEXAONE_TOKENIZER_HELDOUT"), reason="no built benchmark corpus given")
def test_every_held_out_document_round_trips(tokenizers):
    folder = Path(os.environ["KEXAONE_TOKENIZER_HELDOUT"])
    failures, n = [], 0
    for domain, text in _held_out_documents(folder):
        for form in ("NFC", "NFD", "NFKD"):
            variant = unicodedata.normalize(form, text)
            for name in ("superbpe", "plain"):
                n += 1
                if round_trip(tokenizers[name], variant) != unicodedata.normalize(NFC, variant):
                    failures.append((name, domain, form, text[:60]))
    assert n and not failures, failures[:5]
