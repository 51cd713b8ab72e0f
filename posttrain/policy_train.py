"""One policy-optimization stage as its own process (AGAPO RL or GROUPER preference learning): what Dagster
launches through Pipes, like ``model.train``.

    torchrun --standalone --nproc-per-node 1 -m posttrain.policy_train --preset tiny --algorithm agapo \\
        --prompts PROMPTS.jsonl --tokenizer TOKENIZER.json --init-from CHECKPOINT_DIR --work-dir W --output O

Read top to bottom: ``main`` validates everything before compute; ``run`` is the loop. Each round ``s``:

1. prompts: ``prompts_per_step`` records of the **train** split, a pure function of (seed, s);
2. rollouts: ``group_size`` samples per prompt from a ``posttrain.rollouts.RolloutEngine``: by default
   ``LocalRollouts``, the live policy through ``model.inference.sample_batch`` (the stage's temperature and
   top-p, MTP off, a generator seeded from (seed, s, prompt)), with each token's log-prob under the rollout
   policy at temperature 1 over the full vocabulary (the trainer's own scoring: the first update's
   importance ratio is exactly 1); with ``--rollout-base-url`` an OpenAI-compatible server
   (``OpenAIRollouts``; ``model.serve`` here, vLLM on a cluster) that loads the round's weights first;
3. rewards: the prompt's verifier (``posttrain.verifiers.score``); GROUPER's score adds the judge's rubric
   (``rule_weight`` x rule reward + (1 - rule_weight) x mean rubric score scaled to [0, 1]). The judge (also
   the verifier of ``judge``-kind prompts): the offline rule judge, or with ``--judge-base-url`` an LLM
   through the HTTP teacher client (``synthetic.http_teacher``; key in ``$KEXAONE_JUDGE_API_KEY``; a
   group's G responses in one batch of requests, answers cached);
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
* **The other losses** (**choice**): Megatron 0.19 adds the MTP loss in training mode even without labels
  (it derives them from the input ids, its RL path) and the MoE sequence load-balancing loss. The MTP loss
  stays, as Megatron's RL path computes it, on every real token of a rollout (prompt and response; the
  ``loss_mask`` keeps padding out, so the loss does not depend on how ranks pad), summed over the kept
  groups (``MTPLossAutoScaler`` scale = the data-parallel size, undone by gradient averaging): the MTP head
  keeps drafting for the policy, and its gradient anchors the trunk to language modelling. The
  load-balancing loss is off (``moe_aux_loss_coeff`` = 0 in this process: the router is frozen, and the
  loss would depend on the padding).
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
* Several ranks (``torchrun --nproc-per-node N ... --tensor-parallel T --expert-parallel E``; the world is
  T x DP, EP splits the DP ranks, as ``model.train``): each data-parallel rank takes its slice of the round's
  prompts (global indices, so the rollout seeds are those of a one-process run) and samples them with the
  local engine in lockstep (``sample_batch(lockstep=True)``: a split model's forwards are collectives);
  rewards are gathered so that filtering and AGAPO's global normalization see the whole round; each update
  runs one forward per kept group, right-padded to the longest of any rank, and a rank short of kept groups
  runs weight-0 forwards so that every rank runs the same collectives; the loss is scaled so that the
  averaged gradients (``training.sync_gradients``) are those of the global token mean (AGAPO) or group mean
  (GROUPER). Rank 0 writes the metrics. Tested: 2 processes with EP 2 against 1 (``test_policy_train``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from config import Preset, PresetError, get_preset
from model import checkpoint, training
from model.stages import METRICS, TrainingSetupError
from model.train import Reporter, complete_checkpoints, open_reporter, save_periodic
from model.train import _rewrite_metrics as rewrite_metrics
from posttrain import chat, objectives
from posttrain.launch import ALGORITHMS, JUDGE_API_KEY_ENV, layout_problems, stage_args
from posttrain.rollouts import RolloutError


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
    problems += judge_problems(args)
    if args.rollout_base_url:
        problems += rollout_server_problems(args.rollout_base_url)
    if args.algorithm in ALGORITHMS:
        problems += layout_problems(preset, args.algorithm, world, args.tensor_parallel, args.expert_parallel)
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
    if problems := layout_problems(
        preset, args.algorithm, world, args.tensor_parallel, args.expert_parallel, train_prompts=len(prompts)
    ):
        raise TrainingSetupError("; ".join(problems))
    for r in prompts:
        try:
            verifiers.validate_spec(r["verifier"])
            chat.render(r["messages"], add_generation_prompt=True)
        except ValueError as exc:
            raise TrainingSetupError(f"{args.prompts}: prompt {r['id']}: {exc}") from None
    return prompts


def response_logprobs(
    model,
    prompt: list[int],
    responses: list[list[int]],
    pad_id: int,
    vocab: int,
    pad_to: int = 0,
    mtp_weight: float = 1.0,
) -> torch.Tensor:
    """log pi_theta of each response token given the prompt, ``[G, T]`` (T: the longest response; padding
    holds anything), with gradient; over the tokenizer's ``vocab`` rows (logits gathered over tensor-parallel
    ranks), as the rollout's log-probs. ``pad_to``: right-pad prompt + response to this many tokens (ranks of
    a split model bring equal token counts to each forward; causal attention keeps the real positions'
    values unaffected by the padding)."""
    length = max(len(r) for r in responses)
    total = max(len(prompt) + length, pad_to)
    from megatron.core import parallel_state

    rows = [prompt + r + [pad_id] * (total - len(prompt) - len(r)) for r in responses]
    ids = torch.tensor(rows, dtype=torch.long)
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
    # Megatron's MTP loss (labels derived from the input in training mode, its gradient added to the
    # model's) on every real token, prompt and response, never on the padding (``mtp_weight`` 0: a dummy
    # forward of a rank short of groups adds nothing)
    mtp_mask = torch.zeros(ids.shape, dtype=torch.float32)
    for row, r in enumerate(responses):
        mtp_mask[row, : len(prompt) + len(r)] = mtp_weight
    kwargs = {"loss_mask": mtp_mask}
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        kwargs["runtime_gather_output"] = True  # vocab-parallel logits -> full rows
    logits = model(ids, positions, None, **kwargs).float()
    logits = logits[:, len(prompt) - 1 : len(prompt) - 1 + length, :vocab]
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, ids[:, len(prompt) : len(prompt) + length].unsqueeze(-1)).squeeze(-1)


def make_judge(args: argparse.Namespace, preset: Preset, limits):
    """The LLM judge through the HTTP teacher client when ``--judge-base-url`` is given (rubric answers
    decoded with ``posttrain.judge_max_tokens`` / ``judge_temperature``, cached in ``--judge-cache`` so a
    resumed round pays nothing twice), else the offline rule judge."""
    from posttrain import verifiers

    if not args.judge_base_url:
        return verifiers.OfflineJudge(limits)
    from synthetic.http_teacher import HttpTeacher

    teacher = HttpTeacher(
        base_url=args.judge_base_url,
        model=args.judge_model,
        api_key=os.environ[JUDGE_API_KEY_ENV],
        cache_path=args.judge_cache,
        max_tokens=preset.posttrain.judge_max_tokens,
        temperature=preset.posttrain.judge_temperature,
    )
    return verifiers.TeacherJudge(teacher)


def judge_problems(args: argparse.Namespace) -> list[str]:
    """The LLM judge's arguments, checked (and its endpoint reached) before compute."""
    if not args.judge_base_url:
        extra = [n for n, v in (("--judge-model", args.judge_model), ("--judge-cache", args.judge_cache)) if v]
        return [f"{', '.join(extra)} given without --judge-base-url"] if extra else []
    problems = []
    if not args.judge_base_url.startswith(("http://", "https://")):
        problems.append(f"--judge-base-url {args.judge_base_url!r} is not http(s)://")
    missing = [n for n, v in (("--judge-model", args.judge_model), ("--judge-cache", args.judge_cache)) if not v]
    if not os.environ.get(JUDGE_API_KEY_ENV):
        missing.append(f"${JUDGE_API_KEY_ENV}")
    if missing:
        problems.append(f"the LLM judge needs {', '.join(missing)}")
    if not problems:
        from synthetic.http_teacher import HttpTeacher
        from synthetic.teacher import TeacherError

        try:
            HttpTeacher(
                base_url=args.judge_base_url, model=args.judge_model, api_key=os.environ[JUDGE_API_KEY_ENV],
                cache_path=args.judge_cache,
            ).preflight()  # fmt: skip
        except TeacherError as exc:
            problems.append(str(exc).replace("teacher endpoint", "judge endpoint"))
    return problems


