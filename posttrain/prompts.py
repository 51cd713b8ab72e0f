"""RL prompts with verifiers (report §3.4), deterministic from a seed, with a held-out split.

A record (one JSON line of ``rl_prompts``)::

    {"id": "arithmetic-3f2a9c0b1d4e", "family": "arithmetic", "domain": "math" | "code" | "instruction" | "tool",
     "split": "train" | "held_out", "messages": [{"role": "system"?, ...}, {"role": "user", "content": ...}],
     "verifier": {a posttrain.verifiers spec}, "reference": "Answer: 85", "reference_reasoning": "..."}

``reference`` / ``reference_reasoning`` are a correct answer and a short trajectory: ``reference_answer``
turns them into the assistant message SFT trains on (the same families, train split only).

Families (``FAMILIES``; ``build_prompts`` takes a count per family):

* ``arithmetic``: the tiny preset's family, short enough for a 4-layer, 64-wide MoE trained on CPU for a
  few hundred steps: ``What is 37 + 48?`` answered ``Answer: 85`` (exact). ``ArithmeticParams`` holds the
  operand range and the operations (``+``, ``-`` (never negative), ``*``, ``next`` (the number after a),
  ``max`` (the larger of two)), so the difficulty can be tuned until SFT lands between 10 % and 70 % pass@1
  (tiny: ``+``, ``next``, ``max`` on two-digit operands; measured in ``docs/post-training.md`` and
  ``bench/posttrain_learning.py``).
* ``math_word``: short word problems with exact decimal answers, built on ``synthetic.stem`` (its exact
  unit factors and number format): unit conversion, a sum of two quantities, a linear equation, a
  two-step count. The request ends with the answer-line instruction (``MATH_SUFFIX``: **choice**, the
  report's Appendix C template could not be retrieved; the verifier reads ``Answer:``).
* ``multiple_choice``: four options (``A``-``D``), one right, over ``synthetic.stem``'s exact unit
  conversions; the distractors are the usual slips (the factor applied the wrong way, a power of ten off).
  The request lists the options one per line and ends with ``MC_SUFFIX`` (**choice**, as ``MATH_SUFFIX``);
  verifier ``{"kind": "choice", "answer": "B", "options": ["A", "B", "C", "D"]}``.
* ``code``: small function-writing tasks (a parameter varies per prompt) with 3-5 asserts run in the
  sandbox; expected values are computed by executing the reference solution here (trusted code).
* ``instruction``: a topic with 1-4 rule-checked instructions (language, format: bullets / JSON keys /
  plain, length, lowercase, an ending phrase, a keyword); the reference answer is built from small
  per-language sentence banks so that it passes every rule (a test checks it).
* ``tool``: the kept ``tool_use_tasks`` (JSON as ``posttrain.tool_tasks.task_to_json``; without them the
  offline ``programmatic_tasks``): system (tool schemas) + user messages, spec ``{"kind": "tool", "task":
  ...}``. **Limit:** the rollout is one turn: the policy's tool calls are not executed, so the task is
  answered from the model's own computation.

Ids and splits: a prompt's id is its family plus a hash of its user text (**choice**: content-addressed,
so the same question has the same id whatever the seed or the count). The held-out split is a stable hash
of the id below ``held_out_fraction`` (never the position): the same id lands in the same split for every
seed and count, and raising the fraction only moves prompts from train to held-out. Prompt ``i`` of a
family is a pure function of ``(seed, family, i)``, so a family grows by appending. Duplicates (the same
user text, also across families) are removed; when copies fall in both splits the held-out one wins, so a
held-out question never reaches training. A family returns fewer prompts than asked only when its space
of distinct prompts is exhausted (visible in ``split_counts``).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from synthetic.stem import CONVERSIONS, fmt

FAMILIES = ("arithmetic", "math_word", "multiple_choice", "code", "instruction", "tool")
DOMAINS = {
    "arithmetic": "math",
    "math_word": "math",
    "multiple_choice": "multiple_choice",
    "code": "code",
    "instruction": "instruction",
    "tool": "tool",
}
MATH_SUFFIX = "Put the final answer on the last line as 'Answer: <number>'."
# choice (the report's Appendix C templates could not be retrieved): options one per line, then this line
MC_SUFFIX = "Answer with the letter of the correct option on the last line as 'Answer: <letter>'."
MC_LETTERS = ("A", "B", "C", "D")
EXACT_REL_TOL = 1e-6  # math answers are exact decimals; this only forgives float printing (0.30000000000000004)


def unit_interval(key: str) -> float:
    """A stable number in [0, 1) from a string."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def prompt_id(family: str, user_text: str) -> str:
    return f"{family}-{hashlib.sha256(user_text.encode('utf-8')).hexdigest()[:12]}"


