"""The shape of every training stage, by arithmetic on the preset (no torch): the global WSD schedule of
pre-training, each curriculum stage's step range, and each context-extension stage's length, batch,
steps and own LR schedule. The trainer (``model.train``) runs a ``StagePlan``; the assets read the same
plan to version and describe a stage without importing the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from config import Preset

METRICS = "metrics.jsonl"  # one JSON line per step, written by the trainer into its work dir and output
# NIAH cases of one length are answered together, up to this many prompt tokens per forward (1 case at 256K)
NIAH_BATCH_TOKENS = 32_768


@dataclass(frozen=True)
class Schedule:
    total_steps: int
    warmup_steps: int
    decay_steps: int  # the final "D" of WSD


def schedule(preset: Preset) -> Schedule:
    """Optimizer steps of the whole pre-training run: tokens / (sequence length x global batch)."""
    p = preset.pretrain
    total = max(2, math.ceil(p.total_tokens / (p.seq_length * p.global_batch_size)))
    warmup = max(1, round(p.warmup_fraction * total))
    decay = max(1, min(total - warmup, round(p.decay_fraction * total)))
    return Schedule(total_steps=total, warmup_steps=min(warmup, total - 1), decay_steps=decay)


def stage_steps(preset: Preset) -> dict[str, tuple[int, int]]:
    """Global optimizer-step range [first, end) of each curriculum stage, in stage order."""
    total, fractions = schedule(preset).total_steps, preset.pretrain.stage_token_fractions
    bounds, start, acc = {}, 0, 0.0
    for i, stage in enumerate(sorted(fractions)):
        acc += fractions[stage]
        end = total if i == len(fractions) - 1 else round(acc * total)
        bounds[stage] = (start, end)
        start = end
    return bounds


class TrainingSetupError(ValueError):
    """The stage cannot start as asked; one line naming the problem (raised before any training step)."""


@dataclass(frozen=True)
class StagePlan:
    stage: str
    seq_length: int
    global_batch_size: int
    first_step: int  # global optimizer step the stage starts at (the LR schedule is global)
    steps: int  # optimizer steps of this stage
    checkpoint_every_steps: int  # periodic resumable checkpoints, in steps of this stage
    # context extension: the stage's own warmup-stable-decay LR (the pre-training schedule has ended)
    peak_lr: float | None = None
    min_lr: float = 0.0
    warmup_steps: int = 0
    decay_steps: int = 0

    def lr_at(self, stage_step: int) -> float | None:
        """LR of stage step ``stage_step`` (0-based) on the stage's own schedule; None: the global one."""
        if self.peak_lr is None:
            return None
        if stage_step < self.warmup_steps:
            return self.peak_lr * (stage_step + 1) / self.warmup_steps
        into_decay = stage_step - (self.steps - self.decay_steps)
        if into_decay < 0:
            return self.peak_lr
        return self.peak_lr - (self.peak_lr - self.min_lr) * (into_decay + 1) / self.decay_steps

    @property
    def num_samples(self) -> int:
        return self.steps * self.global_batch_size

    @property
    def tokens(self) -> int:
        return self.num_samples * self.seq_length


CONTEXT_PREFIX = "context_"
SFT_STAGE = "sft"  # supervised fine-tuning (report §3.3): packed conversations, loss on assistant tokens


def stage_plan(preset: Preset, stage: str) -> StagePlan:
    """The shape of one stage. Pre-training ``stage1..3`` share one WSD schedule; the context-extension
    stages ``context_stage1..2`` follow it, each at its sequence length with the pre-training tokens per
    step (fewer, longer sequences); ``sft`` follows them on its own schedule (``posttrain.sft``)."""
    bounds = stage_steps(preset)
    p = preset.pretrain
    if stage in bounds:
        first, end = bounds[stage]
        return StagePlan(
            stage=stage,
            seq_length=p.seq_length,
            global_batch_size=p.global_batch_size,
            first_step=first,
            steps=end - first,
            checkpoint_every_steps=p.checkpoint_every_steps,
        )
    if stage == SFT_STAGE:
        sft = preset.posttrain.sft
        first = schedule(preset).total_steps + sum(
            stage_plan(preset, CONTEXT_PREFIX + k).steps for k in preset.context.stages
        )
        return StagePlan(
            stage=stage,
            seq_length=sft.seq_length,
            global_batch_size=sft.global_batch_size,
            first_step=first,
            steps=sft.steps,
            checkpoint_every_steps=sft.checkpoint_every_steps,
            peak_lr=sft.lr,
            min_lr=sft.min_lr,
            warmup_steps=sft.warmup_steps,
            decay_steps=sft.decay_steps,
        )
    known = [*bounds, *(CONTEXT_PREFIX + k for k in preset.context.stages), SFT_STAGE]
    if not stage.startswith(CONTEXT_PREFIX) or stage[len(CONTEXT_PREFIX) :] not in preset.context.stages:
        raise TrainingSetupError(f"unknown stage {stage!r} (known: {', '.join(known)})")
    first = schedule(preset).total_steps
    for key, c in preset.context.stages.items():
        batch = max(1, p.global_batch_size * p.seq_length // c.seq_length)
        steps = max(1, math.ceil(c.tokens / (batch * c.seq_length)))
        if CONTEXT_PREFIX + key == stage:
            warmup = min(steps - 1, round(p.warmup_fraction * steps))
            decay = max(1, min(steps - warmup, round(p.decay_fraction * steps)))
            return StagePlan(
                stage=stage,
                seq_length=c.seq_length,
                global_batch_size=batch,
                first_step=first,
                steps=steps,
                checkpoint_every_steps=c.checkpoint_every_steps,
                peak_lr=c.lr,
                min_lr=c.lr * p.min_lr / p.max_lr,
                warmup_steps=warmup,
                decay_steps=decay,
            )
        first += steps
    raise AssertionError("unreachable")
