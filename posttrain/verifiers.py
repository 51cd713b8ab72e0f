"""Verifiers: a reward in [0, 1] for a generated response, from the prompt's verifier spec (report §3.4:
rule-based verifiers; §3.5: an LLM judge with rubric scores where rules cannot decide).

One entry point, ``score(spec, response_text, *, reasoning, sandbox)``. ``validate_spec`` checks a spec
before any compute (the ``rl_prompts`` asset and the policy stage run it on every prompt): an unknown kind,
a missing or mistyped field, an unknown key: ``VerifierError`` with one line. Spec kinds (JSON)::

    {"kind": "exact_number", "answer": "85", "rel_tol": 1e-6}
    {"kind": "choice", "answer": "B", "options": ["A", "B", "C", "D"]}
    {"kind": "instruction", "rules": [{"rule": "language", "value": "ko"}, {"rule": "max_words", "value": 30},
                                      {"rule": "bullets", "value": 3}, {"rule": "lowercase"}, ...],
     "all_or_nothing": false}
    {"kind": "code", "function": "add", "tests": ["assert add(1, 2) == 3", "add(0, 0) == 0"],
     "all_or_nothing": false}
    {"kind": "tool", "task": {...a posttrain.tool_tasks task as JSON...}}
    {"kind": "judge", "prompt": "...", "rubric": ["correctness", ...], "reference": "...", "language": "en"}

* What is scored: the answer after the think block (``posttrain.chat.parse_response``). **Choice:** in
  reasoning mode a response that is not well formed (no closed think block, an empty trajectory, a stray
  think tag) scores 0 whatever its answer: the format is part of the task, as in EXAONE 4.0's RL.
* ``choice``: the letter after the last ``Answer:`` (``B``, ``(B)``, ``B)``), or an answer that is only a
  letter, equal to the spec's (``final_choice``); any other letter or none scores 0.
* ``exact_number``: the final number of the answer: the first number after the last ``Answer:`` if there
  is one, else the one in the last ``\\boxed{}``, else the last number of the answer. ``1,234`` (thousands
  commas), ``-3.5``, ``42.0``, ``3/4`` and a Unicode minus are read; a decimal comma is not (``3,5`` is not
  3.5: **choice**, thousands commas win). Equal when ``|got - want| <= rel_tol * max(|want|, 1)`` (as
  ``synthetic.stem.answer_matches``), in exact decimal arithmetic.
* ``instruction``: rules ``language`` (script detection: Hangul for ko, kana (+ kanji) for ja, Latin plus a
  small stop-word vote among en/de/es/vi), ``min_words`` / ``max_words`` (whitespace words) and
  ``min_chars`` / ``max_chars`` (non-space characters: use these for ja), ``bullets`` (exactly N lines
  starting ``-``, ``*``, ``•`` or ``1.``; other lines allowed), ``json_keys`` (the answer, optionally in a
  fenced block, is one JSON object holding every given key; extra keys allowed), ``lowercase``,
  ``starts_with`` / ``ends_with`` (exact, surrounding whitespace ignored), ``keywords`` (each word present,
  case-insensitive) and ``forbidden`` (none present). **Choice:** the reward is the share of rules passed
  (partial credit gives RL a gradient; pass@1 counts only 1.0); ``"all_or_nothing": true`` gives 0 or 1.
* ``code``: the last fenced ```` ```python ```` block of the answer (any fence if none is tagged python;
  the raw answer if there is no fence) is executed in ``posttrain.sandbox.run_python`` as a module named
  ``__candidate__`` (its ``if __name__ == "__main__"`` block does not run); then each test runs in the
  same namespace: a test that parses as an expression must be truthy, a statement (``assert ...``) must
  not raise. One script runs every test and writes one line per test behind a random marker, so a
  timeout keeps the results of the tests before it and the candidate's own printing cannot collide.
  **Choice:** reward = share of tests passed (``"all_or_nothing": true``: 0 or 1); a candidate that does
  not load passes nothing. Limit: the marker defends against accidents, not against code that reads the
  script (an object with ``__eq__`` always true also passes ``==`` asserts): the sandbox protects the
  machine, not the reward, from adversarial code.
* ``tool``: ``posttrain.tool_tasks.check_answer(task, answer, timeout_s=..., memory_mb=...)`` (imported
  lazily), clamped into [0, 1].
* ``judge``: the mean rubric score of a judge (default ``OfflineJudge``), scaled from 1..5 to [0, 1].

The judge (report: LLM-as-a-judge with rubric scores, through the teacher client): ``judge_requests(items,
rubric)`` builds one ``TeacherRequest`` per item (each rubric dimension scored 1..5, asked back as one strict
JSON object), ``parse_judgement(text, rubric)`` reads an answer back or raises ``JudgeError`` (one line),
``TeacherJudge(teacher)`` wires them to any teacher backend (the HTTP one caches and retries).
``OfflineJudge`` is the deterministic CI backend: rubric scores from rules (below); its identity
``offline-rule-judge-v1`` says so, and it never presents itself as an LLM.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, Protocol, Sequence

from posttrain.chat import THINK_CLOSE, THINK_OPEN, parse_response
from synthetic.teacher import Teacher, TeacherRequest

KINDS = ("exact_number", "choice", "instruction", "code", "tool", "judge")
DEFAULT_REL_TOL = 0.0  # exact_number without rel_tol: exact equality
LANGUAGES = ("en", "ko", "ja", "de", "es", "vi")


class VerifierError(ValueError):
    """A malformed verifier spec; one line naming the problem."""


class JudgeError(ValueError):
    """A judge answer that cannot be read as the rubric's scores; one line."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run (code tests, tool criteria): the preset's ``posttrain.tool_tasks``."""

    timeout_s: float = 5.0
    memory_mb: int = 256


DEFAULT_SANDBOX = SandboxLimits()


# -- numbers -----------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"(?<![\w.])[-\u2212]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/[1-9]\d*)?")
_ANSWER_RE = re.compile(r"answer\s*[:：]", re.I)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")


def _to_decimal(token: str) -> Decimal | None:
    raw = token.replace("\u2212", "-").replace(",", "")
    try:
        if "/" in raw:
            num, den = raw.split("/")
            return Decimal(num) / Decimal(den)
        return Decimal(raw)
    except (InvalidOperation, ZeroDivisionError, ValueError):
        return None


def parse_number(text: str) -> Decimal | None:
    """The last number in ``text`` (``1,234``, ``-3.5``, ``3/4`` accepted), or None."""
    found = _NUMBER_RE.findall(text)
    return _to_decimal(found[-1]) if found else None


def final_choice(answer: str, options: Sequence[str]) -> str | None:
    """The option letter the answer picks: after its last ``Answer:`` (``B``, ``(B)``, ``B)``, ``B.``), else
    an answer that is only a letter; None when it picks none of ``options``."""
    marks = list(re.finditer(r"Answer\s*[:：]\s*\(?([A-Z])\b", answer))
    if marks:
        letter = marks[-1].group(1)
    else:
        alone = re.fullmatch(r"\s*\(?([A-Z])[).]?\s*", answer)
        letter = alone.group(1) if alone else None
    return letter if letter in options else None


def final_number(answer: str) -> Decimal | None:
    """The answer's final number: after the last ``Answer:``, else in the last ``\\boxed{}``, else the last."""
    marks = list(_ANSWER_RE.finditer(answer))
    if marks:
        found = _NUMBER_RE.findall(answer[marks[-1].end() :])
        if found:
            return _to_decimal(found[0])
    boxed = _BOXED_RE.findall(answer)
    if boxed and (got := parse_number(boxed[-1])) is not None:
        return got
    return parse_number(answer)


