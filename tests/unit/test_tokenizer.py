"""SuperBPE with stock `tokenizers`: the properties the K-EXAONE tokenizer must have."""

from __future__ import annotations

import json
import unicodedata

import pytest
from tokenizers import Tokenizer

from config import get_preset
from corpus.sources import filesystem, iter_documents
from resources.corpus_sources import CorpusSources
from tokenizer.superbpe import (
    SuperBPEPlan,
    base_token_frequencies,
    is_superword,
    merges_of,
    token_text,
    train_base_tokenizer,
    train_plain_bpe,
    train_superbpe,
    word_count,
)

ROUND_TRIP_TEXTS = [
    "안녕하세요, 여러분! 오늘 서울의 날씨는 맑습니다.",
    "東京は日本の首都です。カタカナとひらがな、漢字。",
    "Tiếng Việt có nhiều dấu: ă, â, đ, ê, ô, ơ, ư — người Việt Nam.",
    "Emoji 😀👍🏽 and flags 🇰🇷 🇩🇪 in one line.",
    "def f(x):\n\tif x:\n\t\treturn x  # tabs\n    return None\n",
    "line one\r\nline two\r\n\r\nGrüße aus Köln, señor año.",
    "  leading and trailing spaces  ",
]


def stream(*sources):
    corpus = CorpusSources()

    def texts():
        for source in sources:
            manifest = corpus.manifest(source)
            fs, _ = filesystem(manifest.uri)
            for file in manifest.files:
                for doc in iter_documents(fs, file):
                    yield doc.text

    return texts


def plan_for(preset) -> SuperBPEPlan:
    t = preset.tokenizer
    return SuperBPEPlan(
        vocab_size=t.vocab_size,
        special_tokens=t.special_tokens,
        padded_vocab_size=preset.model.padded_vocab_size,
        keep_base_fraction=t.keep_base_fraction,
        superword_fraction=t.superword_fraction,
        superword_allocation=t.superword_allocation,
        max_superword_words=t.max_superword_words,
        normalization=t.normalization,
    )


def train_all():
    preset = get_preset("tiny")
    plan = plan_for(preset)
    base = train_base_tokenizer(
        stream("en", "ko", "es", "code", "stem"), preset.tokenizer.base_vocab_size, plan.special_tokens
    )
    all_texts = stream("en", "ko", "es", "de", "ja", "vi", "code", "stem")
    result = train_superbpe(
        plan,
        base,
        all_texts=all_texts,
        reallocation_texts=stream("de", "ja", "vi", "code", "stem"),
        superword_texts={
            "en": stream("en"),
            "ko": stream("ko"),
            "other": stream("es", "de", "ja", "vi", "code", "stem"),
        },
    )
    return plan, base, result, train_plain_bpe(all_texts, plan), all_texts


@pytest.fixture(scope="module")
def trained():
    plan, base, result, plain, all_texts = train_all()
    return {
        "plan": plan,
        "base": base,
        "result": result,
        "super": result.tokenizer,
        "plain": plain,
        "all_texts": all_texts,
    }


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_round_trip_is_exact(trained, text, tmp_path):
    path = tmp_path / "tokenizer.json"
    trained["super"].save(str(path))
    for tok in (Tokenizer.from_file(str(path)), trained["plain"]):
        ids = tok.encode(text).ids
        assert tok.decode(ids, skip_special_tokens=False) == text


def test_nfc_is_applied(trained):
    decomposed = unicodedata.normalize("NFD", "Tiếng Việt và tiếng Hàn")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    tok = trained["super"]
    assert tok.decode(tok.encode(decomposed).ids) == unicodedata.normalize("NFC", decomposed)
    assert json.loads(tok.to_str())["normalizer"]["type"] == "NFC"


def test_special_tokens_are_single_ids_and_vocab_is_padded(trained):
    tok, plan = trained["super"], trained["plan"]
    for special in plan.special_tokens:
        ids = tok.encode(f"x {special} y").ids
        assert tok.token_to_id(special) in ids
        assert tok.encode(special).ids == [tok.token_to_id(special)]
    assert "<think>" in plan.special_tokens and "<|assistant|>" in plan.special_tokens
    assert tok.get_vocab_size(with_added_tokens=True) == plan.padded_vocab_size == 2048