def rollout_server_problems(base_url: str) -> list[str]:
    """The rollout server answers ``GET /v1/models`` (checked before compute)."""
    import urllib.error
    import urllib.request

    if not base_url.startswith(("http://", "https://")):
        return [f"--rollout-base-url {base_url!r} is not http(s)://"]
    root = base_url.rstrip("/")
    url = (root if root.endswith("/v1") else root + "/v1") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=10):
            return []
    except urllib.error.HTTPError as exc:
        return [f"rollout server {url} answered HTTP {exc.code}"]
    except (urllib.error.URLError, OSError) as exc:
        return [f"rollout server {url} is unreachable: {getattr(exc, 'reason', exc)}"]


ROLLOUT_WEIGHTS = "rollout_weights"  # under the work folder: the round's weights the rollout server loads


def refresh_server(engine, model, work: Path, step: int, rank: int) -> None:
    """The round's weights to ``W/rollout_weights/step_NNNNNN`` (every rank: dist checkpointing), then rank 0
    has the server load them (the hook returns once loaded) and drops the previous round's folder."""
    import shutil

    folder = work / ROLLOUT_WEIGHTS / f"step_{step:06d}"
    if rank == 0 and folder.exists():  # left by an interrupted run: rewritten from the restored weights
        shutil.rmtree(folder)
    checkpoint.save_model(folder, model)
    if rank == 0:
        engine.refresh(folder)
        for old in (work / ROLLOUT_WEIGHTS).iterdir():
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    torch.distributed.barrier()


