"""evaluation/niah.py: grid, cases, exact-match scoring, gate, report, retrieval training documents.

A toy word-level tokenizer stands in for SuperBPE (one id per whitespace-separated piece and one per
digit), so the tests need no artifact and run in well under a second each."""

from __future__ import annotations

import random
import re

import pytest

from evaluation import niah


class ToyTokenizer:
    """Words (with their leading space) and single digits get ids; ``decode`` inverts ``encode``."""

    PIECE = re.compile(r"\s*[0-9]|\s*[^\s0-9]+|\s+")

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.pieces: list[str] = []

    def encode(self, text: str) -> list[int]:
        out = []
        for piece in self.PIECE.findall(text):
            if piece not in self.vocab:
                self.vocab[piece] = len(self.pieces)
                self.pieces.append(piece)
            out.append(self.vocab[piece])
        return out

    def decode(self, ids) -> str:
        return "".join(self.pieces[i] for i in ids)


FILLER = {
    "en": [
        "The river runs past the old mill. Children play on the bank in summer. "
        "Nobody remembers who built the bridge.\nIt is still standing after a hundred years."
    ],
    "de": ["Der Zug fährt um acht Uhr ab. Am Bahnhof gibt es einen kleinen Kiosk. Die Brötchen sind frisch."],
    "ko": ["오늘은 날씨가 맑습니다. 공원에는 사람들이 많습니다. 저녁에는 비가 올 수도 있습니다."],
}


@pytest.fixture
def tok():
    return ToyTokenizer()


def _find(haystack, needle) -> list[int]:
    n = len(needle)
    return [i for i in range(len(haystack) - n + 1) if list(haystack[i : i + n]) == list(needle)]


# -- scoring ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generated, expected, correct",
    [
        (" 48213.", "48213", True),  # the plain right answer
        ("48213", "48213", True),
        (" 48213. The river runs 77", "48213", True),  # extra text after the value is fine
        (" is 48213 indeed", "48213", True),  # the first number counts, wherever it starts
        ("４８２１３입니다", "48213", True),  # full-width digits (NFKC)
        (" 48214.", "48213", False),  # wrong
        (" 4821", "48213", False),  # partial number
        (" 4821.3", "48213", False),  # broken number
        (" 482135", "48213", False),  # a digit too many
        (" 1 48213", "48213", False),  # a different number first
        (" the number", "48213", False),  # no number at all
        ("", "48213", False),
    ],
)
def test_exact_match_scoring(generated, expected, correct):
    assert niah.score_exact(generated, expected) is correct


# -- grid ---------------------------------------------------------------------------------------------


def test_grid_lengths_and_depths():
    assert niah.grid_lengths(512, 4088, 5) == [512, 1406, 2300, 3194, 4088]
    assert niah.grid_lengths(100, 100, 1) == [100]
    assert niah.stage_lengths(512, 5, 128) == [128, 222, 316, 410, 504]  # top = stage length - answer room
    assert niah.grid_depths(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="distinct lengths"):
        niah.grid_lengths(10, 12, 5)
    with pytest.raises(ValueError):
        niah.grid_depths(0)


def test_cases_cover_exactly_the_grid_with_exact_prompt_lengths(tok):
    lengths, depths = [60, 90, 150], niah.grid_depths(5)
    cases = niah.make_cases(tok.encode, FILLER, lengths, depths, trials=3, seed=7)
    cells = [(c.length, c.depth, c.trial) for c in cases]
    assert sorted(cells) == sorted((n, d, t) for n in lengths for d in depths for t in range(3))
    assert len(set(cells)) == len(cells) == 45
    assert all(len(c.prompt_ids) == c.length for c in cases)
    assert {c.language for c in cases} == {"en", "de", "ko"}  # languages rotate over the cases
    assert len({c.key for c in cases}) == len(cases)  # one fresh key per case
    assert all(niah.key_split(c.key) == "eval" for c in cases)
    assert all(len(c.value) == niah.VALUE_DIGITS and c.value[0] != "0" for c in cases)  # fixed length
    assert all(len(set(c.value)) == len(c.value) for c in cases)  # distinct digits
    # deterministic in the seed
    again = niah.make_cases(tok.encode, FILLER, lengths, depths, trials=3, seed=7)
    assert [c.prompt_ids for c in again] == [c.prompt_ids for c in cases]
    assert niah.make_cases(tok.encode, FILLER, lengths, depths, 3, seed=8)[0].prompt_ids != cases[0].prompt_ids


