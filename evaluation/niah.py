"""Needle-In-A-Haystack (NIAH): cases, exact-match scoring, the per-cell gate and its report, and the
synthetic retrieval documents the context-extension stages train on. Pure Python (no Dagster, no
torch); a tokenizer enters as ``encode(text) -> ids`` and a model as ``generate_fn(prompt_ids) -> text``.

Format (the same in evaluation and training, so a small model can learn it):

* a **needle** is one line, ``"\\n" + prefix + sep + value + suffix``, e.g.
  ``"\\nThe secret number of Zorvik is 48213."``; the key is a made-up name (Latin syllables), the value a
  ``VALUE_DIGITS``-digit number with distinct digits, the sentence in one of six languages (``TEMPLATES``:
  en, ko, es, de, ja, vi);
* the **question** is the same line cut after the prefix, ``"\\nThe secret number of Zorvik is"``, at the
  very end of the prompt, so the answer is the continuation;
* **exact match**: the first run of digits in the generated text (NFKC-normalised) equals the value.

Token ids are assembled piecewise (filler sentences, ``"\\n"``, prefix, ``sep + value + suffix`` each
encoded on its own), so the question's ids are exactly a prefix of the needle's ids and a prompt has
exactly the cell's length: filler is cycled or trimmed, the needle and the question never are.

Keys are split by a hash into an evaluation set and a training set (``key_split``): evaluation cases
draw only ``"eval"`` keys, ``retrieval_training_documents`` only ``"train"`` keys, so the gate never
scores a needle the model was trained on.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

Encode = Callable[[str], Sequence[int]]
GenerateFn = Callable[[Sequence[int]], str]


@dataclass(frozen=True)
class NeedleTemplate:
    """``prefix`` (with ``{key}``) + ``sep`` + value + ``suffix`` is the needle sentence; the question is
    ``prefix`` alone, so the answer is its continuation."""

    language: str
    prefix: str
    sep: str
    suffix: str

    def question(self, key: str) -> str:
        return self.prefix.format(key=key)

    def answer(self, value: str) -> str:
        return f"{self.sep}{value}{self.suffix}"

    def sentence(self, key: str, value: str) -> str:
        return self.question(key) + self.answer(value)


TEMPLATES: dict[str, NeedleTemplate] = {
    "en": NeedleTemplate("en", "The secret number of {key} is", " ", "."),
    "ko": NeedleTemplate("ko", "{key}의 비밀 번호는", " ", "입니다."),
    "es": NeedleTemplate("es", "El número secreto de {key} es", " ", "."),
    "de": NeedleTemplate("de", "Die geheime Zahl von {key} ist", " ", "."),
    "ja": NeedleTemplate("ja", "{key}の秘密の番号は", "", "です。"),
    "vi": NeedleTemplate("vi", "Số bí mật của {key} là", " ", "."),
}
LANGUAGES = tuple(TEMPLATES)
LINE = "\n"  # needle and question each start a line
# Tokens kept free after the longest prompt of a stage: sep + up to 6 digits + the first suffix token.
ANSWER_RESERVE_TOKENS = 8
MAX_NEW_TOKENS = ANSWER_RESERVE_TOKENS
# Sentence joiner per language when filler is laid end to end (Japanese runs sentences together).
_JOINER = {"ja": ""}


# -- grid ---------------------------------------------------------------------------------------------


def grid_lengths(min_len: int, max_len: int, n: int) -> list[int]:
    """``n`` prompt lengths spread evenly from ``min_len`` to ``max_len`` (both included, all distinct)."""
    if n < 1:
        raise ValueError(f"need at least one length (n={n})")
    if not 0 < min_len <= max_len:
        raise ValueError(f"need 0 < min_len <= max_len (got {min_len}, {max_len})")
    if n == 1:
        return [max_len]
    if max_len - min_len < n - 1:
        raise ValueError(f"{n} distinct lengths do not fit between {min_len} and {max_len}")
    return [min_len + round(i * (max_len - min_len) / (n - 1)) for i in range(n)]


def grid_depths(n: int) -> list[float]:
    """``n`` needle depths from 0 (start of the haystack) to 1 (just before the question)."""
    if n < 1:
        raise ValueError(f"need at least one depth (n={n})")
    return [0.5] if n == 1 else [i / (n - 1) for i in range(n)]


def stage_lengths(seq_length: int, n: int, min_len: int, reserve: int = ANSWER_RESERVE_TOKENS) -> list[int]:
    """A context stage's grid: from ``min_len`` (e.g. the previous stage's length) up to the stage's
    ``seq_length`` minus room for the answer, so prompt + generated tokens fit the trained length."""
    return grid_lengths(min_len, seq_length - reserve, n)


# -- keys, values, filler ---------------------------------------------------------------------------

_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "ch",
    "sh",
    "th",
    "br",
    "kr",
    "tr",
    "dr",
    "gl",
    "pl",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "n", "r", "l", "k", "s", "x")
EVAL_KEY_SHARE = 4  # one key in 4 (by hash) is reserved for evaluation
DISTINCT_DIGITS = True
VALUE_DIGITS = 5
EDGE_SHARE = 0.1
# Training documents: one needle (and its answered question) per this many tokens. Dense answers are what
# teach a small model the lookup (issue 7's experiments, in the git history of bench/tune_niah.py: 40 learns
# it; 128 leaves it at 60 % after 2000 steps)
TOKENS_PER_NEEDLE = 40


def key_split(key: str) -> str:
    """``"eval"`` or ``"train"``: a fixed hash partition of the key space, so the two never share a key."""
    return "eval" if hashlib.sha256(key.encode()).digest()[0] % EVAL_KEY_SHARE == 0 else "train"


def draw_key(rng: random.Random, split: str, exclude: set[str] | frozenset[str] = frozenset()) -> str:
    """A made-up name of 2-3 syllables (``Zorvik``, ``Plaidex``) from the ``split`` half of the key space."""
    while True:
        syllables = [
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.choice((2, 2, 3)))
        ]
        key = "".join(syllables).capitalize()
        if key_split(key) == split and key not in exclude:
            return key


def draw_value(rng: random.Random) -> str:
    """A ``VALUE_DIGITS``-digit number without a leading zero and with no digit repeated.

    Fixed length, as RULER's needles (7 digits): with 4-6 digit values the tiny model's misses were
    almost all length slips (``92046`` for ``920461``, ``19427`` for ``1942``), a test of digit counting
    rather than retrieval. Distinct digits: its copy mechanism keys each next digit on the digits just
    produced, so values like 977597 are where it slips (issue 7's experiments). 27,216 values remain.
    """
    first = rng.randrange(1, 10)
    if not DISTINCT_DIGITS:
        return str(first) + "".join(str(rng.randrange(10)) for _ in range(VALUE_DIGITS - 1))
    rest = rng.sample([d for d in range(10) if d != first], VALUE_DIGITS - 1)
    return "".join(str(d) for d in [first, *rest])


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


class FillerPool:
    """Per language: the filler sentences, each encoded once (with its joiner in front). Build it once and
    pass it wherever filler texts are asked for, to skip re-encoding."""

    def __init__(self, encode: Encode, filler_texts_by_language: Mapping[str, Sequence[str]]):
        self.sentences: dict[str, list[list[int]]] = {}
        for language, texts in filler_texts_by_language.items():
            joiner = _JOINER.get(language, " ")
            ids = [list(encode(joiner + s)) for text in texts for s in split_sentences(text)]
            ids = [s for s in ids if s]
            if ids:
                self.sentences[language] = ids

    def languages(self, wanted: Sequence[str] | None) -> list[str]:
        have = [lang for lang in (wanted or LANGUAGES) if lang in self.sentences and lang in TEMPLATES]
        if not have:
            raise ValueError(
                f"no filler text for any of {list(wanted or LANGUAGES)} (filler given for {sorted(self.sentences)})"
            )
        return have

    def take(self, language: str, n_tokens: int, rng: random.Random) -> list[list[int]]:
        """Whole sentences of the language, each pass over its text in a fresh random order; the last one
        is cut so the total is exactly ``n_tokens``.

        A fresh order per pass matters when the text is shorter than the haystack (the tiny corpus holds
        a few hundred to two thousand held-out tokens per language, a 4096-token prompt needs up to ten
        passes): laid in the same order every pass, the haystack repeats whole passages verbatim, and the
        words just before the question then also stand, word for word, before earlier copies of the same
        passage, which is a trap for a model's copy (induction) heads rather than a test of retrieval."""
        pool = self.sentences[language]
        out, total, order = [], 0, []
        while total < n_tokens:
            if not order:
                order = rng.sample(range(len(pool)), len(pool))
            sentence = pool[order.pop()][: n_tokens - total]
            out.append(sentence)
            total += len(sentence)
        return out


def _insert(sentences: list[list[int]], items: Sequence[tuple[float, list[int]]]) -> tuple[list[int], list[int]]:
    """Lay ``sentences`` end to end and put each item (fraction of the filler, ids) at the sentence
    boundary nearest to its fraction; returns (ids, start index of each item in the order given)."""
    bounds = [0]
    for s in sentences:
        bounds.append(bounds[-1] + len(s))
    total = bounds[-1]
    slots = []  # (boundary index, order) per item
    for order, (fraction, _) in enumerate(items):
        target = min(max(fraction, 0.0), 1.0) * total
        slots.append((min(range(len(bounds)), key=lambda b: (abs(bounds[b] - target), b)), order))
    by_boundary: dict[int, list[int]] = {}
    for boundary, order in sorted(slots):
        by_boundary.setdefault(boundary, []).append(order)
    ids: list[int] = []
    starts = [0] * len(items)
    for b in range(len(sentences) + 1):
        for order in by_boundary.get(b, []):
            starts[order] = len(ids)
            ids.extend(items[order][1])
        if b < len(sentences):
            ids.extend(sentences[b])
    return ids, starts


def _pool(encode: Encode, filler: "Mapping[str, Sequence[str]] | FillerPool") -> FillerPool:
    return filler if isinstance(filler, FillerPool) else FillerPool(encode, filler)


def _needle_ids(encode: Encode, template: NeedleTemplate, key: str, value: str) -> tuple[list[int], list[int]]:
    """(needle ids, question ids); the question's ids are a prefix of the needle's."""
    question = list(encode(LINE)) + list(encode(template.question(key)))
    return question + list(encode(template.answer(value))), question


# -- cases, scoring, results ------------------------------------------------------------------------


@dataclass(frozen=True)
class NiahCase:
    length: int  # prompt tokens, exactly
    depth: float  # where the needle sits in the filler: 0 = first, 1 = last before the question
    trial: int
    language: str
    key: str
    value: str
    prompt_ids: tuple[int, ...]
    needle_ids: tuple[int, ...]
    needle_index: int  # token index of the needle in prompt_ids


def make_cases(
    tokenizer_encode: Encode,
    filler_texts_by_language: Mapping[str, Sequence[str]] | FillerPool,
    lengths: Sequence[int],
    depths: Sequence[float],
    trials: int,
    seed: int,
    languages: Sequence[str] | None = None,
) -> list[NiahCase]:
    """One case per (length, depth, trial); languages rotate over the cases, keys are distinct ``eval``
    keys. Raises ValueError when a length cannot hold the needle and the question."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1 (got {trials})")
    filler = _pool(tokenizer_encode, filler_texts_by_language)
    langs = filler.languages(languages)
    rng = random.Random(f"niah-eval:{seed}")
    used: set[str] = set()
    cases = []
    for index, (length, depth, trial) in enumerate(
        (length, depth, trial) for length in lengths for depth in depths for trial in range(trials)
    ):
        language = langs[index % len(langs)]
        key = draw_key(rng, "eval", used)
        used.add(key)
        value = draw_value(rng)
        needle, question = _needle_ids(tokenizer_encode, TEMPLATES[language], key, value)
        n_filler = length - len(needle) - len(question)
        if n_filler < 0:
            raise ValueError(
                f"length {length} is too short for a needle ({len(needle)} tokens) and its question "
                f"({len(question)} tokens)"
            )
        body, (start,) = _insert(filler.take(language, n_filler, rng), [(depth, needle)])
        prompt = body + question
        assert len(prompt) == length
        cases.append(
            NiahCase(
                length=length,
                depth=depth,
                trial=trial,
                language=language,
                key=key,
                value=value,
                prompt_ids=tuple(prompt),
                needle_ids=tuple(needle),
                needle_index=start,
            )
        )
    return cases


def stage_cases(
    tokenizer_encode: Encode,
    filler_texts_by_language: Mapping[str, Sequence[str]] | FillerPool,
    *,
    seq_length: int,
    previous_length: int,
    num_lengths: int,
    num_depths: int,
    trials: int,
    seed: int,
    languages: Sequence[str] | None = None,
) -> list[NiahCase]:
    """A context stage's gate grid: ``num_lengths`` lengths from the previous stage's length to this
    stage's (``stage_lengths``) x ``num_depths`` depths x ``trials`` cases, drawn with ``seed``."""
    lengths = stage_lengths(seq_length, num_lengths, previous_length)
    return make_cases(
        tokenizer_encode, filler_texts_by_language, lengths, grid_depths(num_depths), trials, seed, languages
    )


_DIGITS = re.compile(r"[0-9]+")


def first_value(text: str) -> str | None:
    """The first run of digits in ``text`` (full-width digits count), or None."""
    m = _DIGITS.search(unicodedata.normalize("NFKC", text))
    return m.group() if m else None


def score_exact(generated_text: str, expected: str) -> bool:
    """Exact match: the generation's first number is the value, no digit more or less."""
    return first_value(generated_text) == expected


@dataclass(frozen=True)
class CaseResult:
    length: int
    depth: float
    trial: int
    language: str
    key: str
    value: str
    generated: str
    correct: bool


@dataclass(frozen=True)
class CellResult:
    length: int
    depth: float
    trials: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.trials

    def describe(self) -> str:
        return f"length {self.length} depth {self.depth:.2f}: {self.correct}/{self.trials} ({self.accuracy:.0%})"


@dataclass(frozen=True)
class NiahResults:
    cells: tuple[CellResult, ...]  # sorted by (length, depth)
    cases: tuple[CaseResult, ...]

    @property
    def lengths(self) -> list[int]:
        return sorted({c.length for c in self.cells})

    @property
    def depths(self) -> list[float]:
        return sorted({c.depth for c in self.cells})

    @property
    def accuracy(self) -> float:
        return sum(c.correct for c in self.cells) / max(1, sum(c.trials for c in self.cells))

    def cell(self, length: int, depth: float) -> CellResult:
        return next(c for c in self.cells if c.length == length and c.depth == depth)

    def rows(self) -> list[dict]:
        """One row per cell (warehouse / metadata)."""
        return [
            {"length": c.length, "depth": c.depth, "trials": c.trials, "correct": c.correct, "accuracy": c.accuracy}
            for c in self.cells
        ]


def results_from_cases(case_results: Iterable[CaseResult]) -> NiahResults:
    case_results = tuple(case_results)
    grouped: dict[tuple[int, float], list[CaseResult]] = {}
    for r in case_results:
        grouped.setdefault((r.length, r.depth), []).append(r)
    cells = tuple(
        CellResult(length=length, depth=depth, trials=len(rs), correct=sum(r.correct for r in rs))
        for (length, depth), rs in sorted(grouped.items())
    )
    return NiahResults(cells=cells, cases=case_results)


def evaluate(
    cases: Sequence[NiahCase], generate_fn: GenerateFn, progress: Callable[[int, int, CaseResult], None] | None = None
) -> NiahResults:
    """Run every case through ``generate_fn(prompt_ids) -> generated text`` and score it."""
    out = []
    for i, case in enumerate(cases):
        text = generate_fn(list(case.prompt_ids))
        result = CaseResult(
            length=case.length,
            depth=case.depth,
            trial=case.trial,
            language=case.language,
            key=case.key,
            value=case.value,
            generated=text,
            correct=score_exact(text, case.value),
        )
        out.append(result)
        if progress is not None:
            progress(i + 1, len(cases), result)
    return results_from_cases(out)


def evaluate_batched(
    cases: Sequence[NiahCase],
    generate_many: Callable[[list[list[int]]], list[str]],
    batch_tokens: int,
    progress: Callable[[int, int, CaseResult], None] | None = None,
) -> NiahResults:
    """``evaluate`` with ``generate_many(prompts) -> texts`` answering several cases at once: consecutive
    cases of one length (a grid is laid out length by length), at most ``batch_tokens`` prompt tokens per
    batch and always at least one case. The results are the same as one case at a time."""
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1 (got {batch_tokens})")
    out: list[CaseResult] = []
    start = 0
    while start < len(cases):
        size = max(1, batch_tokens // cases[start].length)
        end = start + 1
        while end < len(cases) and end - start < size and cases[end].length == cases[start].length:
            end += 1
        texts = generate_many([list(c.prompt_ids) for c in cases[start:end]])
        for case, text in zip(cases[start:end], texts, strict=True):
            out.append(
                CaseResult(
                    length=case.length,
                    depth=case.depth,
                    trial=case.trial,
                    language=case.language,
                    key=case.key,
                    value=case.value,
                    generated=text,
                    correct=score_exact(text, case.value),
                )
            )
            if progress is not None:
                progress(len(out), len(cases), out[-1])
        start = end
    return results_from_cases(out)


def gate(results: NiahResults, threshold: float) -> tuple[bool, list[CellResult]]:
    """(passed, failing cells): every cell's exact-match accuracy must be >= ``threshold``."""
    if not results.cells:
        raise ValueError("no NIAH cells to gate on")
    failing = [c for c in results.cells if c.accuracy < threshold]
    return not failing, failing


def gate_message(failing: Sequence[CellResult], threshold: float) -> str:
    if not failing:
        return f"every NIAH cell reaches {threshold:.0%}"
    return f"{len(failing)} NIAH cell(s) below {threshold:.0%}: " + "; ".join(c.describe() for c in failing)


# -- report -----------------------------------------------------------------------------------------


def markdown_table(results: NiahResults) -> str:
    """Depths down, lengths across; each cell ``accuracy (correct/trials)``."""
    lengths, depths = results.lengths, results.depths
    lines = ["| depth \\ length | " + " | ".join(str(n) for n in lengths) + " |", "|---|" + "---|" * len(lengths)]
    for depth in depths:
        cells = []
        for length in lengths:
            c = results.cell(length, depth)
            cells.append(f"{c.accuracy:.0%} ({c.correct}/{c.trials})")
        lines.append(f"| {depth:.2f} | " + " | ".join(cells) + " |")
    total = sum(c.trials for c in results.cells)
    lines.append("")
    lines.append(f"Overall exact match: {results.accuracy:.1%} of {total} cases.")
    return "\n".join(lines) + "\n"


def heatmap_png(
    results: NiahResults,
    path: str | Path,
    title: str = "NIAH exact match",
    threshold: float | None = None,
    dpi: int = 80,
) -> Path:
    """Accuracy heatmap (depth x length), each cell annotated; written to ``path`` (small, dpi 80 by default:
    the assets also show it inline in the UI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths, depths = results.lengths, results.depths
    grid = [[results.cell(length, depth).accuracy for length in lengths] for depth in depths]
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2.5, 0.7 * len(depths) + 1.8))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.2f}" for d in depths])
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("needle depth")
    for i, row in enumerate(grid):
        for j, acc in enumerate(row):
            failing = threshold is not None and acc < threshold
            ax.text(j, i, f"{acc:.0%}" + (" x" if failing else ""), ha="center", va="center", fontsize=8)
    ax.set_title(title if threshold is None else f"{title} (gate {threshold:.0%})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})  # no timestamp/version: reproducible bytes
    plt.close(fig)
    return path


# -- training documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalDocument:
    ids: list[int]  # exactly length_tokens (or the drawn length, see min_length_tokens)
    language: str
    answer_spans: tuple[tuple[int, int], ...]  # [start, end) of each answered value (in the repeated needle)
    copy_spans: tuple[tuple[int, int], ...] = ()  # [start, end) of each quote, less its first token


def retrieval_training_documents(
    seed: int | random.Random,
    filler_texts_by_language: Mapping[str, Sequence[str]] | FillerPool,
    n_docs: int,
    length_tokens: int,
    tokenizer_encode: Encode,
    *,
    tokens_per_needle: int = TOKENS_PER_NEEDLE,
    quote_share: float = 0.0,
    languages: Sequence[str] | None = None,
    min_length_tokens: int | None = None,
) -> list[RetrievalDocument]:
    """Synthetic retrieval documents for the context-extension mix: filler of one language with about
    ``length_tokens / tokens_per_needle`` needles (distinct ``train`` keys) at random places, and for each
    needle its question later in the document, answered (the question line continues with the value,
    i.e. the needle line again). Same templates and ids layout as ``make_cases``; never an eval key.

    ``quote_share``: that share of the filler tokens are *quotes*, filler sentences of the document
    repeated verbatim later on (``copy_spans``): dense, generic copy-from-context signal.

    ``min_length_tokens``: each document's length is drawn log-uniformly from [min_length_tokens,
    length_tokens] instead of all being ``length_tokens`` long. Short documents teach the lookup itself
    over short distances (a tiny model does not discover it at 512 tokens; issue 7's experiments); the
    packer then lays them whole, several to a sample, next to long ones.
    """
    lo = length_tokens if min_length_tokens is None else min_length_tokens
    if not 0 < lo <= length_tokens:
        raise ValueError(f"need 0 < min_length_tokens <= length_tokens (got {lo}, {length_tokens})")
    if not 0.0 <= quote_share < 1.0:
        raise ValueError(f"quote_share must be within [0, 1) (got {quote_share})")
    rng = seed if isinstance(seed, random.Random) else random.Random(f"niah-train:{seed}")
    filler = _pool(tokenizer_encode, filler_texts_by_language)
    langs = filler.languages(languages)
    docs = []
    for _ in range(n_docs):
        doc_length = length_tokens if lo == length_tokens else round(lo * (length_tokens / lo) ** rng.random())
        language = rng.choice(langs)
        template = TEMPLATES[language]
        used: set[str] = set()
        items: list[tuple[float, int, list[int], int]] = []  # (fraction, kind, ids, first scored token)
        budget = doc_length
        for _ in range(max(1, doc_length // tokens_per_needle)):
            key = draw_key(rng, "train", used)
            value = draw_value(rng)
            needle, question = _needle_ids(tokenizer_encode, template, key, value)
            if 2 * len(needle) > budget:
                break
            used.add(key)
            budget -= 2 * len(needle)
            # the grid's edges, each for one needle in EDGE_SHARE: a needle opens the document (depth 0 has no
            # context before it), a question comes right after its needle (depth 1: nothing in between)
            u = 0.0 if rng.random() < EDGE_SHARE else rng.random()
            v = u if rng.random() < EDGE_SHARE else u + (1 - u) * rng.random()
            items += [(u, 0, needle, -1), (v, 1, needle, len(question))]
        quote_target = int(budget * quote_share)
        sentences = filler.take(language, budget - quote_target, rng)
        ends = [sum(len(x) for x in sentences[: i + 1]) for i in range(len(sentences))]
        order = list(range(len(sentences)))
        rng.shuffle(order)
        quoted, q = [], 0
        for idx in order:
            if len(sentences[idx]) >= 4 and q + len(sentences[idx]) <= quote_target:
                quoted.append(idx)
                q += len(sentences[idx])
        if quote_target - q:  # top up with fresh filler so the length stays exact
            sentences = sentences + filler.take(language, quote_target - q, rng)
        total = budget - q
        for idx in quoted:
            after = ends[idx] / total
            items.append((after + (1 - after) * rng.random(), 2, list(sentences[idx]), 1))
        items.sort(key=lambda it: (it[0], it[1]))
        ids, starts = _insert(sentences, [(f, i) for f, _, i, _ in items])
        spans = {1: [], 2: []}
        for start, (_, kind, item_ids, first) in zip(starts, items):
            if kind:
                spans[kind].append((start + first, start + len(item_ids)))
        assert len(ids) == doc_length
        docs.append(
            RetrievalDocument(ids=ids, language=language, answer_spans=tuple(spans[1]), copy_spans=tuple(spans[2]))
        )
    return docs


__all__ = [
    "ANSWER_RESERVE_TOKENS",
    "CaseResult",
    "CellResult",
    "FillerPool",
    "LANGUAGES",
    "MAX_NEW_TOKENS",
    "NeedleTemplate",
    "NiahCase",
    "NiahResults",
    "RetrievalDocument",
    "TEMPLATES",
    "draw_key",
    "draw_value",
    "evaluate",
    "evaluate_batched",
    "first_value",
    "gate",
    "gate_message",
    "grid_depths",
    "grid_lengths",
    "heatmap_png",
    "key_split",
    "make_cases",
    "markdown_table",
    "results_from_cases",
    "retrieval_training_documents",
    "score_exact",
    "split_sentences",
    "stage_cases",
    "stage_lengths",
]
