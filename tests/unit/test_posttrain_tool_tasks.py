"""Tool-use tasks: the real tools, the programmatic backend, validation in the real sandbox, the teacher
parser's rejections, the SFT transcript and the RL check."""

from __future__ import annotations

import json

import pytest

from posttrain import chat
from posttrain import tool_tasks as tt

LIMITS = {"timeout_s": 5.0, "memory_mb": 256}


def result(name: str, arguments: object, context: dict | None = None) -> object:
    return json.loads(tt.call_tool(name, arguments, context))


# -- the tools ------------------------------------------------------------------------------------------


def test_the_calculator_evaluates_arithmetic_and_nothing_else():
    assert tt.calculator("17.5 / 100 * 2,480 + 36") == 470
    assert tt.calculator("(2 + 3) ** 2 - 7 // 2 % 2") == 24
    assert tt.calculator("1 / 3") == pytest.approx(0.3333333333)
    assert result("calculator", {"expression": "2 ** 10"}) == {"result": 1024}
    for bad, fragment in [
        ("__import__('os').system('true')", "unsupported expression element Call"),
        ("x + 1", "unsupported expression element Name"),
        ("9 ** 9 ** 9", "exponent larger than 64"),
        ("1 / 0", "division by zero"),
        ("2 +", "not an arithmetic expression"),
    ]:
        assert fragment in result("calculator", {"expression": bad})["error"], bad


def test_unit_conversions_use_exact_factors():
    assert tt.convert_units(3.5, "mi", "km") == 5.632704
    assert tt.convert_units(212, "F", "C") == 100
    assert tt.convert_units(1, "lb", "oz") == 16
    assert tt.convert_units(90, "min", "h") == 1.5
    assert result("convert_units", {"value": 1, "from_unit": "kg", "to_unit": "m"}) == {
        "error": "cannot convert 'kg' to 'm'"
    }


def test_dates_and_the_table_lookup():
    assert tt.date_diff("2024-02-10", "2024-03-05") == 24  # 2024 is a leap year
    assert result("date_diff", {"start": "2023-02-10", "end": "2023-03-05"}) == {"result": 23}
    assert result("date_add", {"date": "2024-12-30", "days": 3}) == {"result": "2025-01-02"}
    assert result("date_add", {"date": "30/12/2024", "days": 3}) == {
        "error": "not an ISO date (YYYY-MM-DD): '30/12/2024'"
    }
    table = {"table": {"gears": 12}}
    assert result("kv_lookup", {"key": "gears"}, table) == {"result": 12}
    assert result("kv_lookup", {"key": "cogs"}, table) == {"error": "no key 'cogs' in the table"}


def test_arguments_are_checked_against_the_schema():
    assert result("calculator", {"expression": 3}) == {"error": "calculator: 3 is not of type 'string'"}
    assert "date_diff" in result("date_diff", {"start": "2024-01-01"})["error"]
    assert "'end' is a required property" in result("date_diff", {"start": "2024-01-01"})["error"]
    assert "additional" in result("kv_lookup", {"key": "a", "extra": 1})["error"].lower()
    assert "error" in result("date_add", {"date": "2024-01-01", "days": True})
    assert result("search_web", {"q": "x"})["error"].startswith("unknown tool 'search_web'")
    # the fallback checker (used when jsonschema is missing) agrees on the cases above
    params = tt.TOOL_SCHEMAS["date_add"]["parameters"]
    assert tt.simple_check(params, {"date": "2024-01-01", "days": 3}) is None
    assert tt.simple_check(params, {"date": "2024-01-01"}) == "missing argument 'days'"
    assert tt.simple_check(params, {"date": "2024-01-01", "days": True}) == "argument 'days' must be of type integer"
    assert tt.simple_check(params, {"date": "2024-01-01", "days": 1, "x": 1}) == "unknown argument 'x'"
    assert tt.simple_check(params, {"date": "2024-01-01", "days": 10**9}) == "argument 'days' is out of range"
    for spec in tt.TOOL_SCHEMAS.values():
        assert set(spec) == {"name", "description", "parameters"} and spec["parameters"]["type"] == "object"


# -- programmatic tasks and validation ------------------------------------------------------------------


def test_programmatic_tasks_are_deterministic_and_all_of_seed_0_are_kept():
    tasks = tt.programmatic_tasks(len(tt.FAMILIES) * 2, seed=0)
    assert [t.family for t in tasks[: len(tt.FAMILIES)]] == list(tt.FAMILIES)
    assert tasks == tt.programmatic_tasks(len(tasks), seed=0)
    assert tasks[:3] == tt.programmatic_tasks(3, seed=0)  # task i depends only on (seed, i)
    assert tasks != tt.programmatic_tasks(len(tasks), seed=1)
    assert len({t.id for t in tasks}) == len(tasks)
    verdicts = tt.validate_tasks(tasks, **LIMITS, workers=2)
    assert [v.task_id for v in verdicts] == [t.id for t in tasks]
    assert all(v.kept for v in verdicts), [v.reason for v in verdicts if not v.kept]
    multi = [t for t in tasks if len(t.calls) > 1]
    assert {t.family for t in multi} == {"lookup_total", "units_total"}
    for t in tasks:  # the references are the tools' real results
        for call in t.calls:
            assert call["result"] == tt.call_tool(call["name"], call["arguments"], t.context)