def _expected(answer: Any) -> Decimal | None:
    """An exact_number spec's answer as a Decimal (a number, or a string as ``parse_number`` reads one)."""
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)):
        value = Decimal(str(answer))
        return value if value.is_finite() else None
    if isinstance(answer, str) and _NUMBER_RE.fullmatch(answer.strip()):
        return _to_decimal(answer.strip())
    return None


def numbers_match(want: Decimal, got: Decimal | None, rel_tol: float) -> bool:
    if got is None:
        return False
    return abs(got - want) <= Decimal(str(rel_tol)) * max(abs(want), Decimal(1))


# -- languages ---------------------------------------------------------------------------------------

_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and is are was were of to that it for with this be on as have has there not you they he she "
        "we what which from by at or can will would".split()
    ),
    "de": frozenset(
        "der die das und ist sind nicht ein eine einen zu mit ich den dem von sich auf im auch noch viel "
        "gibt wir sie wird für aus bei".split()
    ),
    "es": frozenset(
        "el la los las de que y es son en un una por con para lo del se muy esto hay como más pero".split()
    ),
    "vi": frozenset(
        "là và của có không những được một cho các này trong người nó điều còn nhiều để với đã thì".split()
    ),
}
_VI_LETTERS = re.compile(r"[ăâđêôơưĂÂĐÊÔƠƯ\u1ea0-\u1ef9]")


