"""Agentic tool-use tasks (report §3.3 stage ii): real tools, tasks with a reference solution and an executable
pass criterion, each validated in the sandbox before it is kept.

* Tools: plain Python, each with an OpenAI "function"-style spec (``{"name", "description", "parameters"}``,
  the parameters a JSON Schema): ``calculator`` (an ``ast`` whitelist, no ``eval``), ``convert_units``
  (length, mass, time with exact factors; temperature), ``kv_lookup`` (a key in the task's own table, the
  ``context``), ``date_diff`` / ``date_add`` (ISO dates). ``call_tool`` validates the arguments against the
  schema (``jsonschema`` when importable, else a small checker of the types used here) and returns JSON:
  ``{"result": ...}`` or ``{"error": "..."}``; it never raises on model input.
* A task (``Task``, JSON via ``task_to_json``): the offered tool specs, a system message (the specs and the
  calling convention), the user request, the reference solution (tool calls with their results, and the
  final answer) and ``criterion``: Python that reads ``answer.txt`` (and may read ``transcript.json``) from
  its working directory and exits 0 iff the answer passes. The criterion only ever runs in
  ``posttrain.sandbox`` (it may be teacher-written); the tools run here (they are ours).
* Validation (``validate_task``): every tool offered is a real one with its real spec, the reference calls are
  re-executed (same results, no error), the criterion passes the reference answer and fails trivial answers
  ("", "0", "I don't know" and the request itself). A rejected task keeps its reason.
* Backends: ``programmatic_tasks`` (offline, seeded, deterministic; one- and multi-step tasks whose reference
  results come from calling the tools) and the teacher: ``teacher_request`` asks an LLM for tasks as JSON,
  ``parse_teacher_tasks`` turns its text into tasks or one-line rejections (never raises); both backends go
  through the same validation.
* ``transcript`` is the reference solution as chat messages (``posttrain.chat``'s format) for SFT;
  ``check_answer`` is the RL reward of a tool task (1.0 / 0.0 from the criterion in the sandbox).

**choice**: the programmatic criteria read the *last* number of the answer (or look for the exact ISO date),
so the final answer must come last; the system message says so.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import json
import math
import operator
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from posttrain.sandbox import run_python

# -- the tools ------------------------------------------------------------------------------------------


class ToolError(ValueError):
    """A tool could not answer (bad expression, unknown unit, bad date, missing key); one line."""


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_EXPRESSION = 256  # characters
MAX_MAGNITUDE = 1e18  # any intermediate value beyond this is refused (no 9 ** 9 ** 9)


def _number(value: float) -> int | float:
    """An integral float as an int (470.0 -> 470), else rounded to 10 decimals."""
    value = float(value)
    if not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return int(value) if value.is_integer() else round(value, 10)


def calculator(expression: str) -> int | float:
    """Numbers, + - * / // % **, unary signs and parentheses; thousands separators (2,480) are allowed."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"expression longer than {MAX_EXPRESSION} characters")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", expression)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            value = node.value
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ToolError("exponent larger than 64")
            value = _BINOPS[type(node.op)](left, right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            value = _UNARY[type(node.op)](ev(node.operand))
        else:
            raise ToolError(f"unsupported expression element {type(node).__name__}")
        if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
            raise ToolError("a value is out of range")
        return value

    try:
        return _number(ev(tree))
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("a value is out of range") from None


UNITS: dict[str, dict[str, float]] = {  # exact factors to the base unit of each dimension (SI definitions)
    "length": {"m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001, "mi": 1609.344, "yd": 0.9144, "ft": 0.3048,
               "in": 0.0254},
    "mass": {"kg": 1.0, "g": 0.001, "t": 1000.0, "lb": 0.45359237, "oz": 0.45359237 / 16},
    "time": {"s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0, "week": 604800.0},
}  # fmt: skip
TEMPERATURE = ("C", "F", "K")


def convert_units(value: float, from_unit: str, to_unit: str) -> int | float:
    if from_unit in TEMPERATURE and to_unit in TEMPERATURE:
        kelvin = {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[from_unit]
        return _number({"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[to_unit])
    for table in UNITS.values():
        if from_unit in table and to_unit in table:
            return _number(value * table[from_unit] / table[to_unit])
    raise ToolError(f"cannot convert {from_unit!r} to {to_unit!r}")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ToolError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def date_diff(start: str, end: str) -> int:
    """Days from ``start`` to ``end`` (negative when ``end`` is earlier)."""
    return (_date(end) - _date(start)).days


def date_add(date: str, days: int) -> str:
    try:
        return (_date(date) + dt.timedelta(days=days)).isoformat()
    except OverflowError:
        raise ToolError("the date is out of range") from None


def kv_lookup(key: str, table: Mapping[str, Any]) -> Any:
    if key not in table:
        raise ToolError(f"no key {key!r} in the table")
    return table[key]


def _spec(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": list(properties),
                  "additionalProperties": False}  # fmt: skip
    return {"name": name, "description": description, "parameters": parameters}


_UNIT_NAMES = ", ".join([u for t in UNITS.values() for u in t] + list(TEMPERATURE))
TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "calculator": _spec(
        "calculator",
        "Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
        {"expression": {"type": "string", "description": "for example (17.5 / 100) * 2480 + 36"}},
    ),
    "convert_units": _spec(
        "convert_units",
        f"Convert a value between units of one dimension. Units: {_UNIT_NAMES}.",
        {"value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
    ),
    "kv_lookup": _spec(
        "kv_lookup", "Look up a key in the task's table and return its value.", {"key": {"type": "string"}}
    ),
    "date_diff": _spec(
        "date_diff",
        "Number of days from start to end; dates as YYYY-MM-DD.",
        {"start": {"type": "string", "format": "date"}, "end": {"type": "string", "format": "date"}},
    ),
    "date_add": _spec(
        "date_add",
        "The date a number of days after a date (negative days: before); dates as YYYY-MM-DD.",
        {"date": {"type": "string", "format": "date"},
         "days": {"type": "integer", "minimum": -100000, "maximum": 100000}},
    ),
}  # fmt: skip
TOOL_NAMES = tuple(TOOL_SCHEMAS)

_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "integer": (int,),
                                              "object": (dict,), "boolean": (bool,)}  # fmt: skip


def simple_check(parameters: Mapping[str, Any], arguments: Any) -> str | None:
    """The subset of JSON Schema the tools use (object, properties, required, additionalProperties, types,
    minimum / maximum); None when ``arguments`` fit, else one line. Used when ``jsonschema`` is missing."""
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    props = parameters.get("properties", {})
    missing = [k for k in parameters.get("required", []) if k not in arguments]
    if missing:
        return f"missing argument {missing[0]!r}"
    for key, value in arguments.items():
        if key not in props:
            return f"unknown argument {key!r}"
        spec = props[key]
        kind = spec.get("type")
        if kind and (not isinstance(value, _SIMPLE_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool))):
            return f"argument {key!r} must be of type {kind}"
        if "minimum" in spec and value < spec["minimum"] or "maximum" in spec and value > spec["maximum"]:
            return f"argument {key!r} is out of range"
    return None


@functools.cache
def _validator(name: str) -> Any:
    try:
        import jsonschema
    except ImportError:
        return None
    return jsonschema.Draft202012Validator(TOOL_SCHEMAS[name]["parameters"])


def check_arguments(name: str, arguments: Any) -> str | None:
    """None when ``arguments`` fit the tool's schema, else one line naming the tool and the problem."""
    if name not in TOOL_SCHEMAS:
        return f"unknown tool {name!r} (known: {', '.join(TOOL_NAMES)})"
    validator = _validator(name)
    if validator is None or not isinstance(arguments, dict):
        problem = simple_check(TOOL_SCHEMAS[name]["parameters"], arguments)
    else:
        error = next(iter(sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))), None)
        problem = None if error is None else error.message
    return None if problem is None else f"{name}: {problem}"


def run_tool(name: str, arguments: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> Any:
    """The tool's value (raises ``ToolError`` with one line)."""
    problem = check_arguments(name, arguments)
    if problem:
        raise ToolError(problem)
    a = arguments
    if name == "calculator":
        return calculator(a["expression"])
    if name == "convert_units":
        return convert_units(float(a["value"]), a["from_unit"], a["to_unit"])
    if name == "kv_lookup":
        return kv_lookup(a["key"], (context or {}).get("table") or {})
    if name == "date_diff":
        return date_diff(a["start"], a["end"])
    return date_add(a["date"], int(a["days"]))


def call_tool(name: str, arguments: Any, context: Mapping[str, Any] | None = None) -> str:
    """The tool's JSON result ``{"result": ...}``, or ``{"error": "..."}``; never raises on model input.
    ``context``: the task's data (``{"table": {...}}`` for ``kv_lookup``)."""
    try:
        result = run_tool(name, arguments, context)
    except ToolError as exc:
        return json.dumps({"error": str(exc)}, ensure_ascii=False)
    return json.dumps({"result": result}, ensure_ascii=False)


# -- tasks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    id: str
    family: str
    seed: int
    tools: tuple[dict[str, Any], ...]  # the offered tools' specs (OpenAI function style)
    system: str  # the system message: the specs and the calling convention
    user: str  # the request
    reference: dict[str, Any]  # {"calls": [{"name", "arguments", "result"}], "answer": str}
    criterion: str  # Python run in the sandbox: reads answer.txt (and transcript.json), exits 0 iff it passes
    context: dict[str, Any]  # the tools' data: {"table": {...}} for kv_lookup

    @property
    def calls(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.reference.get("calls", ()))

    @property
    def reference_answer(self) -> str:
        return str(self.reference.get("answer", ""))

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(str(t.get("name")) for t in self.tools)


def system_message(tool_names: Sequence[str]) -> str:
    specs = "\n".join(json.dumps(TOOL_SCHEMAS[n], ensure_ascii=False) for n in tool_names)
    return (
        "You can call these tools (JSON Schema specs, one per line):\n"
        f"{specs}\n"
        'Call a tool by writing <tool_call>{"name": ..., "arguments": {...}}</tool_call>; its JSON result comes '
        "back in a tool turn. Use the tools for every computation and lookup. When you have the result, reply "
        "in one sentence that ends with the final answer (dates as YYYY-MM-DD)."
    )


def make_task(
    id: str,
    family: str,
    seed: int,
    user: str,
    calls: Sequence[Mapping[str, Any]],
    answer: str,
    criterion: str,
    *,
    context: Mapping[str, Any] | None = None,
    tools: Sequence[str] | None = None,
) -> Task:
    """A task from its parts; each call's result is computed here by calling the real tool."""
    ctx = dict(context or {})
    names = list(tools) if tools is not None else list(dict.fromkeys(c["name"] for c in calls))
    done = [{"name": c["name"], "arguments": dict(c["arguments"]), "result": call_tool(c["name"], c["arguments"], ctx)}
            for c in calls]  # fmt: skip
    return Task(
        id=id,
        family=family,
        seed=seed,
        tools=tuple(TOOL_SCHEMAS[n] for n in names),
        system=system_message(names),
        user=user,
        reference={"calls": done, "answer": answer},
        criterion=criterion,
        context=ctx,
    )


def task_to_json(task: Task) -> dict[str, Any]:
    """The task as JSON; ``reference_answer`` repeats ``reference.answer`` for readers that need only it."""
    return {
        "id": task.id,
        "family": task.family,
        "seed": task.seed,
        "tools": [dict(t) for t in task.tools],
        "system": task.system,
        "user": task.user,
        "reference": {"calls": [dict(c) for c in task.calls], "answer": task.reference_answer},
        "reference_answer": task.reference_answer,
        "criterion": task.criterion,
        "context": dict(task.context),
    }


def task_from_json(raw: Mapping[str, Any]) -> Task:
    """The inverse of ``task_to_json`` (raises ``KeyError`` / ``TypeError`` / ``ValueError`` on a bad dict)."""
    reference = raw["reference"]
    if "reference_answer" in raw and raw["reference_answer"] != reference["answer"]:
        raise ValueError(f"task {raw['id']}: reference_answer differs from reference.answer")
    tools = tuple(TOOL_SCHEMAS[t] if isinstance(t, str) else dict(t) for t in raw["tools"])
    return Task(
        id=str(raw["id"]),
        family=str(raw["family"]),
        seed=int(raw.get("seed", 0)),
        tools=tools,
        system=str(raw.get("system") or system_message([str(t["name"]) for t in tools])),
        user=str(raw["user"]),
        reference={"calls": [dict(c) for c in reference["calls"]], "answer": str(reference["answer"])},
        criterion=str(raw["criterion"]),
        context=dict(raw.get("context") or {}),
    )


# -- criteria -------------------------------------------------------------------------------------------

NUMBER_PATTERN = r"(?<![\d.])-?\d+(?:,\d{3})*(?:\.\d+)?"


def number_criterion(expected: float, tolerance: float) -> str:
    """Passes when the answer's last number is within ``tolerance`` of ``expected``."""
    return (
        "import re, sys\n"
        "text = open('answer.txt', encoding='utf-8').read()\n"
        f"nums = re.findall({NUMBER_PATTERN!r}, text)\n"
        f"ok = bool(nums) and abs(float(nums[-1].replace(',', '')) - {float(expected)!r}) <= {float(tolerance)!r}\n"
        "sys.exit(0 if ok else 1)\n"
    )


def text_criterion(expected: str) -> str:
    """Passes when the answer contains ``expected`` (case-insensitive)."""
    return (
        "import sys\n"
        "text = open('answer.txt', encoding='utf-8').read().lower()\n"
        f"sys.exit(0 if {expected.lower()!r} in text else 1)\n"
    )


# -- the offline programmatic backend -------------------------------------------------------------------

FAMILIES = ("percent", "units", "date_diff", "date_add", "lookup", "lookup_total", "units_total")
_ITEMS = ("bolts", "nuts", "gears", "belts", "valves", "pumps", "seals", "hinges", "springs", "washers")
_UNIT_PAIRS = (("mi", "km"), ("lb", "kg"), ("ft", "m"), ("F", "C"), ("in", "cm"), ("oz", "g"), ("h", "min"))


def _value(call_json: str) -> Any:
    return json.loads(call_json)["result"]


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.10g}"


def _programmatic(family: str, seed: int, index: int) -> Task:
    rng = random.Random(f"tool_tasks/{seed}/{index}")
    tid = f"tool-{family}-{seed}-{index}"

    def task(user: str, calls: list[dict], answer: str, criterion: str, **kw: Any) -> Task:
        return make_task(tid, family, seed, user, calls, answer, criterion, **kw)

    if family == "percent":
        pct, base, plus = rng.choice([5, 12.5, 17.5, 20, 35, 7.25]), rng.randint(100, 9000), rng.randint(1, 99)
        call = {"name": "calculator", "arguments": {"expression": f"{pct} / 100 * {base} + {plus}"}}
        value = _value(call_tool(call["name"], call["arguments"]))
        return task(f"What is {pct}% of {base:,} plus {plus}?", [call],
                    f"{pct}% of {base:,} plus {plus} is {_fmt(value)}.", number_criterion(value, 1e-6))  # fmt: skip
    if family == "units":
        value = rng.randint(2, 90) + rng.choice([0, 0.25, 0.5, 0.75])
        src, dst = rng.choice(_UNIT_PAIRS)
        call = {"name": "convert_units", "arguments": {"value": value, "from_unit": src, "to_unit": dst}}
        got = round(_value(call_tool(call["name"], call["arguments"])), 2)
        return task(f"Convert {value} {src} to {dst}, rounded to 2 decimals.", [call],
                    f"{value} {src} is {got:.2f} {dst}.", number_criterion(got, 0.006))  # fmt: skip
    if family in ("date_diff", "date_add"):
        start = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randint(0, 700))
        days = rng.randint(3, 400)
        if family == "date_diff":
            end = (start + dt.timedelta(days=days)).isoformat()
            call = {"name": "date_diff", "arguments": {"start": start.isoformat(), "end": end}}
            n = _value(call_tool(call["name"], call["arguments"]))
            return task(f"How many days are there from {start.isoformat()} to {end}?", [call],
                        f"From {start.isoformat()} to {end} there are {n} days.", number_criterion(n, 0))  # fmt: skip
        call = {"name": "date_add", "arguments": {"date": start.isoformat(), "days": days}}
        when = _value(call_tool(call["name"], call["arguments"]))
        return task(f"What date is {days} days after {start.isoformat()}? Answer as YYYY-MM-DD.", [call],
                    f"{days} days after {start.isoformat()} is {when}.", text_criterion(when))  # fmt: skip
    if family in ("lookup", "lookup_total"):
        items = rng.sample(_ITEMS, 5)
        context = {"table": {item: rng.randint(3, 900) for item in items}}
        listing = ", ".join(items)
        if family == "lookup":
            key = rng.choice(items)
            call = {"name": "kv_lookup", "arguments": {"key": key}}
            n = _value(call_tool(call["name"], call["arguments"], context))
            user = f"The warehouse table has stock counts for {listing}. How many {key} are in stock?"
            return task(user, [call], f"There are {n} {key} in stock.", number_criterion(n, 0), context=context)
        a, b = rng.sample(items, 2)
        ca, cb = ({"name": "kv_lookup", "arguments": {"key": k}} for k in (a, b))
        na, nb = (_value(call_tool(c["name"], c["arguments"], context)) for c in (ca, cb))
        total = {"name": "calculator", "arguments": {"expression": f"{na} + {nb}"}}
        n = _value(call_tool(total["name"], total["arguments"]))
        user = f"The warehouse table has stock counts for {listing}. How many {a} and {b} are in stock together?"
        return task(user, [ca, cb, total], f"Together there are {n} {a} and {b} in stock.", number_criterion(n, 0),
                    context=context)  # fmt: skip
    if family == "units_total":
        lb, kg = rng.randint(2, 60) + 0.5, rng.randint(1, 40)
        conv = {"name": "convert_units", "arguments": {"value": lb, "from_unit": "lb", "to_unit": "kg"}}
        in_kg = _value(call_tool(conv["name"], conv["arguments"]))
        add = {"name": "calculator", "arguments": {"expression": f"{in_kg} + {kg}"}}
        n = round(_value(call_tool(add["name"], add["arguments"])), 2)
        user = f"One parcel weighs {lb} lb and another {kg} kg. What is their total weight in kg, to 2 decimals?"
        return task(user, [conv, add], f"Together they weigh {n:.2f} kg.", number_criterion(n, 0.006))
    raise ValueError(f"unknown tool task family {family!r} (known: {', '.join(FAMILIES)})")