def split_of(pid: str, held_out_fraction: float) -> str:
    """``held_out`` when the id's stable hash is below the fraction (independent of seed and position)."""
    return "held_out" if unit_interval(f"split/{pid}") < held_out_fraction else "train"


def _rng(seed: int, family: str, i: int) -> random.Random:
    return random.Random(f"{seed}/{family}/{i}")


@dataclass(frozen=True)
class Draft:
    """A prompt before its id and split: what a family generator returns."""

    user: str
    verifier: dict
    reference: str
    reasoning: str
    system: str = ""


# -- arithmetic --------------------------------------------------------------------------------------

OPERATIONS = ("+", "-", "*", "next", "max")


@dataclass(frozen=True)
class ArithmeticParams:
    """The tiny model's family: operands drawn uniformly from [low, high], operation among ``operations``
    (``next``: the number after a; ``max``: the larger of a and b)."""

    low: int = 10
    high: int = 99
    operations: tuple[str, ...] = ("+",)

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"arithmetic needs 0 <= low <= high (got {self.low}, {self.high})")
        if not self.operations or any(op not in OPERATIONS for op in self.operations):
            raise ValueError(f"arithmetic operations must be among {OPERATIONS} (got {self.operations})")


ARITHMETIC = ArithmeticParams()


def _column_trajectory(a: int, b: int) -> str:
    """The digit-by-digit addition of two non-negative numbers, as a short trajectory."""
    steps, carry, place = [], 0, 0
    x, y = a, b
    while x or y or carry:
        da, db = x % 10, y % 10
        total = da + db + carry
        steps.append(f"{da} + {db}" + (f" + {carry}" if carry else "") + f" = {total}")
        carry, x, y, place = total // 10, x // 10, y // 10, place + 1
    return "Add digit by digit from the right: " + "; ".join(steps) + f". So {a} + {b} = {a + b}."


def arithmetic_draft(rng: random.Random, params: ArithmeticParams = ARITHMETIC) -> Draft:
    op = rng.choice(params.operations)
    a, b = rng.randint(params.low, params.high), rng.randint(params.low, params.high)
    if op in ("next", "max"):
        value = a + 1 if op == "next" else max(a, b)
        user = f"What number comes after {a}?" if op == "next" else f"Which is larger, {a} or {b}?"
        why = (
            f"Counting on from {a} gives {a + 1}."
            if op == "next"
            else f"Compare: the larger of {a} and {b} is {value}."
        )
        return Draft(
            user=user,
            verifier={"kind": "exact_number", "answer": value, "rel_tol": 0},
            reference=f"Answer: {value}",
            reasoning=why,
        )
    if op == "-":
        a, b = max(a, b), min(a, b)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    if op == "+":
        reasoning = _column_trajectory(a, b)
    elif op == "-":
        reasoning = f"{a} - {b}: check by adding back, {b} + {value} = {a}. So {a} - {b} = {value}."
    else:
        tens, ones = b // 10 * 10, b % 10
        reasoning = f"{a} * {b} = {a} * {tens} + {a} * {ones} = {a * tens} + {a * ones} = {value}."
    return Draft(
        user=f"What is {a} {op} {b}?",
        verifier={"kind": "exact_number", "answer": value, "rel_tol": 0},
        reference=f"Answer: {value}",
        reasoning=reasoning,
    )


# -- math word problems --------------------------------------------------------------------------------