def _script_counts(text: str) -> dict[str, int]:
    counts = {"letters": 0, "hangul": 0, "kana": 0, "cjk": 0, "latin": 0}
    for c in text:
        if not c.isalpha():
            continue
        counts["letters"] += 1
        o = ord(c)
        if 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
            counts["hangul"] += 1
        elif 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9D:
            counts["kana"] += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
            counts["cjk"] += 1
        elif o < 0x250 or 0x1E00 <= o <= 0x1EFF:
            counts["latin"] += 1
    return counts


def _latin_votes(text: str) -> dict[str, int]:
    words = re.findall(r"[^\W\d_]+", text.lower())
    votes = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    votes["vi"] += sum(1 for w in words if _VI_LETTERS.search(w))
    return votes


def guess_language(text: str) -> str | None:
    """The language of ``text`` among ``LANGUAGES`` by the rules ``language_matches`` uses, or None."""
    counts = _script_counts(text)
    if not counts["letters"]:
        return None
    if counts["hangul"] >= 0.5 * counts["letters"]:
        return "ko"
    if counts["kana"] and counts["kana"] + counts["cjk"] >= 0.5 * counts["letters"]:
        return "ja"
    if counts["latin"] < 0.8 * counts["letters"]:
        return None
    votes = _latin_votes(text)
    best = max(votes.values())
    winners = [lang for lang, v in votes.items() if v == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def language_matches(text: str, language: str) -> bool:
    """Whether ``text`` is written in ``language``.

    ko: at least half the letters Hangul. ja: kana present and kana + kanji at least half the letters.
    en/de/es/vi: at least 80 % Latin letters and the stop-word vote (Vietnamese letters count for vi) won
    by ``language`` outright. **Choice:** a Latin text with no stop word at all (a few words) passes on
    its script alone: too short to tell these four apart.
    """
    counts = _script_counts(text)
    letters = counts["letters"]
    if not letters:
        return False
    if language == "ko":
        return counts["hangul"] >= 0.5 * letters
    if language == "ja":
        return counts["kana"] > 0 and counts["kana"] + counts["cjk"] >= 0.5 * letters
    if counts["latin"] < 0.8 * letters:
        return False
    votes = _latin_votes(text)
    best = max(votes.values())
    if best == 0:
        return True
    return votes[language] == best and sum(v == best for v in votes.values()) == 1


# -- instruction rules -------------------------------------------------------------------------------

# rule -> type of its "value" (None: the rule takes no value)
RULES: dict[str, type | None] = {
    "language": str,
    "min_words": int,
    "max_words": int,
    "min_chars": int,
    "max_chars": int,
    "bullets": int,
    "json_keys": list,
    "lowercase": None,
    "starts_with": str,
    "ends_with": str,
    "keywords": list,
    "forbidden": list,
}
_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")
_FENCE_RE = re.compile(r"```[^\n`]*\n(.*?)(?:```|$)", re.S)


def _json_object(answer: str) -> dict | None:
    fenced = _FENCE_RE.search(answer)
    body = fenced.group(1) if fenced else answer
    try:
        obj = json.loads(body.strip())
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.lower()) + r"(?!\w)", text.lower()) is not None


def check_rule(rule: Mapping[str, Any], answer: str) -> bool:
    """One instruction rule on an answer (the rule already validated)."""
    name, value = rule["rule"], rule.get("value")
    text = answer.strip()
    if name == "language":
        return language_matches(text, value)
    if name in ("min_words", "max_words"):
        words = len(text.split())
        return words >= value if name == "min_words" else 0 < words <= value
    if name in ("min_chars", "max_chars"):
        chars = sum(not c.isspace() for c in text)
        return chars >= value if name == "min_chars" else 0 < chars <= value
    if name == "bullets":
        return sum(bool(_BULLET_RE.match(line)) for line in text.splitlines()) == value
    if name == "json_keys":
        obj = _json_object(text)
        return obj is not None and all(k in obj for k in value)
    if name == "lowercase":
        return text == text.lower() and any(c.isalpha() for c in text)
    if name == "starts_with":
        return text.startswith(value.strip())
    if name == "ends_with":
        return text.endswith(value.strip())
    if name == "keywords":
        return all(_has_word(text, w) for w in value)
    if name == "forbidden":
        return not any(_has_word(text, w) for w in value)
    raise VerifierError(f"unknown instruction rule {name!r}")


