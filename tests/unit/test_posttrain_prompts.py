"""RL prompts: deterministic families, a held-out split by a stable hash of the id (the same id in the same
split for every seed and count, disjoint from train), duplicates removed with held-out winning, reference
answers that pass their own verifiers, and SFT messages in both modes."""

from __future__ import annotations

import json

import pytest

from posttrain import chat, prompts, verifiers
from posttrain.prompts import ArithmeticParams, Draft

TINY = {"arithmetic": 60, "math_word": 8, "multiple_choice": 8, "code": 4, "instruction": 8, "tool": 4}


def user_text(record: dict) -> str:
    return record["messages"][-1]["content"]


def test_records_are_deterministic_json_with_valid_specs():
    a = prompts.build_prompts(TINY, seed=7, held_out_fraction=0.2)
    b = prompts.build_prompts(TINY, seed=7, held_out_fraction=0.2)
    assert a == b
    assert json.loads(json.dumps(a)) == a
    assert {r["family"]: r["domain"] for r in a} == prompts.DOMAINS
    assert len({r["id"] for r in a}) == len(a)
    for r in a:
        assert set(r) == {"id", "family", "domain", "split", "messages", "verifier", "reference", "reference_reasoning"}
        assert r["messages"][-1]["role"] == "user" and r["split"] in ("train", "held_out")
        verifiers.validate_spec(r["verifier"])
        chat.render(r["messages"], add_generation_prompt=True, reasoning=False)  # renders in the chat format
    assert prompts.split_counts(a)["arithmetic"] == {
        "train": sum(r["split"] == "train" for r in a if r["family"] == "arithmetic"),
        "held_out": sum(r["split"] == "held_out" for r in a if r["family"] == "arithmetic"),
    }


def test_the_arithmetic_family_is_short_exact_two_digit_sums():
    records = prompts.build_prompts({"arithmetic": 50}, seed=1, held_out_fraction=0.2)
    assert len(records) == 50
    for r in records:
        q = user_text(r)
        a, op, b = q.removeprefix("What is ").removesuffix("?").split()
        assert op == "+" and 10 <= int(a) <= 99 and 10 <= int(b) <= 99
        assert r["verifier"] == {"kind": "exact_number", "answer": int(a) + int(b), "rel_tol": 0}
        assert r["reference"] == f"Answer: {int(a) + int(b)}"


def test_multiple_choice_lists_four_distinct_options_and_only_the_right_one_passes():
    records = prompts.build_prompts({"multiple_choice": 40}, seed=3, held_out_fraction=0.2)
    assert len(records) == 40 and {r["domain"] for r in records} == {"multiple_choice"}
    for r in records:
        lines = user_text(r).splitlines()
        options = [line for line in lines if line[:3] in ("A) ", "B) ", "C) ", "D) ")]
        assert [o[0] for o in options] == ["A", "B", "C", "D"] and len({o[3:] for o in options}) == 4
        assert lines[-1] == prompts.MC_SUFFIX and r["reference"] == f"Answer: {r['verifier']['answer']}"
        for letter in "ABCD":
            ok = verifiers.score(r["verifier"], f"Answer: {letter}", reasoning=False)
            assert ok == float(letter == r["verifier"]["answer"])
    assert len({r["verifier"]["answer"] for r in records}) == 4  # the right option is not always in one place


def test_arithmetic_difficulty_is_a_parameter():
    params = ArithmeticParams(low=2, high=9, operations=("-", "*"))
    records = prompts.build_prompts({"arithmetic": 40}, seed=3, held_out_fraction=0.5, arithmetic=params)
    ops = set()
    for r in records:
        a, op, b = user_text(r).removeprefix("What is ").removesuffix("?").split()
        ops.add(op)
        assert 2 <= int(a) <= 9 and 2 <= int(b) <= 9 and int(r["verifier"]["answer"]) >= 0
    assert ops == {"-", "*"}
    with pytest.raises(ValueError, match="operations"):
        ArithmeticParams(operations=("/",))
    with pytest.raises(ValueError, match="low <= high"):
        ArithmeticParams(low=50, high=10)


def test_a_family_with_few_distinct_prompts_returns_each_once():
    params = ArithmeticParams(low=1, high=2, operations=("+",))  # 1+1, 1+2, 2+1, 2+2
    records = prompts.build_prompts({"arithmetic": 10}, seed=0, held_out_fraction=0.5, arithmetic=params)
    assert sorted(user_text(r) for r in records) == [
        "What is 1 + 1?",
        "What is 1 + 2?",
        "What is 2 + 1?",
        "What is 2 + 2?",
    ]


def test_held_out_split_is_stable_across_counts_and_seeds():
    small = prompts.build_prompts({"arithmetic": 50, "code": 3}, seed=11, held_out_fraction=0.2)
    large = prompts.build_prompts({"arithmetic": 400, "code": 10}, seed=11, held_out_fraction=0.2)
    other = prompts.build_prompts({"arithmetic": 400}, seed=12, held_out_fraction=0.2)
    assert [r["id"] for r in small if r["family"] == "arithmetic"] == [
        r["id"] for r in large if r["family"] == "arithmetic"
    ][:50]  # a family grows by appending
    split = {r["id"]: r["split"] for r in large}
    assert all(split[r["id"]] == r["split"] for r in small)
    shared = [r for r in other if r["id"] in split]
    assert len(shared) >= 5  # same question under another seed: same id, same split
    assert all(split[r["id"]] == r["split"] for r in shared)
    assert all(r["split"] == prompts.split_of(r["id"], 0.2) for r in large)