def test_needle_sits_once_at_its_depth_and_the_prompt_ends_with_the_question(tok):
    cases = niah.make_cases(tok.encode, FILLER, [80, 200], niah.grid_depths(5), trials=2, seed=1)
    longest_sentence = max(
        len(tok.encode(" " + s)) for texts in FILLER.values() for t in texts for s in niah.split_sentences(t)
    )
    for c in cases:
        template = niah.TEMPLATES[c.language]
        assert _find(c.prompt_ids, c.needle_ids) == [c.needle_index]  # exactly once
        text = tok.decode(c.needle_ids)
        assert text == "\n" + template.sentence(c.key, c.value)
        question = tok.encode("\n") + tok.encode(template.question(c.key))
        assert list(c.prompt_ids[-len(question) :]) == question  # the answer is the continuation
        assert list(c.needle_ids[: len(question)]) == question
        filler_tokens = c.length - len(c.needle_ids) - len(question)
        assert abs(c.needle_index - c.depth * filler_tokens) <= longest_sentence
        if c.depth == 0.0:
            assert c.needle_index == 0
        if c.depth == 1.0:
            assert c.needle_index + len(c.needle_ids) == c.length - len(question)
        assert tok.decode(c.prompt_ids).count(c.value) == 1


def test_a_length_too_short_for_needle_and_question_is_an_error(tok):
    with pytest.raises(ValueError, match="too short"):
        niah.make_cases(tok.encode, FILLER, [8], [0.5], trials=1, seed=0)
    with pytest.raises(ValueError, match="no filler text"):
        niah.make_cases(tok.encode, {"xx": ["Lorem ipsum."]}, [80], [0.5], trials=1, seed=0)


# -- evaluate, gate, report ---------------------------------------------------------------------------


def _oracle(tok, cases, wrong: set[tuple[int, float, int]] = frozenset()):
    """A generate_fn that reads the value off the prompt, except for the (length, depth, trial) in wrong."""
    by_prompt = {c.prompt_ids: c for c in cases}

    def generate_fn(ids):
        c = by_prompt[tuple(ids)]
        return " 999999." if (c.length, c.depth, c.trial) in wrong else f" {c.value}. and more"

    return generate_fn


def test_evaluate_gate_passes_and_fails_naming_the_cells(tok):
    lengths, depths = [60, 120], niah.grid_depths(3)
    cases = niah.make_cases(tok.encode, FILLER, lengths, depths, trials=3, seed=3)
    results = niah.evaluate(cases, _oracle(tok, cases))
    assert [(c.length, c.depth, c.trials, c.correct) for c in results.cells] == [
        (n, d, 3, 3) for n in lengths for d in depths
    ]
    assert niah.gate(results, 0.95) == (True, [])
    assert results.accuracy == 1.0

    results = niah.evaluate(cases, _oracle(tok, cases, wrong={(120, 0.5, 1), (60, 0.0, 0), (60, 0.0, 2)}))
    passed, failing = niah.gate(results, 0.95)
    assert not passed
    assert [(c.length, c.depth, c.correct, round(c.accuracy, 3)) for c in failing] == [
        (60, 0.0, 1, 0.333),
        (120, 0.5, 2, 0.667),
    ]
    message = niah.gate_message(failing, 0.95)
    assert "length 60 depth 0.00: 1/3 (33%)" in message and "length 120 depth 0.50: 2/3 (67%)" in message
    assert niah.gate(results, 0.3)[0]  # a lower bar passes the same results
    assert len(results.rows()) == 6 and results.rows()[0]["accuracy"] == pytest.approx(1 / 3)


