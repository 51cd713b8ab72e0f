"""SuperBPE with stock `tokenizers`: the properties the K-EXAONE tokenizer must have."""

from __future__ import annotations

import dataclasses
import json
import math
import unicodedata

import pytest
from tokenizers import Tokenizer, pre_tokenizers

from config import get_preset
from corpus.sources import filesystem, iter_documents
from resources.corpus_sources import CorpusSources
from tokenizer.superbpe import (
    SuperBPEPlan,
    TokenizerTrainingError,
    allocate_by_need,
    base_token_frequencies,
    bytes_per_token,
    is_superword,
    kept_base_merges,
    merges_of,
    token_text,
    train_base_tokenizer,
    train_plain_bpe,
    train_superbpe,
    word_count,
)

REALLOCATION_DOMAINS = ("de", "ja", "vi", "code", "stem")

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
        keep_base_ancestors=t.keep_base_ancestors,
    )


def train_all(reallocation_split: str = "pooled"):
    preset = get_preset("tiny")
    plan = dataclasses.replace(plan_for(preset), reallocation_split=reallocation_split)
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
        reallocation_by_domain={d: stream(d) for d in REALLOCATION_DOMAINS},
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


def test_kept_ancestors_counted_keep_exactly_the_share_in_frequency_order(trained):
    """keep_base_ancestors=counted (the full preset): the kept vocabulary, ancestors included, is 70 %."""
    base = trained["base"]
    freqs = base_token_frequencies(base, trained["all_texts"])
    counted = kept_base_merges(base, freqs, 0.7, "counted")
    extra = kept_base_merges(base, freqs, 0.7, "extra")
    base_merges = merges_of(base)
    kept_vocab = 256 + len(counted)
    assert kept_vocab == math.ceil(0.7 * (256 + len(base_merges)))
    # the ancestors on top take more: the share "extra" keeps is well above 70 %
    assert len(extra) > len(counted) and set(counted) <= set(extra)
    assert (256 + len(extra)) / (256 + len(base_merges)) > 0.75
    # a closed merge list in base order: every part is a byte or an earlier kept merge
    made = set(pre_tokenizers.ByteLevel.alphabet())
    for a, b in counted:
        assert a in made and b in made
        made.add(a + b)
    assert counted == [m for m in base_merges if m in set(counted)]
    # frequency order: the most frequent half of the base vocabulary is kept whole
    vocab = base.get_vocab()
    ranked = sorted(vocab, key=lambda t: (-freqs.get(vocab[t], 0), vocab[t]))
    assert all(t in made for t in ranked[: len(vocab) // 2] if t not in trained["plan"].special_tokens)
    with pytest.raises(TokenizerTrainingError, match="keep_base_ancestors='all' is not counted or extra"):
        kept_base_merges(base, freqs, 0.7, "all")


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
        (t, d)
        for t in ("plain", "superbpe")
        for d in ("en", "ko", "es", "de", "ja", "vi", "multilingual", "stem", "code")
    }
    en_plain = next(r for r in rows if r["tokenizer"] == "plain" and r["domain"] == "en")
    n_tokens = len(trained["plain"].encode(text, add_special_tokens=False).ids)
    assert en_plain["bytes_per_token"] == pytest.approx(len(text.encode()) / n_tokens)
    assert next(r for r in rows if r["domain"] == "multilingual")["documents"] == 4


def _worst_domain_ratio(tok: Tokenizer, plain: Tokenizer) -> tuple[float, str]:
    ratios = {}
    for d in REALLOCATION_DOMAINS:
        texts = list(stream(d)())
        ratios[d] = bytes_per_token(tok, texts) / bytes_per_token(plain, texts)
    worst = min(ratios, key=ratios.get)
    return ratios[worst], worst


def test_by_need_reallocation_lifts_the_worst_domain_and_keeps_the_recipe(trained):
    plan, _, result, plain, _ = train_all("by_need")
    tok = result.tokenizer
    assert tok.get_vocab_size(with_added_tokens=True) == plan.padded_vocab_size
    final = merges_of(tok)
    assert final[: len(result.stage1_merges)] == result.stage1_merges
    assert set(result.superword_merges_by_group) == {"en", "ko", "other"}
    # every reallocated merge (and fill merge) is counted once, by the domain that gave it
    realloc = len(result.stage1_merges) - result.kept_base_merges
    assert sum(result.reallocated_merges_by_domain.values()) == realloc + result.fill_merges
    assert set(result.need_targets) == set(REALLOCATION_DOMAINS)
    # pooled BPE follows raw pair counts; by_need raises the domain furthest below plain BPE
    pooled_worst, pooled_name = _worst_domain_ratio(trained["super"], plain)
    by_need_worst, by_need_name = _worst_domain_ratio(tok, plain)
    assert by_need_worst > pooled_worst, (pooled_name, pooled_worst, by_need_name, by_need_worst)
    for text in ROUND_TRIP_TEXTS:
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_allocate_by_need_gives_chunks_to_the_neediest_and_skips_shared_merges():
    start: list[tuple[str, str]] = []
    shared = [("a", "b"), ("ab", "c")]
    candidates = {"x": shared + [("x", "y")], "z": shared + [("z", "w"), ("zw", "v")]}
    samples = {"x": ["abc xy " * 20], "z": ["abc zwv " * 20]}
    # z's target is far out of reach: every chunk goes to z until its list is used up, then to x
    merges, taken = allocate_by_need(
        start, candidates, samples, {"x": 1.0, "z": 100.0}, 5, piece_regex=r"\S+|\s+", normalization="NFC", rounds=5
    )
    assert merges == [("a", "b"), ("ab", "c"), ("z", "w"), ("zw", "v"), ("x", "y")]
    assert taken == {"x": 1, "z": 4}
    # the budget is respected even when the lists could give more
    merges, taken = allocate_by_need(
        start, candidates, samples, {"x": 1.0, "z": 1.0}, 2, piece_regex=r"\S+|\s+", normalization="NFC", rounds=2
    )
    assert len(merges) == 2 and sum(taken.values()) == 2


def test_by_need_without_per_domain_texts_is_refused_before_training(trained):
    plan = dataclasses.replace(trained["plan"], reallocation_split="by_need")
    with pytest.raises(TokenizerTrainingError, match="needs each reallocation domain's texts"):
        train_superbpe(
            plan,
            trained["base"],
            all_texts=trained["all_texts"],
            reallocation_texts=trained["all_texts"],
            superword_texts={"en": trained["all_texts"], "ko": trained["all_texts"], "other": trained["all_texts"]},
        )


def test_superword_policy_rows_compare_the_split_and_share_with_the_policy(trained):
    from tokenizer.recipe import superword_policy_rows, superword_vocab_share

    plan, result = trained["plan"], trained["result"]
    rows = {r["group"]: r for r in superword_policy_rows(result.tokenizer, plan, result.superword_merges_by_group)}
    assert [rows[g]["policy_pct"] for g in ("en", "ko", "other")] == [33.3, 50.0, 16.7]
    assert sum(rows[g]["budget_merges"] for g in ("en", "ko", "other")) == rows["vocabulary"]["budget_merges"]
    assert rows["ko"]["learned_merges"] == result.superword_merges_by_group["ko"]
    assert sum(rows[g]["achieved_pct"] for g in ("en", "ko", "other")) == pytest.approx(100, abs=0.2)
    assert rows["vocabulary"]["policy_pct"] == 20.0
    assert rows["vocabulary"]["achieved_pct"] == round(100 * superword_vocab_share(result.tokenizer), 1)


def test_text_sample_takes_line_blocks_from_every_long_document():
    from tokenizer.superbpe import text_sample

    docs = ["".join(f"document {d} line {i}\n" for i in range(10_000)) for d in range(3)]  # ~200 KB each
    sample = text_sample(lambda: iter(docs), 60_000)
    size = sum(len(b.encode()) for b in sample)
    assert 30_000 < size < 120_000
    assert {b.split()[1] for b in sample} == {"0", "1", "2"}  # blocks of every document, not whole documents
    assert all(b.endswith("\n") for b in sample) and sample == text_sample(lambda: iter(docs), 60_000)
    assert text_sample(lambda: iter(["short"]), 60_000) == ["short"]


def test_allocate_by_need_learns_the_rest_pooled_once_every_domain_is_at_target():
    candidates = {"x": [("x", "y")], "z": [("z", "w")]}
    samples = {"x": ["xy " * 20], "z": ["zw " * 20]}
    rest = lambda: iter(["ab ab ab abc abc", "ab cd cd"])  # noqa: E731
    merges, taken = allocate_by_need(
        [], candidates, samples, {"x": 0.01, "z": 0.01}, 2, piece_regex=r"\S+|\s+", normalization="NFC", rest=rest
    )
    assert taken == {"x": 0, "z": 0, "pooled": 2} and merges[0] == ("a", "b")  # the pooled corpus's top pair