def rule_share(rules: Sequence[Mapping[str, Any]], answer: str) -> float:
    return sum(check_rule(r, answer) for r in rules) / len(rules)


# -- validation --------------------------------------------------------------------------------------

_KEYS = {
    "exact_number": ({"answer"}, {"rel_tol"}),
    "choice": ({"answer", "options"}, set()),
    "instruction": ({"rules"}, {"all_or_nothing"}),
    "code": ({"function", "tests"}, {"all_or_nothing"}),
    "tool": ({"task"}, set()),
    "judge": ({"prompt", "rubric"}, {"reference", "language"}),
}


def _fail(message: str) -> None:
    raise VerifierError(message.replace("\n", " "))


def _validate_rule(i: int, rule: Any) -> None:
    if not isinstance(rule, Mapping) or rule.get("rule") not in RULES:
        got = rule.get("rule") if isinstance(rule, Mapping) else rule
        _fail(f"instruction rule {i}: {got!r} is not one of {', '.join(RULES)}")
    name, want = rule["rule"], RULES[rule["rule"]]
    extra = set(rule) - {"rule", "value"}
    if extra:
        _fail(f"instruction rule {i} ({name}): unknown keys {sorted(extra)}")
    value = rule.get("value")
    if want is None:
        if value is not None:
            _fail(f"instruction rule {i} ({name}) takes no value")
        return
    if want is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        _fail(f"instruction rule {i} ({name}) needs a non-negative integer value (got {value!r})")
    if want is str and (not isinstance(value, str) or not value.strip()):
        _fail(f"instruction rule {i} ({name}) needs a non-empty string value (got {value!r})")
    if want is list and (not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value)):
        _fail(f"instruction rule {i} ({name}) needs a non-empty list of strings (got {value!r})")
    if name == "language" and value not in LANGUAGES:
        _fail(f"instruction rule {i}: language {value!r} is not one of {', '.join(LANGUAGES)}")


def validate_spec(spec: Any) -> None:
    """Raise ``VerifierError`` (one line) unless ``spec`` is a well-formed verifier spec; no compute."""
    if not isinstance(spec, Mapping):
        _fail(f"a verifier spec must be a mapping (got {type(spec).__name__})")
    kind = spec.get("kind")
    if kind not in KINDS:
        _fail(f"verifier kind {kind!r} is not one of {', '.join(KINDS)}")
    required, optional = _KEYS[kind]
    missing, unknown = required - set(spec), set(spec) - required - optional - {"kind"}
    if missing:
        _fail(f"{kind} verifier lacks {', '.join(sorted(missing))}")
    if unknown:
        _fail(f"{kind} verifier has unknown keys {sorted(unknown)}")
    if "all_or_nothing" in spec and not isinstance(spec["all_or_nothing"], bool):
        _fail(f"{kind} verifier: all_or_nothing must be true or false")
    if kind == "exact_number":
        if _expected(spec["answer"]) is None:
            _fail(f"exact_number answer must be a finite number or a numeric string (got {spec['answer']!r})")
        tol = spec.get("rel_tol", DEFAULT_REL_TOL)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            _fail(f"exact_number rel_tol must be a number in [0, 1) (got {tol!r})")
    elif kind == "choice":
        options = spec["options"]
        if (
            not isinstance(options, list)
            or len(options) < 2
            or len(set(options)) != len(options)
            or not all(isinstance(o, str) and re.fullmatch(r"[A-Z]", o) for o in options)
        ):
            _fail(f"choice options must be two or more distinct capital letters (got {options!r})")
        if spec["answer"] not in options:
            _fail(f"choice answer {spec['answer']!r} is not one of the options {options}")
    elif kind == "instruction":
        rules = spec["rules"]
        if not isinstance(rules, list) or not rules:
            _fail("instruction verifier needs a non-empty list of rules")
        for i, rule in enumerate(rules):
            _validate_rule(i, rule)
    elif kind == "code":
        if not isinstance(spec["function"], str) or not spec["function"].isidentifier():
            _fail(f"code verifier: function must be a Python identifier (got {spec['function']!r})")
        tests = spec["tests"]
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
            _fail("code verifier needs a non-empty list of test strings")
        for i, t in enumerate(tests):
            try:
                compile(t, f"<test {i}>", "exec")
            except SyntaxError as e:
                _fail(f"code verifier: test {i} is not valid Python ({e.msg})")
    elif kind == "tool":
        if not isinstance(spec["task"], Mapping):
            _fail("tool verifier: task must be a JSON object (a posttrain.tool_tasks task)")
    else:
        if not isinstance(spec["prompt"], str) or not spec["prompt"].strip():
            _fail("judge verifier needs the prompt text")
        _validate_rubric(spec["rubric"], VerifierError)
        if "language" in spec and spec["language"] not in LANGUAGES:
            _fail(f"judge verifier: language {spec['language']!r} is not one of {', '.join(LANGUAGES)}")


