"""tool_use_tasks with the HTTP teacher (a real chat-completions server on 127.0.0.1): the tasks are asked for
in requests of ``posttrain.tool_tasks.tasks_per_request``, parsed strictly, run in the sandbox, and kept only
when the reference passes and trivial answers fail; what the teacher got wrong is kept with its reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from kexaone_dag.definitions import build_definitions
from tests.chat_server import ChatServer
from tests.conftest import private_demo_env

pytestmark = pytest.mark.timeout(300)

CRITERION = """import re, sys
text = open("answer.txt").read()
numbers = [float(x.replace(",", "")) for x in re.findall(r"-?\\d[\\d,]*(?:\\.\\d+)?", text)]
sys.exit(0 if numbers and abs(numbers[-1] - {value}) < 1e-6 else 1)
"""


def teacher(messages: list[dict]) -> str:
    """What a teacher model writes: a fenced JSON list of the tasks asked for. In every batch one task's
    criterion accepts any answer (the sandbox must reject it); batch 0 also offers a tool that does not exist."""
    n, batch = map(int, re.search(r"Write (\d+) varied tasks \(batch (\d+)\)", messages[-1]["content"]).groups())
    items = []
    for i in range(n):
        a, b = 12 + 7 * batch + i, 31 + 3 * i
        items.append(
            {
                "id": f"mul-{i}",
                "family": "arithmetic",
                "tools": ["calculator"],
                "user": f"A crate holds {a} boxes of {b} bolts. How many bolts are in the crate?",
                "table": {},
                "calls": [{"name": "calculator", "arguments": {"expression": f"{a} * {b}"}}],
                "answer": f"The crate holds {a * b} bolts.",
                "criterion": CRITERION.format(value=a * b) if i else "import sys\nsys.exit(0)\n",
            }
        )
    if batch == 0:
        items[-1] = {**items[-1], "tools": ["web_search"]}
    return "Here are the tasks:\n```json\n" + json.dumps(items, indent=1) + "\n```"


def test_the_http_teacher_writes_tool_tasks_that_are_checked_in_the_sandbox(tmp_path):
    with private_demo_env(tmp_path) as env, ChatServer(teacher) as server:
        env.setenv("KEXAONE_TEACHER_BASE_URL", server.url)
        env.setenv("KEXAONE_TEACHER_MODEL", "teacher-test")
        env.setenv("KEXAONE_TEACHER_API_KEY", "test-key")
        with DagsterInstance.ephemeral() as instance:
            result = (
                build_definitions()
                .resolve_job_def("data")
                .execute_in_process(instance=instance, asset_selection=[AssetKey("tool_use_tasks")])
            )
    assert result.success
    md = result.asset_materializations_for_node("tool_use_tasks")[0].metadata
    folder = Path(md["dagster/uri"].value)
    kept = [json.loads(x) for x in (folder / "tasks.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (folder / "rejected.jsonl").read_text().splitlines()]
    # tiny: 24 tasks, 4 per request -> 6 requests; per batch 3 good tasks, one lax criterion; batch 0 one bad tool
    assert server.attempts == 6 and md["backend"].value == "http:teacher-test"
    assert len(kept) == md["tasks"].value == 6 * 3 - 1 and len(rejected) == md["rejected"].value == 7
    assert all(t["family"] == "teacher/arithmetic" and t["reference"]["calls"][0]["result"] for t in kept)
    assert len({t["id"] for t in kept}) == len(kept)  # batch-scoped ids: no collision across requests
    reasons = [r["reason"] for r in rejected]
    assert sum("trivial answer" in r for r in reasons) == 6, reasons
    assert any("unknown tools ['web_search']" in r for r in reasons), reasons