_CONVERT_TEMPLATES = {
    "km": "A hiking trail is {v} km long. How long is it in m?",
    "m": "A rope is {v} m long. How long is it in cm?",
    "cm": "A pencil is {v} cm long. How long is it in mm?",
    "kg": "A parcel has a mass of {v} kg. What is its mass in g?",
    "g": "A vitamin tablet contains {v} g of powder. How much is that in mg?",
    "s": "A sprint takes {v} s. How long is that in ms?",
    "h": "A train journey takes {v} h. How many min is that?",
    "min": "A lesson lasts {v} min. How many s is that?",
    "L": "A bottle holds {v} L of water. How much is that in mL?",
    "m/s": "A cyclist rides at {v} m/s. What is that speed in km/h?",
    "N": "A rope holds a force of {v} N. What is that in kN?",
    "J": "A snack provides {v} J of energy. What is that in kJ?",
    "W": "A heater uses {v} W. What is that in kW?",
    "kJ": "A battery stores {v} kJ. What is that in J?",
    "kW": "An engine delivers {v} kW. What is that in W?",
}
_ADD_TEMPLATES = {
    "m": "One rope is {a} m long and another is {b} m long. What is their total length in m?",
    "kg": "One bag weighs {a} kg and another weighs {b} kg. What is their total mass in kg?",
    "L": "One tank holds {a} L and another holds {b} L. How many L do they hold together?",
    "km": "A cyclist rides {a} km in the morning and {b} km in the afternoon. How many km is that in total?",
    "min": "One film lasts {a} min and another lasts {b} min. How many min is that together?",
}
_THINGS = ("apples", "books", "coins", "chairs", "stamps", "pencils", "marbles", "cards")
_NAMES = ("Mina", "Jun", "Sara", "Tomas", "Linh", "Yuki", "Hana", "Pablo")


def math_word_draft(rng: random.Random) -> Draft:
    kind = rng.choice(("convert", "add", "linear", "steps"))
    if kind == "convert":
        unit = rng.choice(sorted(_CONVERT_TEMPLATES))
        target, factor = CONVERSIONS[unit]
        v = Decimal(rng.randint(2, 400)) + (Decimal("0.5") if rng.random() < 0.3 else 0)
        answer, text = v * factor, _CONVERT_TEMPLATES[unit].format(v=fmt(v))
        reasoning = f"1 {unit} = {fmt(factor)} {target}, so {fmt(v)} {unit} = {fmt(v)} * {fmt(factor)} = {fmt(answer)}."
        unit_text = target
    elif kind == "add":
        unit = rng.choice(sorted(_ADD_TEMPLATES))
        a, b = Decimal(rng.randint(2, 300)), Decimal(rng.randint(2, 300))
        answer = a + b
        text = _ADD_TEMPLATES[unit].format(a=fmt(a), b=fmt(b))
        reasoning, unit_text = f"{fmt(a)} + {fmt(b)} = {fmt(answer)}.", unit
    elif kind == "linear":
        fee, per, x = rng.randint(2, 20), rng.randint(2, 9), rng.randint(2, 40)
        total = fee + per * x
        answer = Decimal(x)
        text = (
            f"A taxi ride costs a fixed {fee} dollars plus {per} dollars per km. "
            f"A ride cost {total} dollars. How many km was it?"
        )
        reasoning = f"{total} - {fee} = {total - fee}, and {total - fee} / {per} = {x}."
        unit_text = "km"
    else:
        name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
        a, boxes, each = rng.randint(5, 60), rng.randint(2, 9), rng.randint(2, 12)
        used = rng.randint(1, a)
        answer = Decimal(a + boxes * each - used)
        text = (
            f"{name} has {a} {thing}, buys {boxes} boxes with {each} {thing} each, then gives away {used}. "
            f"How many {thing} does {name} have now?"
        )
        got = boxes * each
        reasoning = f"{boxes} * {each} = {got}; {a} + {got} = {a + got}; minus {used} gives {fmt(answer)}."
        unit_text = ""
    unit_suffix = f" {unit_text}" if unit_text else ""
    return Draft(
        user=f"{text}\n{MATH_SUFFIX}",
        verifier={"kind": "exact_number", "answer": fmt(answer), "rel_tol": EXACT_REL_TOL},
        reference=f"Answer: {fmt(answer)}{unit_suffix}",
        reasoning=reasoning,
    )


