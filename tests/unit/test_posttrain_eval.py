"""The post-training evaluation's arithmetic: pass@1 averaged over k samples, partial scores, well-formed
think blocks per mode, held-out selection, the comparison table — on scripted "models"."""

from __future__ import annotations

import pytest

from evaluation import posttrain_eval as pe

RECORDS = [{"id": f"m{i}", "domain": "math", "split": "held_out", "verifier": {"answer": str(i)}} for i in range(3)] + [
    {"id": "c0", "domain": "code", "split": "held_out", "verifier": {"answer": "def"}}
]


def scripted(responses_by_mode):
    """A 'model' whose k responses for a prompt are fixed strings per mode (ids are character codes)."""

    def prompt_ids(record, reasoning):
        return [ord(c) for c in record["id"]] + [int(reasoning)]

    def sample(prompt, n, seed):
        rid, reasoning = "".join(chr(c) for c in prompt[:-1]), bool(prompt[-1])
        texts = responses_by_mode[reasoning](rid)
        assert len(texts) == n
        return [[ord(c) for c in t] for t in texts]

    return prompt_ids, sample


def exact(spec, text, reasoning):
    answer = text.split("</think>")[-1].strip()
    if spec["answer"] == "def":  # a partial score, like a share of unit tests
        return 0.5 if answer == "def" else 0.0
    return 1.0 if answer == spec["answer"] else 0.0


def test_pass_at_1_is_the_share_of_passing_samples_averaged_over_prompts():
    def reasoning(rid):  # m0: 2 of 4 right; m1: 4 of 4; m2: 0 of 4 (and malformed)
        right = {"m0": 2, "m1": 4, "m2": 0, "c0": 0}[rid]
        answer = rid[1:] if rid != "c0" else "def"
        trajectory = "" if rid == "m2" else "work\n"
        return [f"{trajectory}</think>\n{answer if j < right else 'x'}" for j in range(4)]

    def direct(rid):
        return ["def" if rid == "c0" else rid[1:]] * 2 + ["<think>"] * 2  # 2 of 4 right, 2 with a think tag

    prompt_ids, sample = scripted({True: reasoning, False: direct})
    rows = pe.evaluate_checkpoint(
        "sft_checkpoint",
        RECORDS,
        prompt_ids=prompt_ids,
        sample=sample,
        decode=lambda ids: "".join(chr(i) for i in ids),
        score=exact,
        k=4,
    )
    by = {(r.domain, r.mode): r for r in rows}
    math_r = by[("math", "reasoning")]
    assert math_r.prompts == 3 and math_r.samples == 12
    assert math_r.pass_at_1 == pytest.approx(6 / 12)  # (2 + 4 + 0) of 12
    assert math_r.think_well_formed == pytest.approx(8 / 12, abs=1e-4)  # m2's 4 responses have no trajectory
    assert by[("math", "non_reasoning")].pass_at_1 == pytest.approx(0.5)
    assert by[("math", "non_reasoning")].think_well_formed == pytest.approx(0.5)  # "<think>" ones count against
    code = by[("code", "non_reasoning")]
    assert code.pass_at_1 == 0.0 and code.mean_score == pytest.approx(0.25)  # partial credit is not a pass
    md = pe.comparison_markdown(rows, ["context_ext_stage2", "sft_checkpoint"])
    assert "| math | reasoning | - | 50.0% (67% wf) |" in md


def test_held_out_takes_only_the_held_out_split_capped_per_domain():
    records = [{"id": str(i), "domain": "math" if i % 2 else "code", "split": "held_out"} for i in range(10)]
    records.insert(3, {"id": "t", "domain": "math", "split": "train"})
    picked = pe.held_out(records, 2)
    assert [r["id"] for r in picked] == ["0", "1", "2", "3"]


def test_a_verifier_outside_zero_one_fails_loudly():
    prompt_ids, sample = scripted({True: lambda rid: ["a"], False: lambda rid: ["a"]})
    with pytest.raises(ValueError, match="outside"):
        pe.evaluate_checkpoint(
            "x",
            RECORDS[:1],
            prompt_ids=prompt_ids,
            sample=sample,
            decode=lambda ids: "a",
            score=lambda *a: 2.0,
            k=1,
        )