def test_held_out_is_disjoint_from_train_and_near_its_fraction():
    records = prompts.build_prompts({"arithmetic": 600, "instruction": 40}, seed=5, held_out_fraction=0.2)
    train = {user_text(r) for r in records if r["split"] == "train"}
    held = {user_text(r) for r in records if r["split"] == "held_out"}
    assert train and held and not train & held
    assert len(train) + len(held) == len(records)
    assert 0.14 < len(held) / len(records) < 0.26
    more = prompts.build_prompts({"arithmetic": 600, "instruction": 40}, seed=5, held_out_fraction=0.4)
    held_more = {user_text(r) for r in more if r["split"] == "held_out"}
    assert held <= held_more  # a larger fraction only moves prompts from train to held-out


def test_duplicate_texts_across_families_keep_one_copy_and_held_out_wins(monkeypatch):
    texts = [f"What is {i} + {i}?" for i in range(40)]

    def same_texts(family, n, seed, **kwargs):
        spec = {"kind": "exact_number", "answer": 0}
        return [Draft(user=t, verifier=spec, reference="Answer: 0", reasoning="r") for t in texts[:n]]

    monkeypatch.setattr(prompts, "family_drafts", same_texts)
    records = prompts.build_prompts({"arithmetic": 40, "math_word": 40}, seed=0, held_out_fraction=0.3)
    assert sorted(user_text(r) for r in records) == sorted(texts)
    for t in texts:
        ids = [prompts.prompt_id(f, t) for f in ("arithmetic", "math_word")]
        expected = "held_out" if any(prompts.split_of(i, 0.3) == "held_out" for i in ids) else "train"
        (kept,) = [r for r in records if user_text(r) == t]
        assert kept["split"] == expected
    assert any(r["family"] == "math_word" for r in records)  # some pairs were decided by the held-out rule


def test_every_reference_answer_passes_its_own_verifier_in_both_modes():
    records = prompts.build_prompts(TINY, seed=2024, held_out_fraction=0.2)
    limits = verifiers.SandboxLimits(timeout_s=5.0, memory_mb=256)
    for r in records:
        sandboxed = r["domain"] in ("code", "tool")
        for reasoning in (False,) if sandboxed else (False, True):
            message = prompts.reference_answer(r, reasoning=reasoning)
            turn = chat.render([*r["messages"], message])  # a valid SFT conversation
            response = turn.split(chat.generation_prompt(reasoning), 1)[1].removesuffix(chat.EOS)
            assert verifiers.score(r["verifier"], response, reasoning=reasoning, sandbox=limits) == 1.0, r["id"]


def test_reference_answer_in_both_modes():
    (record,) = prompts.build_prompts({"arithmetic": 1}, seed=0, held_out_fraction=0.0)
    direct = prompts.reference_answer(record, reasoning=False)
    assert direct == {"role": "assistant", "content": record["reference"]}
    thinking = prompts.reference_answer(record, reasoning=True)
    a, _, b = user_text(record).removeprefix("What is ").removesuffix("?").split()
    assert thinking["content"] == f"Answer: {int(a) + int(b)}"
    assert thinking["reasoning"].startswith("Add digit by digit") and f"= {int(a) + int(b)}." in thinking["reasoning"]
    with pytest.raises(ValueError, match="no reference answer"):
        prompts.reference_answer({**record, "reference": ""}, reasoning=False)


def test_tool_prompts_wrap_the_given_tasks():
    from posttrain import tool_tasks

    tasks = [tool_tasks.task_to_json(t) for t in tool_tasks.programmatic_tasks(5, seed=9)]
    records = prompts.build_prompts({"tool": 3}, seed=0, held_out_fraction=0.2, tool_tasks=tasks)
    assert [user_text(r) for r in records] == [t["user"] for t in tasks[:3]]
    for r, task in zip(records, tasks):
        assert r["verifier"] == {"kind": "tool", "task": task}
        assert r["messages"][0]["role"] == "system" and r["reference"] == task["reference_answer"]
    assert prompts.build_prompts({"tool": 3}, seed=0, held_out_fraction=0.2, tool_tasks=[]) == []


@pytest.mark.parametrize(
    ("families", "fraction", "fragment"),
    [({"poetry": 3}, 0.1, "unknown prompt families"), ({"code": -1}, 0.1, "integers >= 0"),
     ({"code": 1}, 1.5, "held_out_fraction")],
)  # fmt: skip
def test_bad_arguments_raise_one_line(families, fraction, fragment):
    with pytest.raises(ValueError, match=fragment) as exc:
        prompts.build_prompts(families, seed=0, held_out_fraction=fraction)
    assert "\n" not in str(exc.value)