def multiple_choice_draft(rng: random.Random) -> Draft:
    """A unit conversion with four options: the right value and three slips (x10, /10, the inverse factor)."""
    unit = rng.choice(sorted(u for u, (_, f) in CONVERSIONS.items() if f == f.to_integral_value() and f > 1))
    target, factor = CONVERSIONS[unit]
    v = Decimal(rng.randint(2, 90))
    right = v * factor
    slips = [right * 10, right / 10, v / factor]
    values = [right, *(s for s in slips if s != right)][:4]
    order = list(range(len(values)))
    rng.shuffle(order)
    letters = MC_LETTERS[: len(values)]
    options = {letters[pos]: values[i] for pos, i in enumerate(order)}
    answer = next(letter for letter, value in options.items() if value == right)
    listed = "\n".join(f"{letter}) {fmt(value)} {target}" for letter, value in options.items())
    return Draft(
        user=f"How much is {fmt(v)} {unit} in {target}?\n{listed}\n{MC_SUFFIX}",
        verifier={"kind": "choice", "answer": answer, "options": list(letters)},
        reference=f"Answer: {answer}",
        reasoning=f"1 {unit} = {fmt(factor)} {target}, so {fmt(v)} {unit} = {fmt(right)} {target}: option {answer}.",
    )


# -- code ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeTemplate:
    function: str
    text: str  # the request, formatted with the parameters
    solution: str  # the reference solution, formatted with the parameters
    params: Callable[[random.Random], dict]
    inputs: Callable[[dict], list[tuple]]  # argument tuples of the tests (3-5)


def _fizz_params(rng: random.Random) -> dict:
    a, b = rng.sample(range(2, 8), 2)
    return {"a": a, "b": b}


