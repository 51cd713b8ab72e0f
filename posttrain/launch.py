"""How a policy stage (``posttrain.policy_train``) is launched, without importing torch: its command-line
arguments and the parallel layouts it accepts. The trainer resource, the assets, the tests and the bench
use these; the stage process checks the same again before compute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from config import Preset

ALGORITHMS = ("agapo", "grouper")
JUDGE_API_KEY_ENV = "KEXAONE_JUDGE_API_KEY"  # the LLM judge's key: from the environment, never the command line


def stage_args(preset: Preset, algorithm: str):
    return preset.posttrain.rl if algorithm == "agapo" else preset.posttrain.preference


def layout_problems(
    preset: Preset,
    algorithm: str,
    world: int,
    tensor_parallel: int,
    expert_parallel: int,
    train_prompts: int | None = None,
) -> list[str]:
    """One line per reason the layout cannot run the stage: the world is TP x DP and expert parallelism
    splits the data-parallel ranks (as ``model.train``), and each round's prompts split evenly over the
    data-parallel ranks (``train_prompts``: the train split's size when known; a round takes
    ``min(prompts_per_step, train_prompts)``)."""
    tp, ep = tensor_parallel, expert_parallel
    if tp < 1 or ep < 1 or world < 1 or world % tp or world % ep:
        # whole experts per rank (expert tensor parallelism 1, model.parallel): EP splits the TP x DP ranks
        return [f"{world} processes do not divide into TP={tp} x EP={ep} (EP splits the TP x DP ranks)"]
    problems = []
    if preset.model.num_moe_experts % ep:
        problems.append(f"expert parallelism {ep} does not divide {preset.model.num_moe_experts} experts")
    st = stage_args(preset, algorithm)
    per_round = st.prompts_per_step if train_prompts is None else min(st.prompts_per_step, train_prompts)
    dp = world // tp
    if per_round % dp:
        section = "posttrain.rl" if algorithm == "agapo" else "posttrain.preference"
        problems.append(
            f"{per_round} prompts per round do not split over {dp} data-parallel ranks (set {section}.prompts_per_step)"
        )
    return problems


def cli_args(
    *,
    preset: str,
    overrides: Mapping[str, Any],
    algorithm: str,
    prompts: Path,
    tokenizer: Path,
    init_from: Path,
    work_dir: Path,
    output: Path,
    tensor_parallel: int = 1,
    expert_parallel: int = 1,
    judge: Mapping[str, str] | None = None,
    rollout: tuple[str, str] | None = None,
) -> list[str]:
    """The arguments of ``python -m posttrain.policy_train`` (what its ``parse_args`` reads). ``judge``:
    ``{"base_url", "model", "cache"}`` of an LLM judge (its API key goes through the environment);
    ``rollout``: (base URL, served model name) of a rollout server."""
    judge_args = []
    if judge:
        judge_args = [
            "--judge-base-url",
            judge["base_url"],
            "--judge-model",
            judge["model"],
            "--judge-cache",
            judge["cache"],
        ]
    return [
        *("--preset", preset, "--overrides", json.dumps(dict(overrides)), "--algorithm", algorithm),
        *("--prompts", str(prompts), "--tokenizer", str(tokenizer), "--init-from", str(init_from)),
        *("--work-dir", str(work_dir), "--output", str(output)),
        *("--tensor-parallel", str(tensor_parallel), "--expert-parallel", str(expert_parallel)),
        *judge_args,
        *(("--rollout-base-url", rollout[0], "--rollout-model", rollout[1]) if rollout else ()),
    ]


__all__ = ["ALGORITHMS", "JUDGE_API_KEY_ENV", "cli_args", "layout_problems", "stage_args"]