def test_a_known_task_has_concrete_values_and_a_json_round_trip():
    task = tt.programmatic_tasks(1, seed=0)[0]
    assert task.user == "What is 12.5% of 3,459 plus 32?"
    assert task.calls[0]["result"] == '{"result": 464.375}' and task.reference_answer.endswith("464.375.")
    assert task.tool_names == ("calculator",) and task.tools[0] == tt.TOOL_SCHEMAS["calculator"]
    raw = json.loads(json.dumps(tt.task_to_json(task)))
    assert tt.task_from_json(raw) == task and raw["reference_answer"] == task.reference_answer
    with pytest.raises(ValueError, match="reference_answer differs"):
        tt.task_from_json({**raw, "reference_answer": "1"})


def test_check_answer_is_the_criterion_in_the_sandbox():
    task = tt.programmatic_tasks(3, seed=0)[2]  # date_diff: 2023-03-08 -> 2023-12-21
    assert task.family == "date_diff" and task.calls[0]["result"] == '{"result": 288}'
    assert tt.check_answer(task, task.reference_answer, **LIMITS) == 1.0
    assert tt.check_answer(task, "It is 288 days.", **LIMITS) == 1.0
    assert tt.check_answer(task, "It is 287 days.", **LIMITS) == 0.0
    assert tt.check_answer(task, task.user, **LIMITS) == 0.0
    reads = tt.make_task("t", "x", 0, "q?", [{"name": "calculator", "arguments": {"expression": "1+1"}}], "2",
                         "import json, sys\nm = json.load(open('transcript.json'))\n"
                         "sys.exit(0 if m[-1]['content'] == open('answer.txt').read() == '2' else 1)")  # fmt: skip
    assert tt.check_answer(reads, "2", **LIMITS) == 1.0 and tt.check_answer(reads, "3", **LIMITS) == 0.0


def _task(criterion: str, answer: str = "4", **kw: object) -> tt.Task:
    calls = [{"name": "calculator", "arguments": {"expression": "2 + 2"}}]
    return tt.make_task("bad", "x", 0, "What is 2 + 2?", calls, answer, criterion, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        (_task("import sys\nsys.exit(0)"), "the criterion passes the trivial answer ''"),
        (_task("import sys\nsys.exit(0 if open('answer.txt').read() != '' else 1)"),
         "the criterion passes the trivial answer '0'"),
        (_task("import sys\ntext = open('answer.txt').read()\nsys.exit(0 if '4' in text or '2' in text else 1)"),
         "the criterion passes the trivial answer 'What is 2 + 2?'"),
        (_task(tt.number_criterion(5, 0)), "the criterion fails the reference answer (exit code 1)"),
        (_task("while True: pass"), "the criterion fails the reference answer (timeout after 1s)"),
        (_task("if True print(1)"), "the criterion is not valid Python: "),
        (_task(tt.number_criterion(4, 0), answer=" "), "the reference answer is empty"),
        (_task(tt.number_criterion(4, 0), tools=["date_add"]),
         "reference call 0 uses 'calculator', which the task does not offer"),
    ],
)  # fmt: skip
def test_bad_tasks_are_rejected_with_their_reason(task, reason):
    limits = {**LIMITS, "timeout_s": 1.0}
    verdict = tt.validate_task(task, **limits)
    assert verdict.task_id == "bad" and not verdict.kept and verdict.reason.startswith(reason), verdict.reason


def test_tampered_reference_calls_and_fake_tool_specs_are_rejected():
    good = _task(tt.number_criterion(4, 0))
    wrong = {**good.calls[0], "result": '{"result": 5}'}
    tampered = tt.Task(**{**good.__dict__, "reference": {"calls": [wrong], "answer": "4"}})
    assert (
        tt.validate_task(tampered, **LIMITS).reason
        == 'reference call 0 (calculator) gives {"result": 4}, not {"result": 5}'
    )
    fake = {**tt.TOOL_SCHEMAS["calculator"], "description": "anything"}
    spoofed = tt.Task(**{**good.__dict__, "tools": (fake,)})
    assert tt.validate_task(spoofed, **LIMITS).reason == "tool 'calculator': the spec differs from the real tool's"


# -- transcript -------------------------------------------------------------------------------------------