def test_batched_evaluation_groups_one_length_within_the_token_budget_and_scores_the_same(tok):
    cases = niah.make_cases(tok.encode, FILLER, [60, 120], niah.grid_depths(3), trials=3, seed=3)
    wrong = {(120, 0.5, 1), (60, 0.0, 0)}
    one_by_one = niah.evaluate(cases, _oracle(tok, cases, wrong))
    oracle, batches = _oracle(tok, cases, wrong), []

    def generate_many(prompts):
        batches.append([len(p) for p in prompts])
        return [oracle(p) for p in prompts]

    batched = niah.evaluate_batched(cases, generate_many, batch_tokens=250)
    assert batched == one_by_one
    assert batches == [[60] * 4, [60] * 4, [60], [120] * 2, [120] * 2, [120] * 2, [120] * 2, [120]]
    assert niah.evaluate_batched(cases, generate_many, batch_tokens=1) == one_by_one  # at least one case each


def test_markdown_table_and_heatmap_png_are_written(tok, tmp_path):
    cases = niah.make_cases(tok.encode, FILLER, [60, 120], niah.grid_depths(3), trials=2, seed=3)
    results = niah.evaluate(cases, _oracle(tok, cases, wrong={(120, 1.0, 0)}))
    table = niah.markdown_table(results)
    lines = table.splitlines()
    assert lines[0] == "| depth \\ length | 60 | 120 |"
    assert lines[2] == "| 0.00 | 100% (2/2) | 100% (2/2) |"
    assert lines[4] == "| 1.00 | 100% (2/2) | 50% (1/2) |"
    assert "Overall exact match: 91.7% of 12 cases." in table
    png = niah.heatmap_png(results, tmp_path / "sub" / "niah.png", threshold=0.95)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


# -- training documents -------------------------------------------------------------------------------


def test_retrieval_training_documents(tok):
    docs = niah.retrieval_training_documents(
        5, FILLER, n_docs=6, length_tokens=257, tokenizer_encode=tok.encode, tokens_per_needle=64
    )
    assert len(docs) == 6 and all(len(d.ids) == 257 for d in docs)
    eval_keys = {c.key for c in niah.make_cases(tok.encode, FILLER, [60], niah.grid_depths(5), 3, seed=5)}
    for d in docs:
        text = tok.decode(d.ids)
        template = niah.TEMPLATES[d.language]
        assert len(d.answer_spans) >= 2
        for start, end in d.answer_spans:
            answer = tok.decode(d.ids[start:end])
            value = niah.first_value(answer)
            assert answer == template.answer(value)
            # the answered line is a question whose needle came earlier in the document
            line = text[: len(tok.decode(d.ids[:end]))].rsplit("\n", 1)[1]
            assert line.endswith(template.answer(value)) and text.count(line) == 2
            key = re.search(re.escape(template.prefix).replace(re.escape("{key}"), "(\\w+)"), line).group(1)
            assert niah.key_split(key) == "train" and key not in eval_keys
    again = niah.retrieval_training_documents(5, FILLER, 6, 257, tok.encode, tokens_per_needle=64)
    assert [d.ids for d in again] == [d.ids for d in docs]
    # a shared random.Random continues its stream
    rng = random.Random(1)
    first = niah.retrieval_training_documents(rng, FILLER, 1, 257, tok.encode)
    assert niah.retrieval_training_documents(rng, FILLER, 1, 257, tok.encode)[0].ids != first[0].ids


