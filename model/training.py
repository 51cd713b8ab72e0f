"""The K-EXAONE training step, its optimizer (Muon + AdamW) and its WSD schedule.

Read top to bottom:

1. The step arithmetic is ``model.stages`` (``schedule(preset)``: optimizer steps of the whole pre-training
   run, one WSD schedule that the three curriculum stages share; ``stage_steps``: the slice each stage owns).
2. ``build_optimizer(model, preset)``: the report's Muon (Megatron-Core's ``TensorParallelMuon`` from the
   ``emerging_optimizers`` package, knobs from Megatron's ``OptimizerConfig``) on the 2-D weight matrices,
   AdamW on embeddings, output head, norms and biases -- Megatron's own split. ``optimizer="adam"`` in the
   preset is the explicit fallback (plain AdamW everywhere); Muon asked for but not installed is an error,
   never a silent switch. Megatron's ``get_megatron_optimizer`` needs CUDA, so the optimizers are built here.
3. ``wsd_scheduler(optimizer, preset)``: Megatron's ``OptimizerParamScheduler`` with Warmup-Stable-Decay.
4. ``train_step(...)``: forward with labels -> mean LM loss; backward (the MTP loss, weight
   ``mtp_loss_scaling_factor``, and the sequence aux loss, weight ``moe_aux_loss_coeff``, reach the
   gradients through Megatron's autograd hooks); data-parallel gradient averaging; global-norm clipping
   across model-parallel ranks; step; schedule; then the aux-loss-free balancing: each router's expert
   bias moves by ``moe_router_bias_update_rate`` towards balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from config import Preset
from model.stages import schedule

# WSD's decay shape is not in the report; linear to min_lr is the common choice (and Megatron's simplest).
WSD_DECAY_STYLE = "linear"
ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8


class OptimizerUnavailableError(RuntimeError):
    """The preset asks for an optimizer whose package is not installed."""


def adamw(model: torch.nn.Module, preset: Preset) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``wd_mult`` is read by the scheduler when it sets weight decay."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "wd_mult": 1.0}, {"params": no_decay, "wd_mult": 0.0}],
        lr=preset.pretrain.max_lr,
        betas=ADAM_BETAS,
        eps=ADAM_EPS,
        weight_decay=preset.pretrain.weight_decay,
    )


def _is_muon_matrix(param: torch.nn.Parameter) -> bool:
    """Megatron's rule: Muon for 2-D weights except the embedding and the output head (those, norms and
    biases go to AdamW)."""
    return param.ndim == 2 and not getattr(param, "is_embedding_or_output_parameter", False)


class MuonWithAdamW:
    """Two torch optimizers stepping as one: ``param_groups`` is the union, so Megatron's scheduler sets
    the LR and weight decay of both; ``optimizers`` is what checkpointing saves one by one."""

    def __init__(self, muon: torch.optim.Optimizer, adam: torch.optim.Optimizer):
        self.optimizers = (muon, adam)

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict:
        return {str(i): opt.state_dict() for i, opt in enumerate(self.optimizers)}

    def load_state_dict(self, state: dict) -> None:
        for i, opt in enumerate(self.optimizers):
            opt.load_state_dict(state[str(i)])


def muon(model: torch.nn.Module, preset: Preset) -> MuonWithAdamW:
    """Megatron-Core's TensorParallelMuon on weight matrices + AdamW on the rest."""
    from megatron.core.optimizer.emerging_optimizers import HAVE_EMERGING_OPTIMIZERS
    from megatron.core.optimizer.optimizer_config import OptimizerConfig

    if not HAVE_EMERGING_OPTIMIZERS:
        raise OptimizerUnavailableError(
            "pretrain.optimizer='muon' needs the emerging-optimizers package (uv sync installs it); set "
            "pretrain.optimizer='adam' to choose the AdamW fallback explicitly"
        )
    from megatron.core.optimizer.emerging_optimizers import TensorParallelMuon

    p, cfg = preset.pretrain, OptimizerConfig(optimizer="muon", lr=preset.pretrain.max_lr)
    m = model.config
    params = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    matrices = [q for _, q in params if _is_muon_matrix(q)]
    rest = [q for _, q in params if not _is_muon_matrix(q)]
    muon_opt = TensorParallelMuon(
        [{"params": matrices, "wd_mult": 1.0}],
        lr=p.max_lr,
        momentum=cfg.muon_momentum,
        nesterov=cfg.muon_nesterov,
        weight_decay=p.weight_decay,
        split_qkv=cfg.muon_split_qkv,
        is_qkv_fn=lambda q: getattr(q, "is_qkv", False),
        qkv_split_shapes=[m.num_attention_heads // m.num_query_groups * m.kv_channels, m.kv_channels, m.kv_channels],
        # fp32 matmuls on CPU ("medium" would round through bf16 there); Megatron's default on GPU
        fp32_matmul_prec=cfg.muon_fp32_matmul_prec if torch.cuda.is_available() else "highest",
        coefficient_type=cfg.muon_coefficient_type,
        num_ns_steps=cfg.muon_num_ns_steps,
        scale_mode=cfg.muon_scale_mode,
        extra_scale_factor=p.muon_extra_scale_factor,
        tp_mode=cfg.muon_tp_mode,
    )
    adam_opt = torch.optim.AdamW(
        [
            {"params": [q for q in rest if q.ndim >= 2], "wd_mult": 1.0},
            {"params": [q for q in rest if q.ndim < 2], "wd_mult": 0.0},
        ],
        lr=p.max_lr,
        betas=ADAM_BETAS,
        eps=ADAM_EPS,
        weight_decay=p.weight_decay,
    )
    return MuonWithAdamW(muon_opt, adam_opt)


def build_optimizer(model: torch.nn.Module, preset: Preset):
    """The preset's optimizer: ``muon`` (Muon + AdamW, the report's) or ``adam`` (the explicit fallback)."""
    return muon(model, preset) if preset.pretrain.optimizer == "muon" else adamw(model, preset)


def wsd_scheduler(optimizer: torch.optim.Optimizer, preset: Preset):
    """Megatron's OptimizerParamScheduler: linear warmup from 0, flat at max_lr, decay to min_lr."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    s, p = schedule(preset), preset.pretrain
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=p.max_lr,
        min_lr=p.min_lr,
        lr_warmup_steps=s.warmup_steps,
        lr_decay_steps=s.total_steps,
        lr_decay_style="WSD",
        wsd_decay_steps=s.decay_steps,
        lr_wsd_decay_style=WSD_DECAY_STYLE,
        start_wd=p.weight_decay,
        end_wd=p.weight_decay,
        wd_incr_steps=s.total_steps,
        wd_incr_style="constant",
    )


def batch_from_tokens(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """[b, s+1] token ids -> inputs, next-token labels, positions and a loss mask, each [b, s]."""
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"expected token ids of shape [batch, seq+1] with seq >= 1, got {tuple(tokens.shape)}")
    input_ids, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    positions = torch.arange(input_ids.shape[1], device=tokens.device).unsqueeze(0).expand_as(input_ids)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": positions,
        "loss_mask": torch.ones_like(input_ids, dtype=torch.float32),
    }


@dataclass(frozen=True)
class StepResult:
    lm_loss: float  # mean next-token cross entropy of the main head (averaged over data-parallel ranks)
    mtp_loss: float  # mean cross entropy of the MTP head(s), before scaling
    seq_aux_loss: float  # the balancing term added to the objective (already times moe_aux_loss_coeff)
    loss: float  # lm_loss + mtp_loss_scaling_factor * mtp_loss + seq_aux_loss: what the gradients follow
    grad_norm: float  # global norm before clipping, over every model-parallel shard
    lr: float  # the learning rate this step used
    expert_load_imbalance: float  # max / mean tokens per expert over the global batch, mean over MoE layers


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


def _comm_device() -> torch.device:
    """Where scalars for a collective live: the current GPU under NCCL (it reduces CUDA tensors only), else CPU."""
    if torch.distributed.is_initialized() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _data_parallel_mean(value: float) -> float:
    from megatron.core import parallel_state

    group = parallel_state.get_data_parallel_group()
    if torch.distributed.get_world_size(group) == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(t, group=group)
    return float(t) / torch.distributed.get_world_size(group)


def sync_gradients(model: torch.nn.Module) -> None:
    """Average gradients over data-parallel replicas (what Megatron's DDP wrapper does, without its buffers).

    Dense parameters are replicated on every data-parallel rank: all-reduce and divide by the DP size.
    Expert parameters (``allreduce=False``) live on one expert-parallel rank and already hold the sum of
    every DP rank's contribution (the token dispatcher's backward brings it home): all-reduce over the
    expert-data-parallel replicas only, and divide by the DP size too, so both match the global mean loss.
    """
    from megatron.core import parallel_state

    dp_group = parallel_state.get_data_parallel_group()
    edp_group = parallel_state.get_expert_data_parallel_group()
    dp = torch.distributed.get_world_size(dp_group)
    if dp == 1:
        return
    edp = torch.distributed.get_world_size(edp_group)
    for param in model.parameters():
        if param.grad is None:
            continue
        is_expert = not getattr(param, "allreduce", True)
        if not is_expert:
            torch.distributed.all_reduce(param.grad, group=dp_group)
        elif edp > 1:
            torch.distributed.all_reduce(param.grad, group=edp_group)
        param.grad.div_(dp)


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> float:
    """Global L2 norm over all shards, counted once each, then clip every gradient by the same factor.

    Dense weights that tensor parallelism splits count on every TP rank, replicated ones (norms, router)
    on TP rank 0 only; expert weights are summed over the expert-model-parallel group.
    """
    from megatron.core import parallel_state, tensor_parallel

    grads = [(p, p.grad) for p in model.parameters() if p.grad is not None]
    dense = torch.zeros(1, dtype=torch.float64, device=_comm_device())
    expert = torch.zeros(1, dtype=torch.float64, device=_comm_device())
    pipeline = parallel_state.get_pipeline_model_parallel_world_size() > 1
    for param, grad in grads:
        if not tensor_parallel.param_is_not_tensor_parallel_duplicate(param):
            continue
        if pipeline and getattr(param, "shared", False):
            continue  # the last stage's copy of the embedding: counted once, on the first stage
        sq = grad.detach().double().pow(2).sum()
        if getattr(param, "allreduce", True):
            dense += sq
        else:
            expert += sq
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        torch.distributed.all_reduce(dense, group=parallel_state.get_tensor_model_parallel_group())
    if parallel_state.get_expert_tensor_and_model_parallel_world_size() > 1:
        torch.distributed.all_reduce(expert, group=parallel_state.get_expert_tensor_and_model_parallel_group())
    if pipeline:  # every stage holds other layers: the norm is over all of them
        both = dense + expert
        torch.distributed.all_reduce(both, group=parallel_state.get_pipeline_model_parallel_group())
        total = float(both.sqrt())
    else:
        total = float((dense + expert).sqrt())
    coeff = max_norm / (total + 1e-6)
    if coeff < 1.0:
        for _, grad in grads:
            grad.detach().mul_(coeff)
    return total


def expert_load_imbalance(model: torch.nn.Module) -> float:
    """max/mean tokens per expert of this global batch (1.0 = perfectly balanced), mean over MoE layers.

    Reads the routers' token counts, so call it before ``update_expert_bias`` resets them.
    """
    from megatron.core import parallel_state

    counts = [
        m.local_tokens_per_expert.detach().double().clone()
        for m in model.modules()
        if hasattr(m, "local_tokens_per_expert") and hasattr(m, "expert_bias")
    ]
    if not counts:
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            return _pipeline_layer_mean(0.0, 0)  # a stage of dense layers only still joins the reduction
        return 1.0
    stacked = torch.stack(counts)
    group = parallel_state.get_tensor_and_data_parallel_group(with_context_parallel=True)
    if torch.distributed.get_world_size(group) > 1:
        torch.distributed.all_reduce(stacked, group=group)
    mean = stacked.mean(dim=1).clamp_min(1e-9)
    ratios = stacked.max(dim=1).values / mean
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:  # each stage has its own MoE layers
        return _pipeline_layer_mean(float(ratios.sum()), len(counts))
    return float(ratios.mean())


def _pipeline_layer_mean(local_sum: float, local_count: int) -> float:
    from megatron.core import parallel_state

    t = torch.tensor([local_sum, float(local_count)], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(t, group=parallel_state.get_pipeline_model_parallel_group())
    return float(t[0] / t[1].clamp_min(1.0))


def update_expert_bias(model: torch.nn.Module) -> None:
    """Aux-loss-free balancing after a global batch: bias += rate * sign(mean load - expert load).

    Megatron does this in finalize_model_grads, which needs its DDP wrapper; with a plain optimizer the
    caller runs the same two functions (the token counts are all-reduced over TP x DP x CP inside).
    """
    from megatron.core.distributed.finalize_model_grads import (
        _update_router_expert_bias,
        reset_model_temporary_tensors,
    )

    config = model.config
    if config.moe_router_enable_expert_bias:
        _update_router_expert_bias([model], config)
    reset_model_temporary_tensors(config, [model])


def train_step(
    model: torch.nn.Module,
    optimizer,
    scheduler,
    batch: dict[str, torch.Tensor],
    *,
    grad_clip: float,
    micro_batch_size: int | None = None,
) -> StepResult:
    """One optimizer step on this rank's share of a global batch (``batch_from_tokens`` layout).

    Pipeline (``micro_batch_size`` splits the batch into micro-batches for Megatron's schedule) and context
    parallelism take their own paths below; with neither, this is the whole step."""
    from megatron.core import parallel_state

    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        return pipeline_train_step(
            model, optimizer, scheduler, batch, grad_clip=grad_clip, micro_batch_size=micro_batch_size
        )
    if parallel_state.get_context_parallel_world_size() > 1:
        return context_parallel_train_step(model, optimizer, scheduler, batch, grad_clip=grad_clip)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _clear_loss_trackers()
    device = next(model.parameters()).device  # batches come from the CPU data loader
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    mask = batch["loss_mask"]
    per_token = model(batch["input_ids"], batch["position_ids"], None, labels=batch["labels"], loss_mask=mask)
    lm_loss = (per_token * mask).sum() / mask.sum().clamp_min(1)
    lm_loss.backward()
    sync_gradients(model)
    finished = _finish_step(model, optimizer, scheduler, grad_clip)
    mtp_loss, aux = _tracked_losses(model.config)
    return _step_result(model, lm_loss.item(), mtp_loss, aux, *finished)


def _step_result(
    model, lm: float, mtp_loss: float, aux: float, grad_norm: float, lr: float, imbalance: float
) -> StepResult:
    """This rank's losses averaged over the data-parallel replicas, with the step's norm, LR and balance."""
    lm = _data_parallel_mean(lm)
    mtp_loss, aux = _data_parallel_mean(mtp_loss), _data_parallel_mean(aux)
    total = lm + model.config.mtp_loss_scaling_factor * mtp_loss + aux
    return StepResult(
        lm_loss=lm,
        mtp_loss=mtp_loss,
        seq_aux_loss=aux,
        loss=total,
        grad_norm=grad_norm,
        lr=lr,
        expert_load_imbalance=imbalance,
    )


def _finish_step(model, optimizer, scheduler, grad_clip: float) -> tuple[float, float, float]:
    """Clip, step, schedule, balance: (grad norm, the LR used, expert load imbalance)."""
    grad_norm = clip_grad_norm(model, grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step(increment=1)
    imbalance = expert_load_imbalance(model)
    update_expert_bias(model)
    return grad_norm, lr, imbalance


def _sum_over(group, *values: float) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    if torch.distributed.get_world_size(group) > 1:
        torch.distributed.all_reduce(t, group=group)
    return [float(v) for v in t]


# -- pipeline parallelism: Megatron's 1F1B schedule over the stages -----------------------------------------


def sync_embedding_copies(model: torch.nn.Module) -> None:
    """Sum the word-embedding gradients of the first stage and the last stage's copy (the MTP block's
    embedding, and the output head when the embeddings are tied), so both copies take the same update --
    what Megatron's finalize_model_grads does (_allreduce_word_embedding_grads) without its DDP buffers."""
    from megatron.core import parallel_state

    if not parallel_state.is_rank_in_embedding_group():
        return
    group = parallel_state.get_embedding_group()
    if torch.distributed.get_world_size(group) == 1:
        return
    weight = model.shared_embedding_or_output_weight()
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    torch.distributed.all_reduce(weight.grad, group=group)


def pipeline_train_step(
    model: torch.nn.Module,
    optimizer,
    scheduler,
    batch: dict[str, torch.Tensor],
    *,
    grad_clip: float,
    micro_batch_size: int | None = None,
) -> StepResult:
    """One optimizer step with pipeline parallelism: Megatron's schedule (1F1B, no interleaving) runs the
    micro-batches through this rank's stage; the loss lives on the last stage.

    Every rank of a pipeline reads the same batch (batches are a pure function of the step). The LM loss
    of a micro-batch is its masked token sum over the token count of the *whole* batch, so the micro-batches
    add up to exactly the loss of the one-forward step; the MTP and sequence-aux losses are Megatron's
    per-micro-batch means (scaled by 1/micro-batches inside the schedule), equal to the one-forward values
    when every micro-batch has the same number of loss tokens (packed pre-training data)."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    model.train()
    optimizer.zero_grad(set_to_none=True)
    _clear_loss_trackers()
    local = batch["input_ids"].shape[0]
    micro = micro_batch_size if micro_batch_size and local % micro_batch_size == 0 else local
    num_micro = local // micro
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}  # no copy on CPU
    total_tokens = batch["loss_mask"].sum().clamp_min(1)
    micro_batches = [{k: v[i * micro : (i + 1) * micro] for k, v in batch.items()} for i in range(num_micro)]

    def forward_step(data_iterator, chunk):
        mb = next(data_iterator)
        mask = mb["loss_mask"]
        output = chunk(mb["input_ids"], mb["position_ids"], None, labels=mb["labels"], loss_mask=mask)

        def loss_func(per_token: torch.Tensor):
            lm_sum = (per_token * mask).sum()
            # the schedule divides by num_micro: the micro-batches then sum to lm_sum / total_tokens
            return lm_sum * (num_micro / total_tokens), {"lm_sum": lm_sum.detach()}

        return output, loss_func

    store = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(micro_batches),
        model=[model],
        num_microbatches=num_micro,
        seq_length=batch["input_ids"].shape[1],
        micro_batch_size=micro,
        forward_only=False,
    )
    sync_embedding_copies(model)
    sync_gradients(model)
    finished = _finish_step(model, optimizer, scheduler, grad_clip)
    mtp_loss, aux = _tracked_losses(model.config)  # this stage's share (MTP: last stage only)
    lm_sum = float(sum(float(d["lm_sum"]) for d in store)) if store else 0.0
    pp_group = parallel_state.get_pipeline_model_parallel_group()
    lm_sum, mtp_loss, aux = _sum_over(pp_group, lm_sum, mtp_loss / num_micro, aux / num_micro)
    return _step_result(model, lm_sum / float(total_tokens), mtp_loss, aux, *finished)


# -- context parallelism (GPUs with TransformerEngine attention) ---------------------------------------------


def sync_gradients_context_parallel(model: torch.nn.Module) -> None:
    """Gradients with context parallelism: each CP rank's backward holds its sequence chunks' share of the
    gradient, so dense gradients are *summed* over the CP ranks of a data-parallel replica and averaged over
    the replicas -- one all-reduce over the data-parallel x context-parallel group, divided by the DP size
    (Megatron: loss x CP, gradients averaged over DP x CP; the same numbers). Expert parameters: all-reduce
    over the expert-data-parallel group (which spans the CP ranks too), divided by the DP size."""
    from megatron.core import parallel_state

    dp_cp_group = parallel_state.get_data_parallel_group(with_context_parallel=True)
    edp_group = parallel_state.get_expert_data_parallel_group()
    dp = parallel_state.get_data_parallel_world_size()
    edp = torch.distributed.get_world_size(edp_group)
    for param in model.parameters():
        if param.grad is None:
            continue
        if getattr(param, "allreduce", True):
            torch.distributed.all_reduce(param.grad, group=dp_cp_group)
        elif edp > 1:
            torch.distributed.all_reduce(param.grad, group=edp_group)
        param.grad.div_(dp)


def context_parallel_train_step(
    model: torch.nn.Module, optimizer, scheduler, batch: dict[str, torch.Tensor], *, grad_clip: float
) -> StepResult:
    """One optimizer step with context parallelism: ``batch`` holds this data-parallel rank's *whole*
    sequences; each CP rank keeps its load-balanced share (``model.parallel.context_parallel_batch``).

    The LM loss on a CP rank is its masked token sum over the token count of the whole sequences (summed over
    the CP group), so the CP ranks' losses add up to the one-rank loss and so do their gradients. Megatron's
    auxiliary losses, with the same gradient convention (summed over CP, averaged over DP; Megatron scales the
    aux losses by CP and averages over DP x CP, the same numbers): the router's sequence aux loss on a rank is
    its share of the global loss (expert loads reduced over TP x CP, probabilities local / global token count:
    scale 1, the shares add up); the MTP loss is a per-rank token mean (scale 1/CP, the ranks' terms average)."""
    from megatron.core import parallel_state
    from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler
    from megatron.core.transformer.multi_token_prediction import MTPLossAutoScaler

    from model.parallel import context_parallel_batch

    cp = parallel_state.get_context_parallel_world_size()
    cp_group = parallel_state.get_context_parallel_group()
    device = next(model.parameters()).device
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _clear_loss_trackers()
    local = {k: v.to(device) for k, v in context_parallel_batch(batch).items()}
    mask = local["loss_mask"]
    total_tokens = batch["loss_mask"].to(device).sum().clamp_min(1)  # the whole sequences' (same on the CP ranks)
    # fresh tensors (set_loss_scale copies into the previous one, whose shape an earlier step chose)
    MoEAuxLossAutoScaler.main_loss_backward_scale = torch.ones(1, device=device)
    MTPLossAutoScaler.main_loss_backward_scale = torch.full((1,), 1.0 / cp, device=device)
    per_token = model(local["input_ids"], local["position_ids"], None, labels=local["labels"], loss_mask=mask)
    lm_sum = (per_token.float() * mask).sum()
    (lm_sum / total_tokens).backward()
    sync_gradients_context_parallel(model)
    finished = _finish_step(model, optimizer, scheduler, grad_clip)
    mtp_loss, aux = _tracked_losses(model.config)
    lm_sum_all, mtp_sum, aux_sum = _sum_over(cp_group, float(lm_sum), mtp_loss, aux)
    # MTP: each rank's value is its tokens' mean (average them); sequence aux: each rank's value is its share
    # of the global one (the router reduces the expert loads over TP x CP, the probabilities stay local): sum
    return _step_result(model, lm_sum_all / float(total_tokens), mtp_sum / cp, aux_sum, *finished)


def compare_context_parallel(
    preset: Preset | str = "tiny",
    *,
    context_parallel: int = 2,
    steps: int = 2,
    seq_length: int | None = None,
    batch_size: int | None = None,
    tolerance: float = 2e-2,
    seed: int = 1234,
) -> dict:
    """A CP=``context_parallel`` training run against CP=1 on the same GPUs, for a GPU check script.

    Call it on every rank of ``torchrun --nproc-per-node=<context_parallel>`` (CUDA + TransformerEngine).
    Phase 1: CP=1 (the ranks are data-parallel, each takes its share of the global batch); phase 2: CP=N,
    data-parallel size 1, every sequence split over the ranks (``model.parallel.context_parallel_batch``).
    Both phases start from the same initial weights (phase 1's, copied) and train ``steps`` steps on the same
    fixed random token batches of ``batch_size`` sequences (default the preset's global batch; divisible by
    the world size) x ``seq_length`` tokens (default the pre-training length; divisible by 2 x CP).
    Leaves Megatron's parallel state reset (``model.parallel.reset``); torch.distributed stays up.

    Returns (the same on every rank) ``{"context_parallel", "steps", "cp1": [StepResult as dict, ...],
    "cp": [...], "max_lm_loss_diff", "max_grad_norm_rel_diff", "tolerance", "ok"}``; ``ok`` is
    ``max_lm_loss_diff <= tolerance and max_grad_norm_rel_diff <= tolerance``.
    """
    from dataclasses import asdict

    from megatron.core import parallel_state

    from config import get_preset
    from model import parallel
    from model.architecture import build_model

    preset = get_preset(preset) if isinstance(preset, str) else preset
    seq = seq_length or preset.pretrain.seq_length
    size = batch_size or preset.pretrain.global_batch_size
    g = torch.Generator().manual_seed(seed)
    batches = [
        batch_from_tokens(torch.randint(0, preset.tokenizer.vocab_size, (size, seq + 1), generator=g))
        for _ in range(steps)
    ]

    def run(cp: int, init_state: dict | None) -> tuple[list[dict], dict]:
        if parallel.is_initialized():
            parallel.reset()
        parallel.initialize(context_parallel=cp, seed=preset.pretrain.seed)
        model = build_model(preset)
        if init_state is None:
            init_state = {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
        else:
            model.load_state_dict(init_state, strict=True)
        optimizer, device = build_optimizer(model, preset), next(model.parameters()).device
        scheduler = wsd_scheduler(optimizer, preset)
        dp, dp_rank = parallel_state.get_data_parallel_world_size(), parallel_state.get_data_parallel_rank()
        if size % dp:
            raise ValueError(f"batch of {size} sequences does not split over {dp} data-parallel ranks")
        rows = []
        for full in batches:
            share = size // dp
            local = {k: v[dp_rank * share : (dp_rank + 1) * share].to(device) for k, v in full.items()}
            rows.append(asdict(train_step(model, optimizer, scheduler, local, grad_clip=preset.pretrain.grad_clip)))
        del model, optimizer, scheduler
        return rows, init_state

    one, init = run(1, None)
    many, _ = run(context_parallel, init)
    parallel.reset()
    lm_diff = max(abs(a["lm_loss"] - b["lm_loss"]) for a, b in zip(one, many))
    norm_diff = max(abs(a["grad_norm"] - b["grad_norm"]) / max(1e-12, abs(a["grad_norm"])) for a, b in zip(one, many))
    return {
        "context_parallel": context_parallel,
        "steps": steps,
        "cp1": one,
        "cp": many,
        "max_lm_loss_diff": lm_diff,
        "max_grad_norm_rel_diff": norm_diff,
        "tolerance": tolerance,
        "ok": lm_diff <= tolerance and norm_diff <= tolerance,
    }


__all__ = [
    "MuonWithAdamW",
    "OptimizerUnavailableError",
    "StepResult",
    "adamw",
    "batch_from_tokens",
    "build_optimizer",
    "clip_grad_norm",
    "compare_context_parallel",
    "context_parallel_train_step",
    "expert_load_imbalance",
    "muon",
    "pipeline_train_step",
    "sync_embedding_copies",
    "sync_gradients_context_parallel",
    "sync_gradients",
    "train_step",
    "update_expert_bias",
    "wsd_scheduler",
]