def test_superwords_exist_span_whitespace_and_at_most_four_words(trained):
    vocab = trained["super"].get_vocab()
    superwords = [t for t in vocab if is_superword(t)]
    assert len(superwords) >= 50
    assert all(" " in token_text(t).strip() or "\t" in token_text(t).strip() for t in superwords)
    assert max(word_count(t) for t in superwords) <= trained["plan"].max_superword_words
    assert not [t for t in trained["plain"].get_vocab() if is_superword(t)]  # the control has none
    # superwords are used when encoding real text
    text = next(iter(trained["all_texts"]()))
    ids = trained["super"].encode(text).ids
    id_to_token = {i: t for t, i in vocab.items()}
    assert any(is_superword(id_to_token[i]) for i in ids)


def test_no_superword_crosses_colon_space(trained):
    assert not [t for t in trained["super"].get_vocab() if ": " in token_text(t)]


def test_stage1_merges_are_a_prefix_of_the_final_merges(trained):
    final = merges_of(trained["super"])
    stage1 = trained["result"].stage1_merges
    assert final[: len(stage1)] == stage1 and len(final) > len(stage1)
    assert not any(is_superword(a + b) for a, b in stage1)


def test_retains_the_most_frequent_base_tokens(trained):
    base, new_vocab = trained["base"], set(trained["super"].get_vocab())
    freqs = base_token_frequencies(base, trained["all_texts"])
    base_vocab = base.get_vocab()
    ranked = sorted(base_vocab, key=lambda t: (-freqs.get(base_vocab[t], 0), base_vocab[t]))
    top = ranked[: int(0.7 * len(base_vocab))]
    assert all(t in new_vocab for t in top)  # every one of the top 70 %
    assert sum(t in new_vocab for t in base_vocab) >= 0.7 * len(base_vocab)


def test_training_is_deterministic(trained):
    _, _, again, plain_again, _ = train_all()
    assert again.tokenizer.to_str() == trained["super"].to_str()
    assert plain_again.to_str() == trained["plain"].to_str()


def test_held_out_split_is_deterministic_and_disjoint_from_training():
    from tokenizer.recipe import held_out_texts, is_held_out, training_texts

    ids = [f"doc-{i}" for i in range(4000)]
    share = sum(is_held_out(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12 and [is_held_out(i, 0.1) for i in ids[:50]] == [is_held_out(i, 0.1) for i in ids[:50]]
    docs = {"en": lambda: iter((i, f"text of {i}") for i in ids)}
    train, held = set(training_texts(docs, ["en"], 0.1)()), set(held_out_texts(docs, ["en"], 0.1)())
    assert not train & held and len(train) + len(held) == len(ids)
    with pytest.raises(KeyError, match=r"needs corpus domains \['ko'\]"):
        training_texts(docs, ["en", "ko"], 0.1)


def test_efficiency_rows_measure_bytes_per_token(trained):
    from tokenizer.recipe import efficiency_rows

    text = "안녕하세요 여러분. The quick brown fox jumps over the lazy dog. " * 3
    docs = {d: (lambda d=d: iter([(f"{d}-held", text)])) for d in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")}
    rows = efficiency_rows({"plain": trained["plain"], "superbpe": trained["super"]}, docs, held_out_fraction=1.0)
    assert {(r["tokenizer"], r["domain"]) for r in rows} == {
        (t, d) for t in ("plain", "superbpe") for d in ("en", "ko", "multilingual", "stem", "code")
    }
    en_plain = next(r for r in rows if r["tokenizer"] == "plain" and r["domain"] == "en")
    n_tokens = len(trained["plain"].encode(text, add_special_tokens=False).ids)
    assert en_plain["bytes_per_token"] == pytest.approx(len(text.encode()) / n_tokens)
    assert next(r for r in rows if r["domain"] == "multilingual")["documents"] == 4