def _validate_rubric(rubric: Any, error: type[Exception]) -> None:
    if isinstance(rubric, str) or not rubric or not all(isinstance(d, str) and d.isidentifier() for d in rubric):
        raise error(f"a rubric is a non-empty list of dimension names (got {rubric!r})")


# -- code --------------------------------------------------------------------------------------------

_PY_FENCE_RE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|$)", re.S | re.I)
_ANY_FENCE_RE = re.compile(r"```[^\n`]*\n(.*?)(?:```|$)", re.S)

_HARNESS = """\
import io as _io, os as _os, sys as _sys
_write, _mark = _os.write, {mark!r}
_tests = {tests!r}
_ns = {{"__name__": "__candidate__"}}
_sys.stdout = _io.StringIO()
try:
    exec(compile({source!r}, "<candidate>", "exec"), _ns)
    _loaded = True
except BaseException:
    _loaded = False
for _i, _t in enumerate(_tests):
    _passed = False
    if _loaded:
        try:
            try:
                _code, _expr = compile(_t, "<test>", "eval"), True
            except SyntaxError:
                _code, _expr = compile(_t, "<test>", "exec"), False
            _value = eval(_code, _ns) if _expr else exec(_code, _ns)
            _passed = bool(_value) if _expr else True
        except BaseException:
            _passed = False
    _write(1, f"{{_mark}} {{_i}} {{int(_passed)}}\\n".encode())
"""


def extract_code(answer: str) -> str:
    """The Python of an answer: the last ```python fence, else the last fence, else the raw answer."""
    for pattern in (_PY_FENCE_RE, _ANY_FENCE_RE):
        blocks = pattern.findall(answer)
        if blocks:
            return blocks[-1]
    return answer


def code_harness(source: str, tests: Sequence[str], mark: str) -> str:
    """The script run in the sandbox: load ``source``, run each test, one ``{mark} {i} {0|1}`` line each."""
    return _HARNESS.format(mark=mark, tests=list(tests), source=source)


def run_code_tests(source: str, tests: Sequence[str], sandbox: SandboxLimits) -> list[bool]:
    """Per test: passed or not (tests after a timeout or a crash of the script count as failed)."""
    from posttrain.sandbox import run_python

    if not source.strip():
        return [False] * len(tests)
    mark = "@@verifier-" + secrets.token_hex(8)
    result = run_python(code_harness(source, tests, mark), timeout_s=sandbox.timeout_s, memory_mb=sandbox.memory_mb)
    passed = [False] * len(tests)
    seen: set[int] = set()
    for line in result.stdout.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == mark and parts[1].isdigit() and parts[2] in ("0", "1"):
            i = int(parts[1])
            if i < len(tests) and i not in seen:
                seen.add(i)
                passed[i] = parts[2] == "1"
    return passed


def _share(flags: Sequence[bool], all_or_nothing: bool) -> float:
    if all_or_nothing:
        return float(all(flags))
    return sum(flags) / len(flags)


# -- the entry point ---------------------------------------------------------------------------------


def answer_of(response_text: str, *, reasoning: bool) -> str | None:
    """The answer part of a response; None when reasoning mode's think block is not well formed."""
    parsed = parse_response(response_text, reasoning=reasoning)
    if reasoning and not parsed.well_formed:
        return None
    return parsed.answer


