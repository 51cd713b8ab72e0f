"""One policy-optimization stage as its own process (AGAPO RL or GROUPER preference learning): what Dagster
launches through Pipes, like ``model.train``.

    torchrun --standalone --nproc-per-node 1 -m posttrain.policy_train --preset tiny --algorithm agapo \\
        --prompts PROMPTS.jsonl --tokenizer TOKENIZER.json --init-from CHECKPOINT_DIR --work-dir W --output O

Read top to bottom: ``main`` validates everything before compute; ``run`` is the loop. Each round ``s``:

1. prompts: ``prompts_per_step`` records of the **train** split, a pure function of (seed, s);
2. rollouts: ``group_size`` samples per prompt from a ``posttrain.rollouts.RolloutEngine``; here
   ``LocalRollouts``, the live policy through ``model.inference.sample_batch`` (the stage's temperature and
   top-p, MTP off, a generator seeded from (seed, s, prompt)), with each token's log-prob under the rollout
   policy at temperature 1 over the full vocabulary (the trainer's own scoring: the first update's
   importance ratio is exactly 1);
3. rewards: the prompt's verifier (``posttrain.verifiers.score``); GROUPER's score adds the judge's rubric
   (``rule_weight`` x rule reward + (1 - rule_weight) x mean rubric score scaled to [0, 1]);
4. updates: AGAPO (zero-variance filter, leave-one-out advantages, global normalization, the token-level
   truncated-IS loss) or GROUPER (group-standardized scores scaled into [-1, 1], the group-wise SimPER
   loss), ``optimizer_steps_per_batch`` optimizer steps on the same rollouts (off-policy after the first).

* **No KL, no reference model; the MoE router frozen**: the router weights get ``requires_grad=False``
  (so no optimizer holds them, no gradient reaches them) and the aux-loss-free expert-bias update
  (``training.update_expert_bias``, i.e. Megatron's ``_update_router_expert_bias``, which pre-training runs
  after each step and Megatron itself runs in ``finalize_model_grads`` when
  ``moe_router_enable_expert_bias`` is set) is never called here; as a second guard every router's
  ``frozen_expert_bias`` is set (Megatron-Core 0.19 skips such routers in that update). Router weights and
  expert bias leave the stage bit-identical (tested).
* Optimizer (**choice**): a fresh torch AdamW (``model.training.adamw``: the trainable parameters only,
  no decay on 1-D tensors) at the stage's constant LR (``posttrain.rl.lr`` / ``posttrain.preference.lr``),
  weight decay as pre-training; not the pre-training Muon/WSD set-up: a few hundred small-LR policy updates
  want neither Muon's orthogonalized steps tuned for pre-training nor a warm-up/decay schedule, and the SFT
  optimizer's moments belong to another objective. Gradient clipping as pre-training. No Megatron DDP
  wrapper, so Megatron's ``finalize_model_grads`` (which would call ``_update_router_expert_bias`` when
  ``moe_router_enable_expert_bias`` is set) never runs either.
* Resume: every ``checkpoint_every_steps`` rounds the full state (model, optimizer, RNG) goes to
  ``W/checkpoints/step_NNNNNN`` (``.partial`` then renamed). A restarted run continues from the newest:
  rounds after it are regenerated from the restored weights with the same seeds, and their metric rows
  are dropped first (never double-counted).
* Metrics, one row per round in ``W/metrics.jsonl`` (copied to ``O/metrics.jsonl``): ``stage``, ``step``,
  ``mean_reward``, ``share_filtered`` (groups dropped for equal rewards/scores), ``is_truncated_share``
  (AGAPO: share of response tokens whose IS ratio exceeded ``is_clip``, mean over the round's updates),
  ``mean_response_length``, ``entropy`` (mean token entropy of the rollouts, temperature 1), ``loss``,
  ``updates``, ``lr``, ``step_seconds`` (``model.train``'s name). Output: ``O/checkpoint`` (the same
  dist-checkpoint format as ``model.train``), ``O/metrics.jsonl``, ``O/summary.json``; under Pipes the
  summary is reported as the materialization's metadata (``model.train``'s ``Reporter``).
* The recipe has no dropout, so the trainer's teacher-forced log-probs equal the rollout's on the first
  update of a round (ratio 1, truncated share 0 there); later updates are off-policy and the IS weight acts.
* One process for now (**limit**): the rollouts and the loss run on one rank; a multi-rank stage is refused
  in one line. The cluster design: rollouts from an inference server (``posttrain.rollouts``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from config import Preset, PresetError, get_preset
from model import checkpoint, training
from model.stages import METRICS, TrainingSetupError
from model.train import Reporter, complete_checkpoints, open_reporter, save_periodic
from model.train import _rewrite_metrics as rewrite_metrics
from posttrain import chat, objectives

ALGORITHMS = ("agapo", "grouper")


class ConstantLR:
    """The scheduler interface ``model.checkpoint`` saves and restores (step count), at a constant LR."""

    def __init__(self) -> None:
        self.num_steps = 0

    def step(self, increment: int = 1) -> None:
        self.num_steps += increment

    def state_dict(self) -> dict[str, int]:
        return {"num_steps": self.num_steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.num_steps = int(state["num_steps"])


def stage_args(preset: Preset, algorithm: str):
    return preset.posttrain.rl if algorithm == "agapo" else preset.posttrain.preference


def read_prompts(path: Path) -> list[dict]:
    """The train-split records of a prompts JSONL (``posttrain.prompts``' format); one-line errors."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingSetupError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise TrainingSetupError(f"{path}:{n}: a prompt record must be a JSON object")
        rows.append((n, record))
    train = []
    for n, r in rows:
        if r.get("split") != "train":
            continue
        missing = [k for k in ("id", "messages", "verifier") if k not in r]
        if missing:
            raise TrainingSetupError(f"{path}:{n}: the record lacks {', '.join(missing)}")
        train.append(r)
    return train


def validate(args: argparse.Namespace, preset: Preset, world: int) -> list[dict]:
    """Every problem before compute, one line each; returns the train prompts."""
    from tokenizers import Tokenizer

    from model.architecture import ModelBuildError, check_vocab
    from posttrain import verifiers

    problems = []
    if args.algorithm not in ALGORITHMS:
        problems.append(f"--algorithm must be one of {', '.join(ALGORITHMS)} (got {args.algorithm!r})")
    if world != 1:
        problems.append(f"policy stages run on one process for now (got world size {world})")
    for what, path in (("--prompts", args.prompts), ("--tokenizer", args.tokenizer)):
        if not path.is_file():
            problems.append(f"{what} {path} is not a file")
    if not (args.init_from / "metadata.json").exists():
        problems.append(f"--init-from {args.init_from} is not a finished checkpoint (no metadata.json)")
    if args.output.exists() and any(args.output.iterdir()):
        problems.append(f"--output {args.output} is not empty: a finished artifact is never written over")
    if args.tokenizer.is_file():
        try:
            tok = Tokenizer.from_file(str(args.tokenizer))
        except Exception as exc:  # the tokenizers library raises its own exception types
            problems.append(f"--tokenizer {args.tokenizer} cannot be read ({str(exc).splitlines()[0]})")
        else:
            try:
                check_vocab(preset, tok.get_vocab_size(with_added_tokens=True))
            except ModelBuildError as exc:
                problems.append(f"tokenizer/model vocabulary mismatch: {exc}")
            missing = [t for t in (chat.EOS, chat.PAD) if tok.token_to_id(t) is None]
            if missing:
                problems.append(f"--tokenizer {args.tokenizer} lacks the chat tokens {', '.join(missing)}")
    if problems:
        raise TrainingSetupError("; ".join(problems))
    prompts = read_prompts(args.prompts)
    if not prompts:
        raise TrainingSetupError(f"{args.prompts} has no prompt of the train split")
    for r in prompts:
        try:
            verifiers.validate_spec(r["verifier"])
            chat.render(r["messages"], add_generation_prompt=True)
        except ValueError as exc:
            raise TrainingSetupError(f"{args.prompts}: prompt {r['id']}: {exc}") from None
    return prompts


def response_logprobs(model, prompt: list[int], responses: list[list[int]], pad_id: int, vocab: int) -> torch.Tensor:
    """log pi_theta of each response token given the prompt, ``[G, T]`` (padding: 0), with gradient; over the
    tokenizer's ``vocab`` rows, as the rollout's log-probs."""
    length = max(len(r) for r in responses)
    rows = [prompt + r + [pad_id] * (length - len(r)) for r in responses]
    ids = torch.tensor(rows, dtype=torch.long)
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    logits = model(ids, positions, None).float()
    logp = torch.log_softmax(logits[:, len(prompt) - 1 : -1, :vocab], dim=-1)
    return logp.gather(-1, ids[:, len(prompt) :].unsqueeze(-1)).squeeze(-1)


def rollout_seed(seed: int, step: int, index: int) -> int:
    """The generator seed of prompt ``index`` of round ``step``: a pure function, so a resumed run redraws
    the interrupted round's rollouts exactly."""
    return seed * 1_000_003 + step * 10_007 + index


def pad_rows(rows: list[list[float]], length: int) -> torch.Tensor:
    return torch.tensor([r + [0.0] * (length - len(r)) for r in rows], dtype=torch.float32)


def run(args: argparse.Namespace, preset: Preset, prompts: list[dict], report: Reporter) -> dict[str, Any]:
    from tokenizers import Tokenizer

    from model import parallel
    from model.architecture import build_model
    from posttrain import verifiers
    from posttrain.rollouts import LocalRollouts

    st = stage_args(preset, args.algorithm)
    seed = preset.pretrain.seed
    parallel.initialize(seed=seed)
    tok = Tokenizer.from_file(str(args.tokenizer))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    eos, pad = tok.token_to_id(chat.EOS), tok.token_to_id(chat.PAD)
    encode = lambda text: tok.encode(text, add_special_tokens=False).ids  # noqa: E731
    model = build_model(preset, vocab_size=vocab)
    checkpoint.load_model(args.init_from, model)
    router = [n for n, p in model.named_parameters() if ".router." in n]
    for name, param in model.named_parameters():
        if name in router:
            param.requires_grad_(False)
    for module in model.modules():  # Megatron 0.19's own switch, honoured by _update_router_expert_bias
        if getattr(module, "expert_bias", None) is not None:
            module.frozen_expert_bias = True
    optimizer = training.adamw(model, preset)
    for group in optimizer.param_groups:
        group["lr"] = st.lr
        group["weight_decay"] = preset.pretrain.weight_decay * group.get("wd_mult", 1.0)
    scheduler = ConstantLR()
    work, output = Path(args.work_dir), Path(args.output)
    start, resumed_from = 0, None
    if resumable := complete_checkpoints(work):
        position = checkpoint.load(resumable[-1], model, optimizer, scheduler, restore_rng=True)
        if position.get("stage") != args.algorithm:
            raise TrainingSetupError(f"{resumable[-1]} belongs to {position.get('stage')!r}, not {args.algorithm!r}")
        start, resumed_from = int(position["stage_step"]), str(resumable[-1])
        report.info(f"{args.algorithm}: resuming from {resumable[-1].name} (round {start} of {st.steps})")
    work.mkdir(parents=True, exist_ok=True)
    rewrite_metrics(work / METRICS, start)
    engine = LocalRollouts(model, eos_token_id=eos, vocab_size=vocab)  # the live policy: nothing to refresh
    tt = preset.posttrain.tool_tasks
    limits = verifiers.SandboxLimits(timeout_s=tt.sandbox_timeout_s, memory_mb=tt.sandbox_memory_mb)
    judge = verifiers.OfflineJudge(limits) if args.algorithm == "grouper" else None
    report.info(
        f"{args.algorithm}: {st.steps} rounds x {st.prompts_per_step} prompts x G={st.group_size}, "
        f"{st.optimizer_steps_per_batch} updates per batch, router frozen ({len(router)} tensors)"
    )
    for step in range(start, st.steps):
        t0 = time.perf_counter()
        rng = random.Random(f"{seed}/{args.algorithm}/{step}")
        chosen = rng.sample(prompts, min(st.prompts_per_step, len(prompts)))
        groups = []
        for i, record in enumerate(chosen):
            prompt = chat.encode_prompt(encode, record["messages"], reasoning=st.reasoning)
            rows = engine.generate(
                prompt,
                st.group_size,
                max_new_tokens=st.max_response_tokens,
                temperature=st.temperature,
                top_p=st.top_p,
                seed=rollout_seed(seed, step, i),
            )
            texts = [tok.decode([t for t in r.ids if t != eos], skip_special_tokens=False) for r in rows]
            rewards = [verifiers.score(record["verifier"], t, reasoning=st.reasoning, sandbox=limits) for t in texts]
            if judge is not None:
                rubric = [judge.mean_score(record, t, preset.posttrain.rubric, reasoning=st.reasoning) for t in texts]
                w = preset.posttrain.rule_weight
                rewards = [w * r + (1 - w) * j for r, j in zip(rewards, rubric)]
            groups.append((prompt, rows, rewards))
        rewards_t = torch.tensor([g[2] for g in groups], dtype=torch.float32)
        if args.algorithm == "agapo":
            keep = objectives.zero_variance_mask(rewards_t)
            kept_idx = [i for i, k in enumerate(keep.keep.tolist()) if k]
            advantages = (
                objectives.normalize_advantages(objectives.group_advantages(rewards_t[keep.keep])) if kept_idx else None
            )
            dropped = keep.dropped_share
        else:
            grouped = objectives.grouper_advantages(rewards_t)
            kept_idx = [i for i, k in enumerate(grouped.keep.tolist()) if k]
            advantages, dropped = grouped.advantages, grouped.dropped_share
        losses, truncated = [], []
        for _ in range(st.optimizer_steps_per_batch if kept_idx else 0):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            length = max(len(r.ids) for i in kept_idx for r in groups[i][1])
            logp = torch.stack(
                [
                    torch.nn.functional.pad(
                        response_logprobs(model, groups[i][0], [r.ids for r in groups[i][1]], pad, vocab),
                        (0, length - max(len(r.ids) for r in groups[i][1])),
                    )
                    for i in kept_idx
                ]
            )
            mask = torch.stack([pad_rows([[1.0] * len(r.ids) for r in groups[i][1]], length) for i in kept_idx]) > 0
            if args.algorithm == "agapo":
                rollout = torch.stack([pad_rows([r.logprobs for r in groups[i][1]], length) for i in kept_idx])
                loss, stats = objectives.agapo_loss(logp, rollout, advantages, mask, clip=preset.posttrain.is_clip)
                truncated.append(stats["truncated_share"])
            else:
                loss = objectives.grouper_loss(logp, mask, advantages)
            loss.backward()
            training.clip_grad_norm(model, preset.pretrain.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        all_rows = [r for g in groups for r in g[1]]
        row = {
            "stage": args.algorithm,
            "step": step + 1,
            "mean_reward": float(rewards_t.mean()),
            "share_filtered": float(dropped),
            "mean_response_length": sum(len(r.ids) for r in all_rows) / len(all_rows),
            "entropy": sum(sum(r.entropy) for r in all_rows) / max(1, sum(len(r.entropy) for r in all_rows)),
            "loss": sum(losses) / len(losses) if losses else 0.0,
            "updates": len(losses),
            "lr": st.lr,
            "step_seconds": time.perf_counter() - t0,
        }
        if args.algorithm == "agapo":
            row["is_truncated_share"] = sum(truncated) / len(truncated) if truncated else 0.0
        with open(work / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")
        report.info(
            f"{args.algorithm} round {step + 1}/{st.steps}: reward {row['mean_reward']:.3f} filtered "
            f"{row['share_filtered']:.2f} length {row['mean_response_length']:.1f} entropy {row['entropy']:.3f}"
        )
        done = step + 1
        if done % st.checkpoint_every_steps == 0 and done < st.steps:
            position = {"stage": args.algorithm, "stage_step": done}
            save_periodic(work, done, model, optimizer, scheduler, position, preset.pretrain.keep_checkpoints)
    checkpoint.save(output / "checkpoint", model, optimizer, scheduler, data_position={"stage": args.algorithm})
    rows = [json.loads(line) for line in (work / METRICS).read_text().splitlines() if line.strip()]
    (output / METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    tenth = max(1, len(rows) // 10)
    summary = {
        "stage": args.algorithm,
        "steps": st.steps,
        "group_size": st.group_size,
        "prompts_per_step": st.prompts_per_step,
        "reward_first": round(sum(r["mean_reward"] for r in rows[:tenth]) / tenth, 4),
        "reward_final": round(sum(r["mean_reward"] for r in rows[-tenth:]) / tenth, 4),
        "share_filtered_mean": round(sum(r["share_filtered"] for r in rows) / len(rows), 4),
        "mean_response_length_final": round(rows[-1]["mean_response_length"], 2),
        "world_size": 1,
        "resumed_from": resumed_from,
        "router_frozen_tensors": len(router),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


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
) -> list[str]:
    """The arguments of ``python -m posttrain.policy_train`` (what ``parse_args`` reads): the trainer resource,
    the tests and the bench build them here."""
    return [
        *("--preset", preset, "--overrides", json.dumps(dict(overrides)), "--algorithm", algorithm),
        *("--prompts", str(prompts), "--tokenizer", str(tokenizer), "--init-from", str(init_from)),
        *("--work-dir", str(work_dir), "--output", str(output)),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m posttrain.policy_train", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--overrides", default="{}", help="JSON object of dotted preset overrides")
    ap.add_argument("--algorithm", required=True, help="agapo (RL) or grouper (preference)")
    ap.add_argument("--prompts", required=True, type=Path, help="rl_prompts' prompts.jsonl")
    ap.add_argument("--tokenizer", required=True, type=Path, help="tokenizer.json")
    ap.add_argument("--init-from", required=True, type=Path, help="the previous stage's checkpoint folder")
    ap.add_argument("--work-dir", required=True, type=Path, help="periodic checkpoints and metrics (resume)")
    ap.add_argument("--output", required=True, type=Path, help="empty folder for the final artifact")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from model.launch_guard import die_with_parent

    args = parse_args(argv)
    die_with_parent()
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    with open_reporter(rank) as report:
        try:
            preset = get_preset(args.preset, json.loads(args.overrides))
            prompts = validate(args, preset, world)
            summary = run(args, preset, prompts, report)
        except (TrainingSetupError, PresetError, checkpoint.CheckpointError, json.JSONDecodeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            if report.pipes is not None:
                raise
            return 2
        metadata = {k: v for k, v in summary.items() if v is not None}
        report.materialization(metadata, report.extras.get("artifact_version"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