def world_max(value: int) -> int:
    """The largest ``value`` over every rank (all ranks call this together)."""
    t = torch.tensor([value], dtype=torch.long)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t)


def dp_sum(values: list[float], group) -> list[float]:
    """Element-wise sums over the data-parallel ranks (``group``; one rank: unchanged)."""
    t = torch.tensor(values, dtype=torch.float64)
    if torch.distributed.get_world_size(group) > 1:
        torch.distributed.all_reduce(t, group=group)
    return t.tolist()


def dp_gather(t: torch.Tensor, group) -> torch.Tensor:
    """``[n, ...]`` per data-parallel rank -> ``[dp * n, ...]`` in data-parallel rank order."""
    size = torch.distributed.get_world_size(group)
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    torch.distributed.all_gather(parts, t.contiguous(), group=group)
    return torch.cat(parts)


def rollout_seed(seed: int, step: int, index: int) -> int:
    """The generator seed of prompt ``index`` of round ``step``: a pure function, so a resumed run redraws
    the interrupted round's rollouts exactly."""
    return seed * 1_000_003 + step * 10_007 + index


def pad_rows(rows: list[list[float]], length: int) -> torch.Tensor:
    return torch.tensor([r + [0.0] * (length - len(r)) for r in rows], dtype=torch.float32)