def score(
    spec: Mapping[str, Any],
    response_text: str,
    *,
    reasoning: bool,
    sandbox: SandboxLimits = DEFAULT_SANDBOX,
    judge: Judge | None = None,
) -> float:
    """The reward in [0, 1] of one response (the text after the generation prompt, EOS removed)."""
    validate_spec(spec)
    answer = answer_of(response_text, reasoning=reasoning)
    if answer is None:
        return 0.0
    kind = spec["kind"]
    if kind == "exact_number":
        want = _expected(spec["answer"])
        return float(numbers_match(want, final_number(answer), spec.get("rel_tol", DEFAULT_REL_TOL)))
    if kind == "choice":
        return float(final_choice(answer, spec["options"]) == spec["answer"])
    if kind == "instruction":
        flags = [check_rule(r, answer) for r in spec["rules"]]
        return _share(flags, spec.get("all_or_nothing", False))
    if kind == "code":
        if not answer.strip():
            return 0.0
        flags = run_code_tests(extract_code(answer), spec["tests"], sandbox)
        return _share(flags, spec.get("all_or_nothing", False))
    if kind == "tool":
        from posttrain import tool_tasks

        task = tool_tasks.task_from_json(spec["task"])
        got = tool_tasks.check_answer(task, answer, timeout_s=sandbox.timeout_s, memory_mb=sandbox.memory_mb)
        return min(1.0, max(0.0, float(got)))
    item = JudgeItem(
        prompt=spec["prompt"],
        response=response_text,
        reference=spec.get("reference", ""),
        language=spec.get("language", ""),
        reasoning=reasoning,
    )
    scores = (judge or OfflineJudge(sandbox=sandbox)).judge_many([item], spec["rubric"])[0]
    return rubric_mean(scores)


# -- the judge ---------------------------------------------------------------------------------------

JUDGE_TEMPLATE_VERSION = "judge-v1"
OFFLINE_JUDGE = "offline-rule-judge-v1"
# what each dimension asks the judge (a dimension not listed is asked by its name)
DIMENSIONS = {
    "correctness": "the answer is correct (agrees with the reference answer when one is given)",
    "helpfulness": "the answer addresses the request and is useful",
    "instruction_following": "every explicit instruction of the request is followed",
    "language": "the answer is written in the language the request asks for (else the request's language)",
    "conciseness": "the answer is as short as it can be without losing content",
    "format": "the answer is well formed: clean structure, no stray markup",
}
JUDGE_SYSTEM = (
    "You are a strict grader. Score the assistant's response on each rubric dimension with an integer from "
    "1 (very poor) to 5 (excellent). Reply with exactly one JSON object mapping every dimension name to its "
    "score, and nothing else: no prose, no code fence."
)


@dataclass(frozen=True)
class JudgeItem:
    """One response to judge: the request, the response (as generated: the think block is removed before
    the judge sees it, **choice**: the trajectory is not judged), an optional reference answer and verifier
    spec (the offline judge's correctness), an optional expected language."""

    prompt: str
    response: str
    reference: str = ""
    spec: Mapping[str, Any] | None = None
    language: str = ""
    reasoning: bool = False


def judge_item(record: Mapping[str, Any], response_text: str, *, reasoning: bool) -> JudgeItem:
    """A ``JudgeItem`` from an ``rl_prompts`` record and a response to it."""
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    spec = record.get("verifier")
    language = record.get("language") or ""
    if not language and isinstance(spec, Mapping) and spec.get("kind") == "instruction":
        language = next((r["value"] for r in spec["rules"] if r.get("rule") == "language"), "")
    return JudgeItem(
        prompt=users[-1] if users else "",
        response=response_text,
        reference=str(record.get("reference") or ""),
        spec=spec if isinstance(spec, Mapping) and spec.get("kind") != "judge" else None,
        language=language,
        reasoning=reasoning,
    )