def programmatic_tasks(n: int, seed: int) -> list[Task]:
    """``n`` offline tasks cycling over ``FAMILIES``; task ``i`` depends only on (seed, i), so a longer list
    extends a shorter one."""
    if n < 0:
        raise ValueError(f"programmatic_tasks needs n >= 0 (got {n})")
    return [_programmatic(FAMILIES[i % len(FAMILIES)], seed, i) for i in range(n)]


# -- validation and the reward ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskVerdict:
    task_id: str
    kept: bool
    reason: str  # "" when kept, else one line


TRIVIAL_ANSWERS = ("", "0", "I don't know")


def _criterion_files(task: Task, answer_text: str, messages: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    if messages is None:
        messages = [{"role": "user", "content": task.user}, {"role": "assistant", "content": answer_text}]
    return {"answer.txt": answer_text, "transcript.json": json.dumps(list(messages), ensure_ascii=False)}


def run_criterion(
    task: Task,
    answer_text: str,
    *,
    timeout_s: float,
    memory_mb: int,
    messages: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """ "" when the criterion passes ``answer_text`` in the sandbox, else the sandbox's one-line reason.
    ``transcript.json`` holds ``messages`` (default: the request and the answer as two chat turns)."""
    files = _criterion_files(task, answer_text, messages)
    return run_python(task.criterion, timeout_s=timeout_s, memory_mb=memory_mb, files=files).reason


def check_answer(
    task: Task,
    answer_text: str,
    *,
    timeout_s: float,
    memory_mb: int,
    messages: Sequence[Mapping[str, Any]] | None = None,
) -> float:
    """1.0 when the task's criterion passes ``answer_text`` in the sandbox, else 0.0 (the RL reward)."""
    return 0.0 if run_criterion(task, answer_text, timeout_s=timeout_s, memory_mb=memory_mb, messages=messages) else 1.0


def static_problem(task: Task) -> str | None:
    """Checks that need no sandbox: real tools with their real specs, reference calls that reproduce."""
    for spec in task.tools:
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if name not in TOOL_SCHEMAS:
            return f"tool {name!r} is not a real tool (known: {', '.join(TOOL_NAMES)})"
        if dict(spec) != TOOL_SCHEMAS[name]:
            return f"tool {name!r}: the spec differs from the real tool's"
    if not task.calls:
        return "the reference solution calls no tool"
    for i, call in enumerate(task.calls):
        if call.get("name") not in task.tool_names:
            return f"reference call {i} uses {call.get('name')!r}, which the task does not offer"
        again = call_tool(call["name"], call.get("arguments"), task.context)
        if "error" in json.loads(again):
            return f"reference call {i} ({call['name']}) fails: {json.loads(again)['error']}"
        if json.loads(again) != json.loads(call.get("result") or "null"):
            return f"reference call {i} ({call['name']}) gives {again}, not {call.get('result')}"
    if not task.reference_answer.strip():
        return "the reference answer is empty"
    try:
        compile(task.criterion, "criterion", "exec")
    except SyntaxError as exc:
        return f"the criterion is not valid Python: {exc.msg} (line {exc.lineno})"
    return None


def validate_task(task: Task, *, timeout_s: float, memory_mb: int) -> TaskVerdict:
    """Kept iff the static checks hold, the criterion passes the reference answer and fails trivial ones."""
    problem = static_problem(task)
    if problem:
        return TaskVerdict(task.id, False, problem)
    reason = run_criterion(task, task.reference_answer, timeout_s=timeout_s, memory_mb=memory_mb)
    if reason:
        return TaskVerdict(task.id, False, f"the criterion fails the reference answer ({reason})")
    for trivial in (*TRIVIAL_ANSWERS, task.user):
        if not run_criterion(task, trivial, timeout_s=timeout_s, memory_mb=memory_mb):
            return TaskVerdict(task.id, False, f"the criterion passes the trivial answer {trivial[:60]!r}")
    return TaskVerdict(task.id, True, "")


def validate_tasks(tasks: Sequence[Task], *, timeout_s: float, memory_mb: int, workers: int = 1) -> list[TaskVerdict]:
    """Verdicts in the order of ``tasks``; ``workers`` > 1 runs that many sandboxes at a time (threads)."""
    check = functools.partial(validate_task, timeout_s=timeout_s, memory_mb=memory_mb)
    if workers <= 1:
        return [check(t) for t in tasks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(check, tasks))


def transcript(task: Task) -> list[dict[str, Any]]:
    """The reference solution as chat messages (``posttrain.chat``): system (tool specs), user, then per
    reference call an assistant turn with the call and a tool turn with its JSON result, then the answer."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": task.system},
        {"role": "user", "content": task.user},
    ]
    for call in task.calls:
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"name": call["name"], "arguments": dict(call["arguments"])}]})  # fmt: skip
        messages.append({"role": "tool", "content": call["result"]})
    messages.append({"role": "assistant", "content": task.reference_answer})
    return messages


# -- the teacher backend (an LLM writes tasks; the same validation keeps them) ---------------------------

TEACHER_TEMPLATE_VERSION = "tool-tasks-v1"
TEACHER_KEYS = {"id", "family", "tools", "user", "calls", "answer", "criterion", "table"}


def teacher_messages(n: int, *, seed: int = 0, tools: Sequence[str] = TOOL_NAMES) -> tuple[tuple[str, str], ...]:
    """The (role, content) chat asking for ``n`` tasks over ``tools`` as a JSON list."""
    specs = "\n".join(json.dumps(TOOL_SCHEMAS[t], ensure_ascii=False) for t in tools)
    system = (
        "You write tool-use tasks for training an assistant. The assistant can call only these tools "
        f"(JSON Schema specs):\n{specs}"
    )
    user = (
        f"Write {n} varied tasks (batch {seed}) that need one to three tool calls each. Reply with only a JSON "
        "list; each item is an object with exactly these keys:\n"
        '- "id": a short unique string;\n- "family": a short topic label;\n'
        '- "tools": the names of the tools the task offers;\n'
        '- "user": the request, self-contained (give any table the task relies on in words);\n'
        '- "table": an object of key -> value for kv_lookup (use {} when kv_lookup is not offered);\n'
        '- "calls": the reference solution, a list of {"name": ..., "arguments": {...}} in order;\n'
        '- "answer": the final answer, one sentence ending with the result;\n'
        '- "criterion": Python 3 (standard library only, no network) that reads answer.txt from the current '
        "directory and exits with status 0 if and only if the answer is right; it must reject an empty answer, "
        '"0", "I don\'t know" and the request itself.'
    )
    return (("system", system), ("user", user))


def teacher_request(n: int, *, seed: int = 0, tools: Sequence[str] = TOOL_NAMES) -> Any:
    """A ``synthetic.teacher.TeacherRequest`` (kind ``tool_tasks``) for the project's teacher client."""
    from synthetic.teacher import TeacherRequest

    return TeacherRequest("tool_tasks", teacher_messages(n, seed=seed, tools=tools), TEACHER_TEMPLATE_VERSION)


def _json_list(text: str) -> list[Any]:
    fenced = re.search(r"```(?:json)?\s*\n(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end < start:
        raise ValueError("the teacher output holds no JSON list")
    try:
        raw = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the teacher output is not valid JSON: {exc.msg} at character {exc.pos}") from None
    return raw


def _same(claimed: Any, real: Any) -> bool:
    if isinstance(claimed, (int, float)) and isinstance(real, (int, float)) and not isinstance(claimed, bool):
        return math.isclose(claimed, real, rel_tol=1e-6, abs_tol=1e-9)
    return str(claimed) == str(real)


def _teacher_task(item: Any, seed: int, seen: set[str]) -> Task:
    """One item as a task, or ``ValueError`` with a one-line reason."""
    if not isinstance(item, dict):
        raise ValueError(f"item is a {type(item).__name__}, not an object")
    missing = sorted(TEACHER_KEYS - {"table", "family"} - set(item))
    if missing:
        raise ValueError(f"missing keys {missing}")
    extra = sorted(set(item) - TEACHER_KEYS)
    if extra:
        raise ValueError(f"unknown keys {extra}")
    for key in ("id", "user", "answer", "criterion"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise ValueError(f"{key!r} must be a non-empty string")
    tid = f"teacher-{seed}-{item['id'].strip()}"
    if tid in seen:
        raise ValueError(f"duplicate id {item['id']!r}")
    tools = item["tools"]
    if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
        raise ValueError("'tools' must be a non-empty list of tool names")
    unknown = [t for t in tools if t not in TOOL_SCHEMAS]
    if unknown:
        raise ValueError(f"unknown tools {unknown} (known: {', '.join(TOOL_NAMES)})")
    table = item.get("table", {})
    if not isinstance(table, dict) or not all(isinstance(v, (str, int, float)) for v in table.values()):
        raise ValueError("'table' must be an object of strings or numbers")
    calls = item["calls"]
    if not isinstance(calls, list) or not calls:
        raise ValueError("'calls' must be a non-empty list")
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or set(call) - {"name", "arguments", "result"} or "name" not in call:
            raise ValueError(f"call {i} must be an object with name and arguments")
        if call["name"] not in tools:
            raise ValueError(f"call {i} uses {call['name']!r}, which the task does not offer")
        problem = check_arguments(call["name"], call.get("arguments"))
        if problem:
            raise ValueError(f"call {i}: {problem}")
        got = json.loads(call_tool(call["name"], call["arguments"], {"table": table}))
        if "error" in got:
            raise ValueError(f"call {i} ({call['name']}) fails: {got['error']}")
        if "result" in call and not _same(call["result"], got["result"]):
            raise ValueError(
                f"call {i} ({call['name']}): the teacher says {call['result']!r}, the tool {got['result']!r}"
            )
    try:
        compile(item["criterion"], "criterion", "exec")
    except SyntaxError as exc:
        raise ValueError(f"the criterion is not valid Python: {exc.msg} (line {exc.lineno})") from None
    family = item.get("family", "teacher")
    return make_task(
        tid,
        f"teacher/{family}" if isinstance(family, str) and family.strip() else "teacher",
        seed,
        item["user"].strip(),
        [{"name": c["name"], "arguments": c["arguments"]} for c in calls],
        item["answer"].strip(),
        item["criterion"],
        context={"table": table} if table else {},
        tools=tools,
    )


def teacher_tasks(
    complete_many: Callable[[Sequence[Any]], Sequence[Any]], n: int, per_request: int
) -> tuple[list[Task], list[dict[str, Any]]]:
    """``n`` tasks asked of the teacher in requests of ``per_request`` (request ``b`` is batch ``b``: its own
    seed, so task ids never collide across requests), each reply parsed by ``parse_teacher_tasks``.
    ``complete_many``: the teacher client's (``Completion.text`` per request, cached and retried there).
    Returns the parsed tasks (still to be validated in the sandbox) and the rejections, each with its batch."""
    if n < 1 or per_request < 1:
        raise ValueError(f"teacher_tasks needs n >= 1 and per_request >= 1 (got {n}, {per_request})")
    sizes = [min(per_request, n - start) for start in range(0, n, per_request)]
    completions = complete_many([teacher_request(size, seed=b) for b, size in enumerate(sizes)])
    tasks: list[Task] = []
    rejected: list[dict[str, Any]] = []
    for b, completion in enumerate(completions):
        kept, bad = parse_teacher_tasks(completion.text, seed=b)
        tasks += kept[: sizes[b]]
        rejected += [{**r, "batch": b} for r in bad]
        extra = kept[sizes[b] :]
        rejected += [{"index": None, "id": t.id, "batch": b, "reason": "more tasks than asked"} for t in extra]
    return tasks, rejected


def parse_teacher_tasks(text: str, *, seed: int = 0) -> tuple[list[Task], list[dict[str, Any]]]:
    """Tasks from the teacher's reply (tool results computed here by the real tools), and rejections
    ``{"index", "id", "reason"}`` with a one-line reason; malformed output never raises. The kept tasks still
    need ``validate_tasks`` (the sandbox checks)."""
    try:
        raw = _json_list(text)
    except ValueError as exc:
        return [], [{"index": None, "id": None, "reason": str(exc)}]
    if not isinstance(raw, list) or not raw:
        return [], [{"index": None, "id": None, "reason": "the teacher output holds no tasks (an empty list)"}]
    tasks: list[Task] = []
    rejected: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        try:
            task = _teacher_task(item, seed, seen)
        except ValueError as exc:
            ident = item.get("id") if isinstance(item, dict) else None
            rejected.append({"index": index, "id": ident, "reason": str(exc)})
            continue
        seen.add(task.id)
        tasks.append(task)
    return tasks, rejected


__all__ = [
    "FAMILIES",
    "TOOL_NAMES",
    "TOOL_SCHEMAS",
    "Task",
    "TaskVerdict",
    "ToolError",
    "call_tool",
    "check_answer",
    "check_arguments",
    "make_task",
    "parse_teacher_tasks",
    "teacher_tasks",
    "programmatic_tasks",
    "run_criterion",
    "task_from_json",
    "task_to_json",
    "teacher_messages",
    "teacher_request",
    "transcript",
    "validate_task",
    "validate_tasks",
]