def run(args: argparse.Namespace, preset: Preset, prompts: list[dict], report: Reporter) -> dict[str, Any]:
    from megatron.core import parallel_state
    from megatron.core.transformer.multi_token_prediction import MTPLossAutoScaler
    from tokenizers import Tokenizer

    from model import parallel
    from model.architecture import build_model
    from posttrain import verifiers
    from posttrain.rollouts import LocalRollouts, OpenAIRollouts, load_weights_hook

    st = stage_args(preset, args.algorithm)
    seed = preset.pretrain.seed
    parallel.initialize(tensor_parallel=args.tensor_parallel, expert_parallel=args.expert_parallel, seed=seed)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    dp_group = parallel_state.get_data_parallel_group()
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()
    lockstep = world > 1  # a split model: every forward is a collective, ranks run the same forwards
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
    for module in model.modules():  # no load-balancing loss: the router is frozen, its gradient would only
        if hasattr(module, "get_aux_loss_coeff"):  # push the hidden states (Megatron reads it per forward)
            module.config.moe_aux_loss_coeff = 0.0
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
    if rank == 0:
        work.mkdir(parents=True, exist_ok=True)
        rewrite_metrics(work / METRICS, start)
    torch.distributed.barrier()
    if args.rollout_base_url:  # a rollout server, refreshed with this round's weights before its rollouts
        engine = OpenAIRollouts(
            args.rollout_base_url, args.rollout_model, reload=load_weights_hook(args.rollout_base_url), eos_token_id=eos
        )
    else:
        engine = LocalRollouts(model, eos_token_id=eos, vocab_size=vocab, lockstep=lockstep)  # the live policy
    tt = preset.posttrain.tool_tasks
    limits = verifiers.SandboxLimits(timeout_s=tt.sandbox_timeout_s, memory_mb=tt.sandbox_memory_mb)
    judge = make_judge(args, preset, limits)
    report.info(
        f"{args.algorithm}: {st.steps} rounds x {st.prompts_per_step} prompts x G={st.group_size}, "
        f"{st.optimizer_steps_per_batch} updates per batch, router frozen ({len(router)} tensors), world {world} "
        f"(TP {args.tensor_parallel}, EP {args.expert_parallel}, DP {dp_size})"
    )
    for step in range(start, st.steps):
        t0 = time.perf_counter()
        rng = random.Random(f"{seed}/{args.algorithm}/{step}")
        chosen = rng.sample(prompts, min(st.prompts_per_step, len(prompts)))
        if args.rollout_base_url:
            refresh_server(engine, model, work, step, rank)
        per_rank = len(chosen) // dp_size  # validated: the round splits evenly over data-parallel ranks
        first = dp_rank * per_rank  # this rank's prompts: global indices first .. first + per_rank - 1
        groups = []
        for j, record in enumerate(chosen[first : first + per_rank]):
            prompt = chat.encode_prompt(encode, record["messages"], reasoning=st.reasoning)
            rows = engine.generate(
                prompt,
                st.group_size,
                max_new_tokens=st.max_response_tokens,
                temperature=st.temperature,
                top_p=st.top_p,
                seed=rollout_seed(seed, step, first + j),
            )
            texts = [tok.decode([t for t in r.ids if t != eos], skip_special_tokens=False) for r in rows]
            rewards = [
                verifiers.score(record["verifier"], t, reasoning=st.reasoning, sandbox=limits, judge=judge)
                for t in texts
            ]
            if args.algorithm == "grouper":  # the group's G responses go to the judge together
                items = [verifiers.judge_item(record, t, reasoning=st.reasoning) for t in texts]
                rubric = [verifiers.rubric_mean(x) for x in judge.judge_many(items, preset.posttrain.rubric)]
                w = preset.posttrain.rule_weight
                rewards = [w * r + (1 - w) * j for r, j in zip(rewards, rubric)]
            groups.append((prompt, rows, rewards))
        # every rank sees the whole round's rewards: filtering and AGAPO's global normalization are global
        rewards_t = dp_gather(torch.tensor([g[2] for g in groups], dtype=torch.float32), dp_group)
        if args.algorithm == "agapo":
            keep = objectives.zero_variance_mask(rewards_t)
            kept_global = [i for i, k in enumerate(keep.keep.tolist()) if k]
            advantages = (
                objectives.normalize_advantages(objectives.group_advantages(rewards_t[keep.keep]))
                if kept_global
                else None
            )
            dropped = keep.dropped_share
        else:
            grouped = objectives.grouper_advantages(rewards_t)
            kept_global = [i for i, k in enumerate(grouped.keep.tolist()) if k]
            advantages, dropped = grouped.advantages, grouped.dropped_share
        kept_idx = [i - first for i in kept_global if first <= i < first + per_rank]  # this rank's kept groups
        local_adv = advantages[[kept_global.index(first + i) for i in kept_idx]] if kept_idx else None
        forwards = world_max(len(kept_idx)) if lockstep else len(kept_idx)
        losses, truncated = [], []
        # the MTP loss of an update: the sum over every rank's kept groups of each group's token mean, as one
        # process computes it (sync_gradients divides by the data-parallel size)
        MTPLossAutoScaler.set_loss_scale(torch.tensor(float(dp_size)))
        for _ in range(st.optimizer_steps_per_batch if kept_global else 0):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            logps, extra = [], None
            for f in range(forwards):  # one forward per group; a rank short of kept groups runs a dummy
                prompt, rows = groups[kept_idx[f] if f < len(kept_idx) else 0][:2]
                need = len(prompt) + max(len(r.ids) for r in rows)
                real = f < len(kept_idx)
                pad_to = world_max(need) if lockstep else 0
                lp = response_logprobs(
                    model, prompt, [r.ids for r in rows], pad, vocab, pad_to=pad_to, mtp_weight=float(real)
                )
                if real:
                    logps.append(lp)
                else:  # weight 0, but its backward runs: the split model's backward is a collective too
                    extra = lp.sum() * 0.0 if extra is None else extra + lp.sum() * 0.0
            local_loss, count, trunc = torch.zeros(()), 0.0, 0.0
            if kept_idx:
                length = max(lp.shape[1] for lp in logps)
                logp = torch.stack([torch.nn.functional.pad(lp, (0, length - lp.shape[1])) for lp in logps])
                mask = torch.stack([pad_rows([[1.0] * len(r.ids) for r in groups[i][1]], length) for i in kept_idx]) > 0
                if args.algorithm == "agapo":
                    rollout = torch.stack([pad_rows([r.logprobs for r in groups[i][1]], length) for i in kept_idx])
                    local_loss, stats = objectives.agapo_loss(
                        logp, rollout, local_adv, mask, clip=preset.posttrain.is_clip
                    )
                    count, trunc = float(stats["tokens"]), stats["truncated_share"] * stats["tokens"]
                else:
                    local_loss, count = objectives.grouper_loss(logp, mask, local_adv), float(len(kept_idx))
            # the global loss: AGAPO's mean over every rank's response tokens, GROUPER's over every kept group;
            # sync_gradients averages over data-parallel ranks, hence the factor dp_size
            total, trunc_total = dp_sum([count, trunc], dp_group)
            objective = local_loss * (count / total * dp_size)
            if extra is not None:
                objective = objective + extra
            objective.backward()
            training.sync_gradients(model)
            training.clip_grad_norm(model, preset.pretrain.grad_clip)
            optimizer.step()
            scheduler.step()
            value = float(local_loss.detach())
            losses.append(value if dp_size == 1 else dp_sum([value * count / total], dp_group)[0])
            truncated.append(trunc_total / total)
        all_rows = [r for g in groups for r in g[1]]
        length_sum, n_rows, entropy_sum, n_tokens = dp_sum(
            [sum(len(r.ids) for r in all_rows), len(all_rows), sum(sum(r.entropy) for r in all_rows),
             sum(len(r.entropy) for r in all_rows)],
            dp_group,
        )  # fmt: skip
        row = {
            "stage": args.algorithm,
            "step": step + 1,
            "mean_reward": float(rewards_t.mean()),
            "share_filtered": float(dropped),
            "mean_response_length": length_sum / n_rows,
            "entropy": entropy_sum / max(1.0, n_tokens),
            "loss": sum(losses) / len(losses) if losses else 0.0,
            "updates": len(losses),
            "lr": st.lr,
            "step_seconds": time.perf_counter() - t0,
        }
        if args.algorithm == "agapo":
            row["is_truncated_share"] = sum(truncated) / len(truncated) if truncated else 0.0
        if rank == 0:
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
    torch.distributed.barrier()
    if rank != 0:
        return {}
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
        "world_size": world,
        "tensor_parallel": args.tensor_parallel,
        "expert_parallel": args.expert_parallel,
        "resumed_from": resumed_from,
        "router_frozen_tensors": len(router),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


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
    ap.add_argument("--judge-base-url", default=None, help="OpenAI-compatible endpoint of the LLM judge")
    ap.add_argument("--judge-model", default=None, help="the judge's served model name")
    ap.add_argument("--judge-cache", default=None, type=Path, help="the judge's SQLite answer cache")
    ap.add_argument("--rollout-base-url", default=None, help="OpenAI-compatible rollout server (model.serve)")
    ap.add_argument("--rollout-model", default="policy", help="the rollout server's served model name")
    ap.add_argument("--tensor-parallel", type=int, default=1, help="TP ranks (the world: TP x DP)")
    ap.add_argument("--expert-parallel", type=int, default=1, help="EP ranks (they split the DP ranks)")
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
        except (
            TrainingSetupError,
            PresetError,
            checkpoint.CheckpointError,
            json.JSONDecodeError,
            ValueError,
            RolloutError,
        ) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            if report.pipes is not None:
                raise
            return 2
        if rank == 0:
            metadata = {k: v for k, v in summary.items() if v is not None}
            report.materialization(metadata, report.extras.get("artifact_version"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