def judge_requests(items: Sequence[JudgeItem], rubric: Sequence[str]) -> list[TeacherRequest]:
    """One teacher request per item: the rubric (each dimension 1..5) and the strict-JSON answer shape."""
    _validate_rubric(rubric, JudgeError)
    dims = "\n".join(f"- {d}: {DIMENSIONS.get(d, d.replace('_', ' '))}" for d in rubric)
    shape = json.dumps({d: 3 for d in rubric})
    system = f"{JUDGE_SYSTEM}\nRubric:\n{dims}\nAnswer shape (scores are examples): {shape}"
    out = []
    for item in items:
        answer = parse_response(item.response, reasoning=item.reasoning).answer
        parts = [f"Request:\n{item.prompt}"]
        if item.reference:
            parts.append(f"Reference answer:\n{item.reference}")
        if item.language:
            parts.append(f"Expected language: {item.language}")
        parts.append(f"Response:\n{answer}")
        out.append(
            TeacherRequest(
                kind="judge",
                messages=(("system", system), ("user", "\n\n".join(parts))),
                template_version=JUDGE_TEMPLATE_VERSION,
            )
        )
    return out


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:80] + ("..." if len(flat) > 80 else ""))


def parse_judgement(text: str, rubric: Sequence[str]) -> dict[str, int]:
    """A judge's answer as ``{dimension: score}``; ``JudgeError`` (one line) unless it is one JSON object
    (a code fence around it is tolerated) with an integer 1..5 for every rubric dimension (extra keys are
    ignored; 4.0 reads as 4, 4.5 and "4" are refused)."""
    _validate_rubric(rubric, JudgeError)
    body = text.strip()
    fenced = re.fullmatch(r"```[A-Za-z]*\s*(.*?)```", body, re.S)
    if fenced:
        body = fenced.group(1).strip()
    try:
        raw = json.loads(body)
    except json.JSONDecodeError:
        raise JudgeError(f"judge output is not one JSON object: {_snippet(text)}") from None
    if not isinstance(raw, dict):
        raise JudgeError(f"judge output is not one JSON object: {_snippet(text)}")
    missing = [d for d in rubric if d not in raw]
    if missing:
        raise JudgeError(f"judge output lacks the rubric dimensions {missing}: {_snippet(text)}")
    scores: dict[str, int] = {}
    for d in rubric:
        v = raw[d]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() and 1 <= v <= 5
        if not ok:
            raise JudgeError(f"judge score of {d!r} must be an integer in 1..5 (got {v!r})")
        scores[d] = int(v)
    return scores


def rubric_mean(scores: Mapping[str, int]) -> float:
    """The mean rubric score scaled from 1..5 to [0, 1] (GROUPER's rubric term)."""
    if not scores:
        raise JudgeError("no rubric scores to average")
    return (sum(scores.values()) / len(scores) - 1) / 4


class Judge(Protocol):
    identity: str

    def judge_many(self, items: Sequence[JudgeItem], rubric: Sequence[str]) -> list[dict[str, int]]: ...


