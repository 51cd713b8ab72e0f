"""One training step of the K-EXAONE model, and the optimizer and schedule it uses.

Only what checkpointing, inference tests and benchmarks need; the pre-training loop (data, stages,
Pipes) builds on it in a later issue. Read top to bottom:

1. ``adamw(model, preset)``: a plain ``torch.optim.AdamW`` (Megatron's ``get_megatron_optimizer`` is
   CUDA-only); matrices decay, norms and other 1-D tensors do not.
2. ``wsd_scheduler(optimizer, preset)``: Megatron's ``OptimizerParamScheduler`` with the
   Warmup-Stable-Decay schedule, in optimizer steps, lengths from ``preset.pretrain``.
3. ``train_step(...)``: forward with labels -> mean LM loss; backward (the MTP loss, weight
   ``mtp_loss_scaling_factor``, and the sequence aux loss, weight ``moe_aux_loss_coeff``, reach the
   gradients through Megatron's autograd hooks); clip; step; schedule; then the aux-loss-free
   balancing: each router's expert bias moves by ``moe_router_bias_update_rate`` towards balance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kexaone_dag.presets import Preset

# WSD's decay shape is not in the report; linear to min_lr is the common choice (and Megatron's simplest).
WSD_DECAY_STYLE = "linear"
ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8


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


def adamw(model: torch.nn.Module, preset: Preset) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``wd_mult`` is read by the scheduler when it sets weight decay."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "wd_mult": 1.0}, {"params": no_decay, "wd_mult": 0.0}],
        lr=preset.pretrain.max_lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=preset.pretrain.weight_decay)


def wsd_scheduler(optimizer: torch.optim.Optimizer, preset: Preset):
    """Megatron's OptimizerParamScheduler: linear warmup from 0, flat at max_lr, decay to min_lr."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    s, p = schedule(preset), preset.pretrain
    return OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=p.max_lr, min_lr=p.min_lr,
        lr_warmup_steps=s.warmup_steps, lr_decay_steps=s.total_steps, lr_decay_style="WSD",
        wsd_decay_steps=s.decay_steps, lr_wsd_decay_style=WSD_DECAY_STYLE,
        start_wd=p.weight_decay, end_wd=p.weight_decay, wd_incr_steps=s.total_steps,
        wd_incr_style="constant")


def batch_from_tokens(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """[b, s+1] token ids -> inputs, next-token labels, positions and a loss mask, each [b, s]."""
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"expected token ids of shape [batch, seq+1] with seq >= 1, got {tuple(tokens.shape)}")
    input_ids, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    positions = torch.arange(input_ids.shape[1], device=tokens.device).unsqueeze(0).expand_as(input_ids)
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions,
            "loss_mask": torch.ones_like(input_ids, dtype=torch.float32)}


@dataclass(frozen=True)
class StepResult:
    lm_loss: float  # mean next-token cross entropy of the main head
    mtp_loss: float  # mean cross entropy of the MTP head(s), before scaling
    seq_aux_loss: float  # the balancing term added to the objective (already times moe_aux_loss_coeff)
    loss: float  # lm_loss + mtp_loss_scaling_factor * mtp_loss + seq_aux_loss: what the gradients follow
    grad_norm: float
    lr: float  # the learning rate this step used


def _clear_loss_trackers() -> None:
    from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker
    from megatron.core.transformer.multi_token_prediction import MTPLossLoggingHelper

    get_moe_metrics_tracker().clear()
    MTPLossLoggingHelper.clean_metrics_in_tracker()


def _tracked_losses(config) -> tuple[float, float]:
    """(mean MTP loss over depths, seq aux loss summed over MoE layers and times its coefficient)."""
    from megatron.core.transformer.moe.moe_logging import get_moe_metrics_tracker
    from megatron.core.transformer.multi_token_prediction import MTPLossLoggingHelper

    mtp = MTPLossLoggingHelper.tracker.get("loss_values")
    mtp_loss = float(mtp.sum()) / max(1, config.mtp_num_layers or 0) if mtp is not None else 0.0
    entry = get_moe_metrics_tracker().metrics.get("seq_load_balancing_loss")
    aux = float(entry.values.sum()) * config.moe_aux_loss_coeff if entry is not None else 0.0
    return mtp_loss, aux


def update_expert_bias(model: torch.nn.Module) -> None:
    """Aux-loss-free balancing after a global batch: bias += rate * sign(mean load - expert load).

    Megatron does this in finalize_model_grads, which needs its DDP wrapper; with a plain optimizer the
    caller runs the same two functions.
    """
    from megatron.core.distributed.finalize_model_grads import (
        _update_router_expert_bias,
        reset_model_temporary_tensors,
    )

    config = model.config
    if config.moe_router_enable_expert_bias:
        _update_router_expert_bias([model], config)
    reset_model_temporary_tensors(config, [model])


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch: dict[str, torch.Tensor],
               *, grad_clip: float) -> StepResult:
    """One optimizer step on one batch (``batch_from_tokens`` layout)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _clear_loss_trackers()
    mask = batch["loss_mask"]
    per_token = model(batch["input_ids"], batch["position_ids"], None, labels=batch["labels"], loss_mask=mask)
    lm_loss = (per_token * mask).sum() / mask.sum()
    lm_loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step(increment=1)
    update_expert_bias(model)
    mtp_loss, aux = _tracked_losses(model.config)
    lm = lm_loss.item()
    total = lm + model.config.mtp_loss_scaling_factor * mtp_loss + aux
    return StepResult(lm_loss=lm, mtp_loss=mtp_loss, seq_aux_loss=aux, loss=total,
                      grad_norm=float(grad_norm), lr=lr)


__all__ = ["Schedule", "StepResult", "adamw", "batch_from_tokens", "schedule", "train_step", "update_expert_bias",
           "wsd_scheduler"]