def test_retrieval_documents_with_a_minimum_length_spread_between_it_and_the_maximum(tok):
    docs = niah.retrieval_training_documents(
        3,
        FILLER,
        n_docs=60,
        length_tokens=400,
        tokenizer_encode=tok.encode,
        tokens_per_needle=40,
        min_length_tokens=100,
    )
    lengths = [len(d.ids) for d in docs]
    assert all(100 <= n <= 400 for n in lengths)
    assert min(lengths) < 150 and max(lengths) > 300  # log-uniform: both ends are drawn
    assert sum(n < 200 for n in lengths) > sum(n >= 300 for n in lengths)  # short ones are the more frequent
    for d in docs:  # every answer span still holds a whole answered value
        for start, end in d.answer_spans:
            answer = tok.decode(d.ids[start:end])
            assert answer == niah.TEMPLATES[d.language].answer(niah.first_value(answer))
    with pytest.raises(ValueError, match="min_length_tokens <= length_tokens"):
        niah.retrieval_training_documents(3, FILLER, 1, 100, tok.encode, min_length_tokens=101)


def test_key_spaces_are_disjoint():
    rng = random.Random(0)
    train = {niah.draw_key(rng, "train") for _ in range(300)}
    evals = {niah.draw_key(rng, "eval") for _ in range(300)}
    assert not train & evals
    assert all(niah.key_split(k) == "train" for k in train) and all(niah.key_split(k) == "eval" for k in evals)


def test_quotes_repeat_earlier_filler_sentences_verbatim(tok):
    long_filler = {
        "en": [
            " ".join(
                f"Sentence number {w} tells of the {w} river and its banks."
                for w in ("first", "second", "third", "fourth", "fifth", "sixth", "seventh")
            )
        ]
    }
    docs = niah.retrieval_training_documents(
        2, long_filler, n_docs=4, length_tokens=400, tokenizer_encode=tok.encode, tokens_per_needle=200, quote_share=0.4
    )
    for d in docs:
        assert len(d.ids) == 400 and d.copy_spans
        assert 0.2 * 400 < sum(e - s + 1 for s, e in d.copy_spans) <= 0.4 * 400
        for start, end in d.copy_spans:
            quote = d.ids[start - 1 : end]
            assert any(d.ids[i : i + len(quote)] == quote for i in range(start - 1))  # said before
    with pytest.raises(ValueError, match="quote_share"):
        niah.retrieval_training_documents(2, long_filler, 1, 400, tok.encode, quote_share=1.0)


def test_filler_longer_than_its_text_passes_over_it_in_fresh_orders(tok):
    """No verbatim passage repeats: each pass uses every sentence once, in a new order."""
    pool = niah.FillerPool(tok.encode, FILLER)
    language = next(iter(pool.sentences))
    sentences = [tuple(s) for s in pool.sentences[language]]
    total = sum(len(s) for s in sentences)
    taken = [tuple(s) for s in pool.take(language, 3 * total, random.Random(5))]
    passes = [taken[i * len(sentences) : (i + 1) * len(sentences)] for i in range(3)]
    assert all(sorted(p) == sorted(sentences) for p in passes)
    assert len({tuple(p) for p in passes}) == 3  # three different orders
    assert sum(len(s) for s in pool.take(language, 1000, random.Random(1))) == 1000  # exact length, last one cut


def test_training_documents_cover_the_grids_edges(tok):
    """Depth 0 and depth 1 of the gate both occur in training: needles that open a document, and
    questions that follow their needle with nothing in between."""
    docs = niah.retrieval_training_documents(
        7, FILLER, n_docs=40, length_tokens=400, tokenizer_encode=tok.encode, tokens_per_needle=40
    )
    opening = adjacent = pairs = 0
    for d in docs:
        text = tok.decode(d.ids)
        opening += text.startswith("\n" + niah.TEMPLATES[d.language].prefix.split("{key}")[0])
        for start, end in d.answer_spans:
            pairs += 1
            line = text[: len(tok.decode(d.ids[:end]))].rsplit("\n", 1)[1]
            before = text[: len(tok.decode(d.ids[:end]))][: -len(line) - 1]
            adjacent += before.endswith(line)  # the needle line, then straight away its question
    assert pairs > 200
    assert 0.05 < adjacent / pairs < 0.2 and opening >= 1