class TeacherJudge:
    """The LLM judge: ``judge_requests`` through a teacher client, ``parse_judgement`` on each answer."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.identity = f"llm-judge:{teacher.identity}"

    def judge_many(self, items: Sequence[JudgeItem], rubric: Sequence[str]) -> list[dict[str, int]]:
        completions = self.teacher.complete_many(judge_requests(items, rubric))
        return [parse_judgement(c.text, rubric) for c in completions]


def _level(share: float) -> int:
    """A share in [0, 1] as a 1..5 score (0 -> 1, 1 -> 5, half up)."""
    return 1 + int(4 * min(1.0, max(0.0, share)) + 0.5)


class OfflineJudge:
    """The deterministic judge of CI and the tiny preset: rubric scores from rules, never an LLM (identity
    ``offline-rule-judge-v1``). Its answers go through ``parse_judgement`` like an LLM's.

    Per dimension (the answer is the response after its think block; an empty answer scores 1 everywhere):

    * ``correctness``: the item's rule verifier (``score``) as 1..5 (``1 + 4 r`` rounded); without a spec,
      the reference's final number (or, for a non-numeric reference, the whitespace-normalized text) equal
      or not: 5 / 1; without either: 3 (**choice**: neutral, the offline judge cannot tell).
    * ``instruction_following``: an instruction spec's share of rules as 1..5; otherwise ``format``.
    * ``format``: 5 when well formed (reasoning mode: ``parse_response``'s ``well_formed``; non-reasoning:
      no think tag in the response), else 1.
    * ``language``: 5 when the answer is in the expected language (the item's, or the prompt's as
      ``guess_language`` reads it; undetermined: 5 when the answer's script family matches), else 1; an
      answer without letters (a bare number) scores 5.
    * ``conciseness``: words of the answer against the reference's (ratio <= 2: 5, <= 4: 4, <= 8: 3,
      <= 16: 2, else 1) or, without a reference, absolute (<= 50, 150, 400, 1000 words).
    * ``helpfulness``: the mean of correctness and format, half up.
    * any other dimension: 3 (**choice**: neutral; constant scores carry no signal once GROUPER
      standardizes a group).
    """

    identity = OFFLINE_JUDGE

    def __init__(self, sandbox: SandboxLimits = DEFAULT_SANDBOX) -> None:
        self.sandbox = sandbox

    def judge_many(self, items: Sequence[JudgeItem], rubric: Sequence[str]) -> list[dict[str, int]]:
        _validate_rubric(rubric, JudgeError)
        return [parse_judgement(json.dumps(self._scores(item, rubric)), rubric) for item in items]

    # the policy stage's call: one prompt record and one response
    def scores(
        self, record: Mapping[str, Any], response_text: str, rubric: Sequence[str], *, reasoning: bool = False
    ) -> dict[str, int]:
        return self.judge_many([judge_item(record, response_text, reasoning=reasoning)], rubric)[0]

    def mean_score(
        self, record: Mapping[str, Any], response_text: str, rubric: Sequence[str], *, reasoning: bool = False
    ) -> float:
        """The mean rubric score scaled from 1..5 to [0, 1]."""
        return rubric_mean(self.scores(record, response_text, rubric, reasoning=reasoning))

    def _scores(self, item: JudgeItem, rubric: Sequence[str]) -> dict[str, int]:
        parsed = parse_response(item.response, reasoning=item.reasoning)
        answer = parsed.answer
        if not answer:
            return {d: 1 for d in rubric}
        if item.reasoning:
            well_formed = parsed.well_formed
        else:
            well_formed = THINK_OPEN not in item.response and THINK_CLOSE not in item.response
        fmt = 5 if well_formed else 1
        values: dict[str, int] = {"format": fmt}
        if "correctness" in rubric or "helpfulness" in rubric:
            values["correctness"] = self._correctness(item, answer)
            values["helpfulness"] = (values["correctness"] + fmt + 1) // 2
        spec = item.spec
        if spec is not None and spec.get("kind") == "instruction":
            values["instruction_following"] = _level(rule_share(spec["rules"], answer))
        else:
            values["instruction_following"] = fmt
        expected = item.language or guess_language(item.prompt)
        if not any(c.isalpha() for c in answer):
            values["language"] = 5  # a bare number or formula is in every language
        elif expected:
            values["language"] = 5 if language_matches(answer, expected) else 1
        else:
            values["language"] = 5 if _family(answer) == _family(item.prompt) else 1
        values["conciseness"] = self._conciseness(item, answer)
        return {d: values.get(d, 3) for d in rubric}

    def _correctness(self, item: JudgeItem, answer: str) -> int:
        if item.spec is not None:
            validate_spec(item.spec)
            return _level(score(item.spec, item.response, reasoning=item.reasoning, sandbox=self.sandbox))
        if item.reference:
            want = final_number(item.reference)
            if want is not None:
                return 5 if numbers_match(want, final_number(answer), 0.0) else 1
            return 5 if " ".join(answer.split()) == " ".join(item.reference.split()) else 1
        return 3

    @staticmethod
    def _conciseness(item: JudgeItem, answer: str) -> int:
        words = len(answer.split())
        if item.reference:
            ratio = words / max(1, len(item.reference.split()))
            bounds = (2, 4, 8, 16)
        else:
            ratio, bounds = words, (50, 150, 400, 1000)
        return 5 - sum(ratio > b for b in bounds)


def _family(text: str) -> str:
    c = _script_counts(text)
    if not c["letters"]:
        return "none"
    return max(("hangul", "kana", "cjk", "latin"), key=lambda k: c[k])


__all__ = [
    "DIMENSIONS",
    "KINDS",
    "LANGUAGES",
    "OFFLINE_JUDGE",
    "RULES",
    "Judge",
    "JudgeError",
    "JudgeItem",
    "OfflineJudge",
    "SandboxLimits",
    "TeacherJudge",
    "VerifierError",
    "answer_of",
    "check_rule",
    "extract_code",
    "final_number",
    "guess_language",
    "judge_item",
    "judge_requests",
    "language_matches",
    "parse_judgement",
    "parse_number",
    "rubric_mean",
    "score",
    "validate_spec",
]