def test_the_transcript_is_the_reference_solution_in_the_chat_format():
    task = next(t for t in tt.programmatic_tasks(7, seed=0) if t.family == "lookup_total")
    messages = tt.transcript(task)
    assert [m["role"] for m in messages] == ["system", "user", *["assistant", "tool"] * 3, "assistant"]
    assert json.dumps(tt.TOOL_SCHEMAS["kv_lookup"]) in messages[0]["content"] and messages[1]["content"] == task.user
    assert messages[2]["tool_calls"] == [{"name": "kv_lookup", "arguments": task.calls[0]["arguments"]}]
    assert messages[3]["content"] == task.calls[0]["result"]
    assert messages[-1] == {"role": "assistant", "content": "Together there are 1267 belts and nuts in stock."}
    text = chat.render(messages)
    assert '<tool_call>{"name": "calculator", "arguments": {"expression": "379 + 888"}}</tool_call>' in text
    assert '<|tool|>{"result": 1267}\n' in text


# -- the teacher backend ------------------------------------------------------------------------------------

GOOD = {
    "id": "trip",
    "family": "travel",
    "tools": ["date_diff", "calculator"],
    "user": "A trip runs from 2024-05-01 to 2024-05-20 and costs 85 euros a day. What is the total cost?",
    "table": {},
    "calls": [
        {"name": "date_diff", "arguments": {"start": "2024-05-01", "end": "2024-05-20"}, "result": 19},
        {"name": "calculator", "arguments": {"expression": "19 * 85"}},
    ],
    "answer": "The trip costs 1615 euros.",
    "criterion": "import re, sys\nnums = re.findall(r'\\d+', open('answer.txt').read())\n"
    "sys.exit(0 if nums and nums[-1] == '1615' else 1)",
}


def test_the_teacher_request_offers_the_real_tools():
    messages = tt.teacher_messages(4, seed=7, tools=["calculator"])
    assert [r for r, _ in messages] == ["system", "user"]
    assert json.dumps(tt.TOOL_SCHEMAS["calculator"]) in messages[0][1] and "date_add" not in messages[0][1]
    request = tt.teacher_request(4, seed=7)
    assert request.kind == "tool_tasks" and request.template_version == tt.TEACHER_TEMPLATE_VERSION
    assert request.messages == tt.teacher_messages(4, seed=7)


def test_teacher_tasks_are_parsed_and_validated():
    text = "Here you go:\n```json\n" + json.dumps([GOOD]) + "\n```"
    tasks, rejected = tt.parse_teacher_tasks(text, seed=3)
    assert rejected == [] and len(tasks) == 1
    task = tasks[0]
    assert (task.id, task.family, task.seed) == ("teacher-3-trip", "teacher/travel", 3)
    assert [c["result"] for c in task.calls] == ['{"result": 19}', '{"result": 1615}']
    assert tt.validate_task(task, **LIMITS) == tt.TaskVerdict("teacher-3-trip", True, "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sorry, I cannot help with that", "the teacher output holds no JSON list"),
        ("[{'id': 'a'}]", "the teacher output is not valid JSON: Expecting property name enclosed in double quotes"),
        ('{"tasks": []}', "the teacher output holds no tasks (an empty list)"),
    ],
)
def test_malformed_teacher_output_is_one_rejection(text, reason):
    tasks, rejected = tt.parse_teacher_tasks(text)
    assert tasks == [] and len(rejected) == 1 and rejected[0]["reason"].startswith(reason)


def test_malformed_teacher_items_are_rejected_one_by_one_with_their_reason():
    call0 = GOOD["calls"][0]
    items = [
        GOOD,
        "not an object",
        {k: v for k, v in GOOD.items() if k != "criterion"},
        {**GOOD, "id": "x1", "tools": ["search_web"]},
        {**GOOD, "id": "x2", "calls": [{**call0, "result": 20}]},
        {**GOOD, "id": "x3", "calls": [{"name": "calculator", "arguments": {"expr": "1"}}]},
        {**GOOD, "id": "x4", "criterion": "def ("},
        {**GOOD, "id": "x5", "answer": ""},
        {**GOOD, "extra": 1},
        GOOD,
    ]
    tasks, rejected = tt.parse_teacher_tasks(json.dumps(items))
    assert [t.id for t in tasks] == ["teacher-0-trip"]
    reasons = {r["index"]: r["reason"] for r in rejected}
    assert reasons.pop(6).startswith("the criterion is not valid Python: ")
    assert reasons == {
        1: "item is a str, not an object",
        2: "missing keys ['criterion']",
        3: "unknown tools ['search_web'] (known: calculator, convert_units, kv_lookup, date_diff, date_add)",
        4: "call 0 (date_diff): the teacher says 20, the tool 19",
        5: "call 0: calculator: 'expression' is a required property",
        7: "'answer' must be a non-empty string",
        8: "unknown keys ['extra']",
        9: "duplicate id 'trip'",
    }
