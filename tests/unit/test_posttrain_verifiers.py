"""Verifiers: exact numbers, instruction rules, code in the real sandbox, spec validation before compute, the
judge's prompt and parsing, and the offline judge's rule scores on known responses."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from posttrain import verifiers as v
from synthetic.teacher import Completion, TeacherStats

ADD = {"kind": "exact_number", "answer": 85, "rel_tol": 0}  # What is 37 + 48?
FAST = v.SandboxLimits(timeout_s=5.0, memory_mb=256)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# -- exact_number --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Answer: 85", "85", "85.0", "The sum is 85.", "answer: 85 apples", "\\boxed{85}"])
def test_exact_number_accepts_the_right_final_number(text):
    assert v.score(ADD, text, reasoning=False) == 1.0


@pytest.mark.parametrize("text", ["84", "Answer: 84", "37 + 48 = 85, so Answer: 86", "", "eighty-five"])
def test_exact_number_rejects_a_wrong_or_missing_number(text):
    assert v.score(ADD, text, reasoning=False) == 0.0


def test_the_number_after_answer_wins_over_later_numbers():
    assert v.score(ADD, "Answer: 85 (checked with 37 + 48 and 48 + 37)", reasoning=False) == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,234", "1234"), ("-3.5", "-3.5"), ("3/4", "0.75"), ("42.0", "42"), ("Answer: \u22127", "-7"), ("x", None)],
)
def test_final_number_reads_common_notations(text, expected):
    got = v.final_number(text)
    assert got == (None if expected is None else Decimal(expected))


CHOICE = {"kind": "choice", "answer": "B", "options": ["A", "B", "C", "D"]}


@pytest.mark.parametrize(
    ("text", "passes"),
    [
        ("Answer: B", True),
        ("Answer: (B)", True),
        ("3 kg is 3000 g.\nAnswer: B) 3000 g", True),
        ("B", True),
        ("(B)", True),
        ("Answer: A\nAnswer: B", True),  # the last Answer: line counts
        ("Answer: C", False),
        ("Answer: E", False),  # not an option
        ("Both A and B look right", False),  # no pick
        ("", False),
    ],
)
def test_choice_reads_the_picked_letter(text, passes):
    assert v.score(CHOICE, text, reasoning=False) == float(passes)


def test_relative_tolerance_from_the_spec():
    spec = {"kind": "exact_number", "answer": "2.777778", "rel_tol": 1e-3}
    assert v.score(spec, "Answer: 2.778", reasoning=False) == 1.0
    assert v.score(spec, "Answer: 2.8", reasoning=False) == 0.0
    assert v.score({**spec, "rel_tol": 0}, "Answer: 2.778", reasoning=False) == 0.0


def test_reasoning_mode_scores_the_answer_after_a_well_formed_think_block():
    good = "7 + 8 = 15, carry 1; 3 + 4 + 1 = 8.\n</think>\nAnswer: 85"
    assert v.score(ADD, good, reasoning=True) == 1.0
    assert v.score(ADD, "Answer: 85", reasoning=True) == 0.0  # no closed think block: all trajectory
    assert v.score(ADD, "\n</think>\nAnswer: 85", reasoning=True) == 0.0  # empty trajectory


# -- instruction ---------------------------------------------------------------------------------------

RULES = {
    "kind": "instruction",
    "rules": [
        {"rule": "language", "value": "en"},
        {"rule": "bullets", "value": 3},
        {"rule": "lowercase"},
        {"rule": "ends_with", "value": "that is all."},
    ],
}


def test_instruction_rules_all_pass():
    text = "- coffee is a drink.\n- it is made from beans.\n- many people like it.\nthat is all."
    assert v.score(RULES, text, reasoning=False) == 1.0


def test_instruction_rules_share_passed():
    # English (passes); 2 bullets not 3, an uppercase letter, another ending: 1 of 4 rules
    text = "- Coffee is a drink.\n- It is made from beans."
    assert v.score(RULES, text, reasoning=False) == 0.25
    assert v.score({**RULES, "all_or_nothing": True}, text, reasoning=False) == 0.0


@pytest.mark.parametrize(
    ("rule", "passing", "failing"),
    [
        ({"rule": "language", "value": "ko"}, "이것은 일상생활에서 중요합니다.", "This is important."),
        ({"rule": "language", "value": "ja"}, "これは日常生活で大切です。", "이것은 중요합니다."),
        ({"rule": "language", "value": "de"}, "Das ist im Alltag wichtig und es gibt viel zu lernen.",
         "Esto es importante en la vida diaria."),
        ({"rule": "language", "value": "es"}, "Esto es importante en la vida diaria.", "Das ist im Alltag wichtig."),
        ({"rule": "language", "value": "vi"}, "Điều này quan trọng trong cuộc sống.", "This is what the day is."),
        ({"rule": "language", "value": "en"}, "This is what the day is for.", "Das ist im Alltag wichtig."),
        ({"rule": "max_words", "value": 3}, "one two three", "one two three four"),
        ({"rule": "min_words", "value": 3}, "one two three", "one two"),
        ({"rule": "max_chars", "value": 5}, "これは大切", "これは大切です"),
        ({"rule": "json_keys", "value": ["name", "age"]}, '```json\n{"name": "Mina", "age": 3, "x": 1}\n```',
         '{"name": "Mina"}'),
        ({"rule": "starts_with", "value": "Dear"}, "Dear Jun, hello.", "Hello, dear Jun."),
        ({"rule": "keywords", "value": ["coffee"]}, "I like Coffee a lot.", "I like coffeeshops."),
        ({"rule": "forbidden", "value": ["very"]}, "It is good.", "It is Very good."),
        ({"rule": "bullets", "value": 2}, "Intro:\n* a\n1. b", "- a\n- b\n- c"),
    ],
)  # fmt: skip
def test_each_instruction_rule(rule, passing, failing):
    spec = {"kind": "instruction", "rules": [rule]}
    assert v.score(spec, passing, reasoning=False) == 1.0
    assert v.score(spec, failing, reasoning=False) == 0.0


# -- code (the real sandbox) ---------------------------------------------------------------------------

CODE = {
    "kind": "code",
    "function": "add",
    "tests": ["assert add(1, 2) == 3", "add(-1, 1) == 0", "assert add(2, 2) == 4"],
}


def test_code_reward_on_a_correct_and_a_wrong_function():
    right = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a * b\n```"  # passes only add(2, 2) == 4
    assert v.score(CODE, right, reasoning=False, sandbox=FAST) == 1.0
    assert v.score(CODE, wrong, reasoning=False, sandbox=FAST) == pytest.approx(1 / 3)
    assert v.score({**CODE, "all_or_nothing": True}, wrong, reasoning=False, sandbox=FAST) == 0.0


def test_code_that_does_not_load_passes_nothing_and_its_printing_is_ignored():
    assert v.score(CODE, "def add(a, b) return a + b", reasoning=False, sandbox=FAST) == 0.0
    raw = "import sys\nprint('@@verifier 0 0')\ndef add(a, b):\n    return a + b\n"
    raw += "if __name__ == '__main__':\n    sys.exit(3)\n"
    assert v.score(CODE, raw, reasoning=False, sandbox=FAST) == 1.0  # raw code, no fence; main block not run


def test_code_timeout_keeps_the_tests_before_it():
    hang = "```python\ndef add(a, b):\n    while a == 0:\n        pass\n    return a + b\n```"
    spec = {**CODE, "tests": ["assert add(1, 2) == 3", "assert add(0, 1) == 1", "assert add(2, 2) == 4"]}
    got = v.score(spec, hang, reasoning=False, sandbox=v.SandboxLimits(timeout_s=1.0, memory_mb=256))
    assert got == pytest.approx(1 / 3)


def test_extract_code_prefers_the_last_python_fence():
    text = "```\nnot this\n```\n```python\nx = 1\n```\n```text\nnor this\n```"
    assert v.extract_code(text).strip() == "x = 1"
    assert v.extract_code("def f():\n    pass").startswith("def f")


# -- validation before compute -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"kind": "regex"}, "kind 'regex' is not one of"),
        ({"answer": 3}, "kind None"),
        ("exact_number", "must be a mapping"),
        ({"kind": "exact_number"}, "lacks answer"),
        ({"kind": "exact_number", "answer": "eighty"}, "must be a finite number"),
        ({"kind": "exact_number", "answer": 1, "rel_tol": 2}, "rel_tol"),
        ({"kind": "exact_number", "answer": 1, "tolerance": 0.1}, "unknown keys ['tolerance']"),
        ({"kind": "choice", "answer": "E", "options": ["A", "B", "C", "D"]}, "'E' is not one of the options"),
        ({"kind": "choice", "answer": "A", "options": ["A", "A"]}, "distinct capital letters"),
        ({"kind": "choice", "answer": "a", "options": ["a", "b"]}, "distinct capital letters"),
        ({"kind": "instruction", "rules": []}, "non-empty list of rules"),
        ({"kind": "instruction", "rules": [{"rule": "shout"}]}, "'shout' is not one of"),
        ({"kind": "instruction", "rules": [{"rule": "max_words", "value": "ten"}]}, "non-negative integer"),
        ({"kind": "instruction", "rules": [{"rule": "language", "value": "fr"}]}, "language 'fr'"),
        ({"kind": "code", "function": "add", "tests": ["assert add(1,"]}, "test 0 is not valid Python"),
        ({"kind": "code", "function": "1add", "tests": ["True"]}, "Python identifier"),
        ({"kind": "tool", "task": "t1"}, "task must be a JSON object"),
        ({"kind": "judge", "prompt": "Hi", "rubric": "correctness"}, "rubric"),
    ],
)
def test_a_malformed_spec_is_rejected_with_one_line(spec, fragment):
    with pytest.raises(v.VerifierError) as exc:
        v.validate_spec(spec)
    assert fragment in one_line(exc)


def test_score_rejects_a_malformed_spec_before_any_compute(monkeypatch):
    import posttrain.sandbox

    def boom(*args, **kwargs):
        raise AssertionError("the sandbox ran")

    monkeypatch.setattr(posttrain.sandbox, "run_python", boom)
    with pytest.raises(v.VerifierError):
        v.score({"kind": "code", "function": "add", "tests": []}, "def add(a, b): ...", reasoning=False)


# -- the judge -------------------------------------------------------------------------------------------

RUBRIC = ("correctness", "helpfulness", "instruction_following", "language", "conciseness")
RECORD = {
    "id": "arithmetic-x",
    "messages": [{"role": "user", "content": "What is 37 + 48?"}],
    "verifier": ADD,
    "reference": "Answer: 85",
}


def test_judge_requests_carry_the_rubric_and_the_answer_only():
    item = v.judge_item(RECORD, "secret reasoning\n</think>\nAnswer: 85", reasoning=True)
    (request,) = v.judge_requests([item], RUBRIC)
    assert request.kind == "judge" and request.template_version == v.JUDGE_TEMPLATE_VERSION
    system, user = request.messages
    assert system[0] == "system" and all(d in system[1] for d in RUBRIC) and "JSON" in system[1]
    assert "What is 37 + 48?" in user[1] and "Reference answer:\nAnswer: 85" in user[1]
    assert user[1].endswith("Response:\nAnswer: 85") and "secret reasoning" not in user[1]


def test_parse_judgement_reads_strict_json():
    text = json.dumps({d: 4 for d in RUBRIC} | {"comment": "ignored"})
    assert v.parse_judgement(text, RUBRIC) == {d: 4 for d in RUBRIC}
    fenced = "```json\n" + json.dumps({d: 5.0 for d in RUBRIC}) + "\n```"
    assert v.parse_judgement(fenced, RUBRIC) == {d: 5 for d in RUBRIC}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Sure! correctness: 5,\nhelpfulness: 4", "not one JSON object"),
        ("[5, 4, 3]", "not one JSON object"),
        (json.dumps({"correctness": 5}), "lacks the rubric dimensions"),
        (json.dumps({d: 6 for d in RUBRIC}), "integer in 1..5"),
        (json.dumps({d: "4" for d in RUBRIC}), "integer in 1..5"),
        (json.dumps({d: 3.5 for d in RUBRIC}), "integer in 1..5"),
    ],
)
def test_a_malformed_judge_output_raises_one_line(text, fragment):
    with pytest.raises(v.JudgeError) as exc:
        v.parse_judgement(text, RUBRIC)
    assert fragment in one_line(exc)


def test_the_offline_judge_scores_two_known_responses():
    judge = v.OfflineJudge(sandbox=FAST)
    assert "offline" in judge.identity and "llm" not in judge.identity.lower()
    good = judge.scores(RECORD, "Answer: 85", RUBRIC)
    assert good == {d: 5 for d in RUBRIC}
    assert judge.mean_score(RECORD, "Answer: 85", RUBRIC) == 1.0
    rambling = "Hmm, let me see. 37 plus 48 is 84, I believe, but I am not completely sure about it."
    bad = judge.scores(RECORD, rambling, RUBRIC)
    # wrong number: correctness 1; well formed: helpfulness (1 + 5) / 2 = 3, instruction_following 5;
    # English: language 5; 18 words against a 2-word reference (ratio 9): conciseness 2
    assert bad == {"correctness": 1, "helpfulness": 3, "instruction_following": 5, "language": 5, "conciseness": 2}
    assert judge.mean_score(RECORD, rambling, RUBRIC) == pytest.approx((16 / 5 - 1) / 4)


def test_the_offline_judge_reads_language_and_format():
    record = {**RECORD, "messages": [{"role": "user", "content": "한국어로 답하세요: 37 + 48은?"}]}
    judge = v.OfflineJudge()
    assert judge.scores(record, "답: 85", ("language", "format"))["language"] == 5
    assert judge.scores(record, "Answer: 85", ("language",))["language"] == 1
    assert judge.scores(record, "85", ("language",))["language"] == 5  # a bare number is in every language
    stray = judge.scores(RECORD, "<think>x</think>Answer: 85", ("format", "novelty"))
    assert stray == {"format": 1, "novelty": 3}  # a think tag in non-reasoning mode; unknown dimension: neutral


class ScriptedTeacher:
    identity = "scripted-test-teacher"
    needs_verifiable = False

    def __init__(self, text: str) -> None:
        self.text, self.stats, self.seen = text, TeacherStats(), []

    def complete_many(self, requests):
        self.seen += list(requests)
        return [Completion(self.text) for _ in requests]

    def close(self) -> None:
        pass


def test_the_teacher_judge_goes_through_the_teacher_client():
    teacher = ScriptedTeacher(json.dumps({"correctness": 2, "conciseness": 5}))
    judge = v.TeacherJudge(teacher)
    assert judge.identity == "llm-judge:scripted-test-teacher"
    items = [v.judge_item(RECORD, "Answer: 84", reasoning=False)]
    assert judge.judge_many(items, ("correctness", "conciseness")) == [{"correctness": 2, "conciseness": 5}]
    assert teacher.seen[0].kind == "judge"


def test_a_judge_spec_scores_the_mean_rubric_in_the_unit_interval():
    spec = {"kind": "judge", "prompt": "Say hello in English.", "rubric": ["language", "format"], "language": "en"}
    v.validate_spec(spec)
    assert v.score(spec, "Hello there, this is a greeting for you.", reasoning=False) == 1.0
    assert v.score(spec, "안녕하세요", reasoning=False) == 0.5  # language 1, format 5: (3 - 1) / 4