CODE_TEMPLATES = (
    CodeTemplate(
        "add",
        "Write a Python function add(a, b) that returns the sum of a and b.",
        "def add(a, b):\n    return a + b",
        lambda rng: {},
        lambda p: [(1, 2), (-4, 4), (10, 5), (0, 0)],
    ),
    CodeTemplate(
        "offset",
        "Write a Python function offset(x) that returns x plus {k}.",
        "def offset(x):\n    return x + {k}",
        lambda rng: {"k": rng.randint(1, 999)},
        lambda p: [(0,), (5,), (-p["k"],)],
    ),
    CodeTemplate(
        "scale",
        "Write a Python function scale(xs) that returns a new list with every element of xs multiplied by {k}.",
        "def scale(xs):\n    return [x * {k} for x in xs]",
        lambda rng: {"k": rng.randint(2, 60)},
        lambda p: [([1, 2, 3],), ([],), ([-4, 0, 7],)],
    ),
    CodeTemplate(
        "count_char",
        "Write a Python function count_char(s) that returns how many times the character '{c}' occurs in the string s.",
        "def count_char(s):\n    return s.count({c!r})",
        lambda rng: {"c": rng.choice("aeioustrnl")},
        lambda p: [("banana split",), ("",), ("rattle and roll " + p["c"] * 3,)],
    ),
    CodeTemplate(
        "clamp",
        "Write a Python function clamp(x) that returns x limited to the range [{lo}, {hi}].",
        "def clamp(x):\n    return max({lo}, min({hi}, x))",
        lambda rng: {"lo": rng.randint(-20, 0), "hi": rng.randint(1, 50)},
        lambda p: [(p["lo"] - 5,), (p["hi"] + 3,), ((p["lo"] + p["hi"]) // 2,), (p["hi"],)],
    ),
    CodeTemplate(
        "fizz",
        "Write a Python function fizz(n) that returns 'FizzBuzz' if n is divisible by both {a} and {b}, 'Fizz' if "
        "only by {a}, 'Buzz' if only by {b}, and otherwise str(n).",
        "def fizz(n):\n    if n % {a} == 0 and n % {b} == 0:\n        return 'FizzBuzz'\n    if n % {a} == 0:\n"
        "        return 'Fizz'\n    if n % {b} == 0:\n        return 'Buzz'\n    return str(n)",
        _fizz_params,
        lambda p: [(p["a"] * p["b"],), (p["a"],), (p["b"],), (1,), (p["a"] * p["b"] + 1,)],
    ),
    CodeTemplate(
        "sum_multiples",
        "Write a Python function sum_multiples(n) that returns the sum of the positive integers below n that are "
        "multiples of {k}.",
        "def sum_multiples(n):\n    return sum(i for i in range(1, n) if i % {k} == 0)",
        lambda rng: {"k": rng.randint(2, 9)},
        lambda p: [(10,), (1,), (3 * p["k"] + 1,), (50,)],
    ),
    CodeTemplate(
        "rotate",
        "Write a Python function rotate(xs) that returns the list xs rotated left by {k} positions, wrapping "
        "around (an empty list stays empty).",
        "def rotate(xs):\n    if not xs:\n        return []\n    k = {k} % len(xs)\n    return xs[k:] + xs[:k]",
        lambda rng: {"k": rng.randint(1, 5)},
        lambda p: [([1, 2, 3, 4, 5, 6],), ([],), ([9],), ([1, 2],)],
    ),
    CodeTemplate(
        "power_sum",
        "Write a Python function power_sum(xs) that returns the sum of x ** {k} over the numbers x in the list xs.",
        "def power_sum(xs):\n    return sum(x ** {k} for x in xs)",
        lambda rng: {"k": rng.randint(2, 4)},
        lambda p: [([1, 2, 3],), ([],), ([-2],)],
    ),
    CodeTemplate(
        "every_nth",
        "Write a Python function every_nth(xs) that returns every {k}th element of the list xs, starting with the "
        "first (xs[0], xs[{k}], ...).",
        "def every_nth(xs):\n    return xs[::{k}]",
        lambda rng: {"k": rng.randint(2, 5)},
        lambda p: [(list(range(12)),), ([],), (["a", "b"],)],
    ),
)


def code_draft(rng: random.Random) -> Draft:
    t = rng.choice(CODE_TEMPLATES)
    params = t.params(rng)
    solution = t.solution.format(**params)
    namespace: dict[str, Any] = {}
    exec(solution, namespace)  # our own reference solution: computes the expected values
    fn = namespace[t.function]
    tests = []
    for args in t.inputs(params):
        call = f"{t.function}({', '.join(repr(a) for a in args)})"
        tests.append(f"assert {call} == {fn(*args)!r}")
    user = f"{t.text.format(**params)} Reply with the function in a ```python code block."
    return Draft(
        user=user,
        verifier={"kind": "code", "function": t.function, "tests": tests},
        reference=f"```python\n{solution}\n```",
        reasoning=f"The function {t.function} needs one expression or a short loop; check it on the examples.",
    )


# -- instruction following ----------------------------------------------------------------------------

_TOPICS = ("the ocean", "coffee", "bicycles", "libraries", "rain", "mountains", "music", "bread", "trains",
           "gardens", "the moon", "chess", "rivers", "honey", "bridges", "tea")  # fmt: skip
LANGUAGE_NAMES = {
    "en": "English",
    "ko": "Korean",
    "ja": "Japanese",
    "de": "German",
    "es": "Spanish",
    "vi": "Vietnamese",
}
# topic-agnostic sentences per language (the English ones name the topic)
_SENTENCES = {
    "en": ("{T} matters in daily life.", "Many people study {t}.", "The history of {t} is long.",
           "There is still much to learn about {t}."),
    "ko": ("이것은 일상생활에서 중요합니다.", "많은 사람들이 이것을 연구합니다.", "이것은 긴 역사를 가지고 있습니다.",
           "아직 배울 것이 많이 있습니다."),
    "ja": ("これは日常生活で大切です。", "多くの人がこれを研究しています。", "これには長い歴史があります。",
           "まだ学ぶことがたくさんあります。"),
    "de": ("Das ist im Alltag wichtig.", "Viele Menschen studieren das.", "Das hat eine lange Geschichte.",
           "Es gibt noch viel zu lernen."),
    "es": ("Esto es importante en la vida diaria.", "Muchas personas lo estudian.", "Tiene una larga historia.",
           "Todavía hay mucho que aprender."),
    "vi": ("Điều này quan trọng trong cuộc sống hằng ngày.", "Nhiều người nghiên cứu nó.",
           "Nó có một lịch sử lâu dài.", "Vẫn còn nhiều điều để học."),
}  # fmt: skip
_JSON_KEYS = ("topic", "summary", "rating", "source", "year")
_ENDINGS = ("That is all.", "Thank you for reading.", "The end.")


def instruction_draft(rng: random.Random) -> Draft:
    topic = rng.choice(_TOPICS)
    lang = "en" if rng.random() < 0.5 else rng.choice(("ko", "ja", "de", "es", "vi"))
    sentences = [s.format(t=topic, T=topic[0].upper() + topic[1:]) for s in _SENTENCES[lang]]
    rng.shuffle(sentences)
    form = rng.choice(("bullets", "plain", "json") if lang == "en" else ("bullets", "plain"))
    parts, rules = [f"Write about {topic}."], []
    if lang != "en" or rng.random() < 0.3:
        parts.append(f"Answer in {LANGUAGE_NAMES[lang]}.")
        rules.append({"rule": "language", "value": lang})
    if form == "bullets":
        n = rng.randint(2, 4)
        body = "\n".join(f"- {s}" for s in sentences[:n])
        parts.append(f"Use exactly {n} bullet points, each starting with '- '.")
        rules.append({"rule": "bullets", "value": n})
    elif form == "json":
        keys = rng.sample(_JSON_KEYS, rng.randint(2, 3))
        values = {"topic": topic, "summary": sentences[0], "rating": rng.randint(1, 5), "source": "general knowledge",
                  "year": rng.randint(1900, 2024)}  # fmt: skip
        body = json.dumps({k: values[k] for k in keys}, ensure_ascii=False)
        parts.append(f"Reply with only a JSON object with the keys {', '.join(repr(k) for k in keys)}.")
        rules.append({"rule": "json_keys", "value": keys})
    else:
        body = " ".join(sentences[: rng.randint(1, 3)])
        parts.append("Write a short paragraph.")
    lowercase = lang == "en" and form != "json" and rng.random() < 0.4
    if lang == "en" and form != "json" and rng.random() < 0.4:
        ending = rng.choice(_ENDINGS)
        ending = ending.lower() if lowercase else ending
        body = f"{body}\n{ending}" if form == "bullets" else f"{body} {ending}"
        parts.append(f"End your answer with the phrase '{ending}'.")
        rules.append({"rule": "ends_with", "value": ending})
    if lang == "en" and form == "plain" and rng.random() < 0.4:
        word = topic.split()[-1]
        parts.append(f"Mention the word '{word}'.")
        rules.append({"rule": "keywords", "value": [word]})
    if lowercase:
        body = body.lower()
        parts.append("Write everything in lowercase letters.")
        rules.append({"rule": "lowercase"})
    if rng.random() < 0.5 or not rules:  # every prompt checks at least one rule
        if lang == "ja":
            limit = sum(not c.isspace() for c in body) + rng.randint(5, 40)
            parts.append(f"Use at most {limit} characters.")
            rules.append({"rule": "max_chars", "value": limit})
        else:
            limit = len(body.split()) + rng.randint(3, 20)
            parts.append(f"Use at most {limit} words.")
            rules.append({"rule": "max_words", "value": limit})
    checks = ", ".join(r["rule"] for r in rules) or "none"
    return Draft(
        user=" ".join(parts),
        verifier={"kind": "instruction", "rules": rules},
        reference=body,
        reasoning=f"The request sets these constraints: {checks}. Write the answer to satisfy each of them.",
    )


# -- tool tasks ------------------------------------------------------------------------------------------


def tool_drafts(tasks: Sequence[Mapping[str, Any]]) -> list[Draft]:
    from posttrain import tool_tasks

    out = []
    for raw in tasks:
        task = tool_tasks.task_from_json(raw)
        messages = tool_tasks.transcript(task)
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        steps = "; ".join(f"{c['name']}({json.dumps(c['arguments'])}) gives {c['result']}" for c in task.calls)
        out.append(
            Draft(
                user=task.user,
                system=system,
                verifier={"kind": "tool", "task": tool_tasks.task_to_json(task)},
                reference=task.reference_answer,
                reasoning=f"Use the tools: {steps}." if steps else "No tool call is needed.",
            )
        )
    return out


# -- building ------------------------------------------------------------------------------------------


def _record(family: str, draft: Draft, held_out_fraction: float) -> dict:
    pid = prompt_id(family, draft.user)
    messages = [{"role": "system", "content": draft.system}] if draft.system else []
    messages.append({"role": "user", "content": draft.user})
    return {
        "id": pid,
        "family": family,
        "domain": DOMAINS[family],
        "split": split_of(pid, held_out_fraction),
        "messages": messages,
        "verifier": draft.verifier,
        "reference": draft.reference,
        "reference_reasoning": draft.reasoning,
    }


def _unique(family: str, n: int, make: Callable[[int], Draft]) -> list[Draft]:
    """The first ``n`` distinct drafts of ``make(0), make(1), ...`` (fewer when the space runs out)."""
    out: list[Draft] = []
    seen: set[str] = set()
    for i in range(4 * n + 200):
        if len(out) == n:
            break
        draft = make(i)
        if draft.user not in seen:
            seen.add(draft.user)
            out.append(draft)
    return out


def family_drafts(
    family: str,
    n: int,
    seed: int,
    *,
    tool_tasks: Iterable[Mapping[str, Any]] | None = None,
    arithmetic: ArithmeticParams = ARITHMETIC,
) -> list[Draft]:
    if family == "arithmetic":
        return _unique(family, n, lambda i: arithmetic_draft(_rng(seed, family, i), arithmetic))
    if family == "math_word":
        return _unique(family, n, lambda i: math_word_draft(_rng(seed, family, i)))
    if family == "multiple_choice":
        return _unique(family, n, lambda i: multiple_choice_draft(_rng(seed, family, i)))
    if family == "code":
        return _unique(family, n, lambda i: code_draft(_rng(seed, family, i)))
    if family == "instruction":
        return _unique(family, n, lambda i: instruction_draft(_rng(seed, family, i)))
    if family == "tool":
        if tool_tasks is None:
            from posttrain import tool_tasks as tt

            tasks = [tt.task_to_json(t) for t in tt.programmatic_tasks(n, seed)]
        else:
            tasks = list(tool_tasks)
        return _first_unique(tool_drafts(tasks), n)
    raise ValueError(f"unknown prompt family {family!r} (known: {', '.join(FAMILIES)})")


def _first_unique(drafts: Sequence[Draft], n: int) -> list[Draft]:
    out, seen = [], set()
    for d in drafts:
        if len(out) == n:
            break
        if d.user not in seen:
            seen.add(d.user)
            out.append(d)
    return out


def build_prompts(
    families: Mapping[str, int],
    *,
    seed: int,
    held_out_fraction: float,
    tool_tasks: Iterable[Mapping[str, Any]] | None = None,
    arithmetic: ArithmeticParams = ARITHMETIC,
) -> list[dict]:
    """Records of the requested families (in ``FAMILIES`` order), each with its split.

    ``tool_tasks``: the kept ``tool_use_tasks`` as JSON (None: the offline programmatic tasks).
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown prompt families {unknown} (known: {', '.join(FAMILIES)})")
    if not 0 <= held_out_fraction <= 1:
        raise ValueError(f"held_out_fraction must lie in [0, 1] (got {held_out_fraction})")
    bad = {f: n for f, n in families.items() if isinstance(n, bool) or not isinstance(n, int) or n < 0}
    if bad:
        raise ValueError(f"prompt counts must be integers >= 0 (got {bad})")
    records: list[dict] = []
    for family in FAMILIES:
        if families.get(family):
            drafts = family_drafts(family, families[family], seed, tool_tasks=tool_tasks, arithmetic=arithmetic)
            records += [_record(family, d, held_out_fraction) for d in drafts]
    # the same user text in several families: one copy survives, held-out preferred (never trained on)
    by_text: dict[str, int] = {}
    for i, r in enumerate(records):
        text = r["messages"][-1]["content"]
        j = by_text.get(text)
        if j is None or (records[j]["split"] == "train" and r["split"] == "held_out"):
            by_text[text] = i
    keep = set(by_text.values())
    return [r for i, r in enumerate(records) if i in keep]


def split_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per family: prompts in each split (metadata of ``rl_prompts``)."""
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        counts.setdefault(r["family"], {"train": 0, "held_out": 0})[r["split"]] += 1
    return counts


def reference_answer(record: Mapping[str, Any], *, reasoning: bool) -> dict:
    """The assistant message answering ``record`` (SFT data): the reference answer, and in reasoning mode
    the reference trajectory (which goes into the think block)."""
    reference = record.get("reference")
    if not isinstance(reference, str) or not reference:
        raise ValueError(f"prompt {record.get('id')!r} has no reference answer")
    message: dict[str, Any] = {"role": "assistant", "content": reference}
    if reasoning:
        trajectory = record.get("reference_reasoning") or ""
        if not trajectory.strip():
            raise ValueError(f"prompt {record.get('id')!r} has no reference trajectory for reasoning mode")
        message["reasoning"] = trajectory
    return message


__all__ = [
    "ARITHMETIC",
    "CODE_TEMPLATES",
    "DOMAINS",
    "FAMILIES",
    "MATH_SUFFIX",
    "MC_SUFFIX",
    "ArithmeticParams",
    "Draft",
    "build_prompts",
    "family_drafts",
    "prompt_id",
    "reference_answer",
    "split_counts",
    "split_of",
    "unit_interval",
]
