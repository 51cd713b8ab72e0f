"""Each filter of each partition's chain on real text (the demo corpus): a document that must pass and one
that must fail, per language, with the thresholds of the tiny preset. Filters are called directly
(``filter(doc)``), as datatrove's BaseFilter.run does."""

from __future__ import annotations

import os
import tarfile

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.utils._import_utils import ASSETS_PATH

from config import get_preset
from corpus.pipeline import filter_chain
from corpus.steps import CodeQualityFilter, ExclusionWriter, OfflineURLFilter
from corpus.tokenizers import CodeTokenizer, JapaneseScriptTokenizer, SpaceDelimitedTokenizer
from tests.corpus_samples import DEMO, clean_records, demo_records, planted

PRESET = get_preset("tiny")
WEB = ("en", "es", "de", "vi", "ko", "ja")
TEXT_PARTITIONS = WEB + ("stem",)
OTHER_LANGUAGE = {"en": "de", "es": "vi", "de": "en", "vi": "es", "ko": "ja", "ja": "ko", "stem": "es"}


def chain(partition: str, tmp_path, url_blocklist: bool = False) -> dict:
    args = PRESET.data.filters[partition]
    threshold = PRESET.data.language_score_threshold[args.lid_language] if args.lid_language else None
    return dict(filter_chain(args, threshold, url_blocklist, lambda step: ExclusionWriter(str(tmp_path / step), step)))


def verdict(step: BaseFilter, text: str, **metadata) -> tuple[bool, str | None]:
    return get_filter_result(step.filter(Document(text=text, id="t", metadata=dict(metadata))))


def run_chain(steps: dict, record: dict) -> tuple[bool, str | None]:
    """The record through the whole chain in order; (kept, the step:reason that dropped it)."""
    doc = Document(text=record["text"], id=record["id"], metadata={"url": record.get("url")})
    for key, step in steps.items():
        if isinstance(step, BaseFilter):
            kept, reason = get_filter_result(step.filter(doc))
            if not kept:
                return False, f"{key}:{reason}"
        else:
            doc.text = step.format(doc.text)
    return True, None


@pytest.mark.parametrize("partition", TEXT_PARTITIONS)
def test_every_clean_demo_document_passes_the_whole_chain(partition, tmp_path):
    steps = chain(partition, tmp_path)
    results = {r["id"]: run_chain(steps, r) for r in clean_records(partition)}
    assert len(results) >= 20
    assert {i: why for i, (kept, why) in results.items() if not kept} == {}


@pytest.mark.parametrize("partition", TEXT_PARTITIONS)
def test_planted_low_quality_and_wrong_language_documents_are_rejected(partition, tmp_path):
    steps = chain(partition, tmp_path)
    noise = planted(partition, "low_quality") + planted(partition, "wrong_language")
    assert noise
    assert {r["id"]: run_chain(steps, r)[0] for r in noise} == {r["id"]: False for r in noise}


@pytest.mark.parametrize("partition", TEXT_PARTITIONS)
def test_language_id_keeps_the_language_and_rejects_another(partition, tmp_path):
    lid = chain(partition, tmp_path)["language_id"]
    assert verdict(lid, clean_records(partition)[0]["text"]) == (True, None)
    assert verdict(lid, clean_records(OTHER_LANGUAGE[partition])[0]["text"]) == (False, "wrong_language")


@pytest.mark.parametrize("partition", TEXT_PARTITIONS)
def test_gopher_quality_rejects_a_fragment(partition, tmp_path):
    gopher = chain(partition, tmp_path)["gopher_quality"]
    text = clean_records(partition)[1]["text"]
    assert verdict(gopher, text) == (True, None)
    fragment = text.split("\n")[0]  # the title line alone
    assert verdict(gopher, fragment) == (False, "gopher_short_doc")


@pytest.mark.parametrize("partition", TEXT_PARTITIONS)
def test_gopher_repetition_rejects_repeated_paragraphs(partition, tmp_path):
    repetition = chain(partition, tmp_path)["gopher_repetition"]
    text = clean_records(partition)[2]["text"]
    assert verdict(repetition, text) == (True, None)
    paragraphs = text.split("\n\n")
    repeated = "\n\n".join(paragraphs + [paragraphs[-1]] * 3)
    kept, reason = verdict(repetition, repeated)
    assert not kept and reason in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")


@pytest.mark.parametrize("partition", TEXT_PARTITIONS)
def test_fineweb_quality_rejects_list_like_text(partition, tmp_path):
    fineweb = chain(partition, tmp_path)["fineweb_quality"]
    text = clean_records(partition)[3]["text"]
    assert verdict(fineweb, text) == (True, None)
    tokenizer = JapaneseScriptTokenizer() if partition == "ja" else SpaceDelimitedTokenizer(partition)
    one_word_per_line = "\n".join(w for w in tokenizer.word_tokenize(text) if w.isalnum())
    kept, reason = verdict(fineweb, one_word_per_line)
    assert not kept and reason in ("line_punct_ratio", "short_line_ratio", "list_ratio")


@pytest.mark.parametrize("partition", ("en", "es", "de", "vi", "ko"))
def test_c4_rejects_lorem_ipsum_and_curly_brackets(partition, tmp_path):
    c4 = chain(partition, tmp_path)["c4"]
    text = clean_records(partition)[4]["text"]
    assert verdict(c4, text) == (True, None)
    assert verdict(c4, text + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.") == (False, "lorem_ipsum")
    assert verdict(c4, text + '\nThe config is {"debug": true} for this page.') == (False, "curly_bracket")


def test_c4_is_not_applied_to_japanese_and_stem_keeps_braces(tmp_path):
    assert "c4" not in chain("ja", tmp_path)  # C4 counts whitespace words and ASCII punctuation
    c4 = chain("stem", tmp_path)["c4"]
    worked = clean_records("stem")[0]["text"] + "\nIn LaTeX the result is written \\frac{m}{V} = 2.5."
    assert verdict(c4, worked) == (True, None)


def test_stem_keeps_number_heavy_worked_examples_that_web_prose_filters_would_drop(tmp_path):
    """STEM keeps numbers and formulas: its Gopher thresholds accept what the English web chain rejects."""

    def alpha_ratio(text: str) -> float:
        words = SpaceDelimitedTokenizer("en").word_tokenize(text)
        return sum(any(c.isalpha() for c in w) for w in words) / len(words)

    densest = min(clean_records("stem"), key=lambda r: alpha_ratio(r["text"]))
    assert alpha_ratio(densest["text"]) < 0.5
    assert verdict(chain("stem", tmp_path)["gopher_quality"], densest["text"]) == (True, None)
    kept, reason = verdict(chain("en", tmp_path)["gopher_quality"], densest["text"])
    assert not kept and reason in ("gopher_below_avg_threshold", "gopher_below_alpha_threshold")


def test_code_partition_gets_code_filters_and_no_web_prose_filters(tmp_path):
    steps = chain("code", tmp_path)
    assert list(steps) == ["code_quality", "pii"]
    code = steps["code_quality"]
    files = sorted((DEMO / "code").iterdir())
    assert len(files) == 28
    assert {f.name: verdict(code, f.read_text())[0] for f in files} == {f.name: True for f in files}
    source = (DEMO / "code" / "retry.py").read_text()
    minified = source + "\n" + "x=" + "+".join(["1"] * 700) + "\n"
    assert verdict(code, minified) == (False, "code_long_line")
    generated = "# Code generated by protoc-gen-go. DO NOT EDIT.\n" + source
    assert verdict(code, generated) == (False, "code_autogenerated")
    banner = "\n".join(["# " + "=-" * 30 + "|"] * 12)
    assert verdict(code, banner) == (False, "code_low_alphanum")
    assert verdict(code, "print('hello')\n") == (False, "code_too_few_lines")


def test_code_quality_limits_come_from_the_preset():
    args = PRESET.data.filters["code"].code_quality
    step = CodeQualityFilter(**{**args.__dict__, "max_bytes": 100})
    assert verdict(step, (DEMO / "code" / "retry.py").read_text()) == (False, "code_too_large")


def _listed_word(name: str) -> str:
    with open(os.path.join(ASSETS_PATH, name)) as f:
        return next(line.strip() for line in f if line.strip() and not line.startswith("#") and line.strip().isalpha())


def test_url_filter_is_offline_and_passes_documents_without_a_url(tmp_path):
    url = chain("en", tmp_path)["url"]
    assert isinstance(url, OfflineURLFilter) and url.tldextractor.suffix_list_urls == ()
    assert verdict(url, "text", url="https://example.com/en/travel/lisbon-three-days") == (True, None)
    assert verdict(url, "a code file has no url") == (True, None)
    banned = _listed_word("banned_words.txt")
    assert verdict(url, "text", url=f"https://example.com/{banned}/page") == (False, "url_hard_blacklisted")


def test_url_filter_domain_block_list_shipped_with_datatrove(tmp_path):
    with tarfile.open(os.path.join(ASSETS_PATH, "url_filterblacklistsv0_3_0.tar.gz")) as tar:
        domains = tar.extractfile("domains")
        blocked = next(line.decode().strip() for line in domains if line.strip() and not line.startswith(b"#"))
    url = OfflineURLFilter(domain_blocklist=True)
    assert verdict(url, "text", url=f"https://{blocked}/index.html") == (False, "url_domain")
    assert verdict(url, "text", url="https://example.org/en/news") == (True, None)


def test_pii_formatter_replaces_emails_and_public_ips_only(tmp_path):
    pii = chain("en", tmp_path)["pii"]
    text = "Write to jane.doe@mail-provider.net; the server 8.8.4.4 and the router 192.168.0.1 are up."
    out = pii.format(text)
    assert "jane.doe@mail-provider.net" not in out and "8.8.4.4" not in out
    assert "192.168.0.1" in out and "example" in out


def test_word_tokenizers():
    en = SpaceDelimitedTokenizer("en")
    assert en.word_tokenize("Don't stop: Baden-Württemberg, Việt Nam!") == [
        "Don't",
        "stop",
        ":",
        "Baden-Württemberg",
        ",",
        "Việt",
        "Nam",
        "!",
    ]
    assert en.sent_tokenize("One here. Two there?\nA title\n\nThree.") == [
        "One here.",
        "Two there?",
        "A title",
        "Three.",
    ]
    ja = JapaneseScriptTokenizer()
    assert ja.word_tokenize("明日は全国的に晴れ、スマートフォンを3台使う。") == [
        "明日",
        "は",
        "全国的",
        "に",
        "晴",
        "れ",
        "、",
        "スマートフォン",
        "を",
        "3",
        "台使",
        "う",
        "。",
    ]
    assert ja.sent_tokenize("雨です。晴れます！本当？") == ["雨です。", "晴れます！", "本当？"]
    assert SpaceDelimitedTokenizer("ko").word_tokenize("입주민 여러분께 알려 드립니다.") == [
        "입주민",
        "여러분께",
        "알려",
        "드립니다",
        ".",
    ]
    assert CodeTokenizer().word_tokenize("def f(x=3.5): return x_1") == [
        "def",
        "f",
        "(",
        "x",
        "=",
        "3.5",
        ")",
        ":",
        "return",
        "x_1",
    ]
    assert len(demo_records("ja")) == 31


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"data.filters.en.gopher_quality.min_stop_words": 9},
            "data.filters.en.gopher_quality.min_stop_words=9 exceeds the 8 stop words listed",
        ),
        (
            {"data.filters.ja.gopher_quality.min_avg_word_length": 9.0},
            "data.filters.ja.gopher_quality: need 0 < min_avg_word_length < max_avg_word_length",
        ),
        (
            {"data.filters.stem.lid_language": "fr"},
            "data.filters.stem.lid_language='fr' has no data.language_score_threshold entry",
        ),
        (
            {"data.minhash.num_buckets": 4},
            "data.minhash: only 16% of pairs at data.minhash_threshold=0.35 become candidates",
        ),
        ({"data.pipeline.tasks": 0}, "data.pipeline.tasks must be >= 1 (got 0)"),
    ],
)
def test_filter_thresholds_are_validated_before_anything_runs(overrides, message):
    from config import PresetError

    with pytest.raises(
        PresetError,
        match="preset 'tiny' is invalid: .*"
        + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace(".", r"\."),
    ):
        get_preset("tiny", overrides)
    full = get_preset("k-exaone-236b")
    assert full.data.minhash.candidate_check is False and abs(full.data.minhash.lsh_threshold - 0.8) <= 0.1
