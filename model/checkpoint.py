"""Checkpoints with Megatron ``dist_checkpointing``: model, optimizer, LR schedule, data position, RNG.

``save(directory, ...)`` writes only inside ``directory`` (created if missing, must be empty): the
artifact store stages a local folder and commits it atomically, so the checkpoint never needs to know
its final location. ``load(directory, ...)`` restores everything in place and returns the data position.

Layout of the sharded state dict:

* ``model``      ``model.sharded_state_dict()`` (ShardedTensors; re-shardable across TP/EP/PP);
* ``optimizer``  AdamW moments as ShardedTensors keyed after the model parameters they belong to
  (Megatron's ``optim_state_to_sharding_state``), param-group hyper-parameters and the common step;
* ``rng``        one ShardedObject per rank: Python, NumPy, torch CPU (+ CUDA and Megatron's tracker);
* common (plain) values: ``scheduler`` (OptimizerParamScheduler.state_dict), ``data_position`` (whatever
  the caller passes, e.g. consumed samples per stage) and ``tensor_shapes`` (checked before loading).

On CPU the caller's script must call ``save`` under ``if __name__ == "__main__":`` when run as a script:
the writer starts a helper process that re-imports the main module.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """The checkpoint cannot be written or does not fit the model; one line naming the problem."""


def _rank_and_world() -> tuple[int, int]:
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def rng_state() -> dict[str, Any]:
    """Every random stream a training step can draw from."""
    from megatron.core import tensor_parallel

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch_cpu": torch.get_rng_state(),
                             "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch_cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _init_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter its (zero) AdamW state, as torch would on the first step.

    Loading needs tensors to load into, and a checkpoint saved before the first step still needs the same
    layout. Zero moments at step 0 are exactly what AdamW starts from, so this changes no result.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _optimizer_sharded_state_dict(model_sharded: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state keyed after the model's ShardedTensors (as Megatron's FP32Optimizer does)."""
    from megatron.core.dist_checkpointing.optimizer import (
        get_param_id_to_sharded_param_map,
        optim_state_to_sharding_state,
    )

    _init_optimizer_state(optimizer)
    state = optimizer.state_dict()
    steps = {float(s["step"]) for s in state["state"].values()}
    if len(steps) > 1:
        raise CheckpointError(f"optimizer parameters are at different steps {sorted(steps)}; expected one")
    common_step = next(iter(state["state"].values()))["step"] if state["state"] else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    id_map = get_param_id_to_sharded_param_map(model_sharded, params)
    # moments have the parameter's shape; the scalar step is stored once, separately
    optim_state_to_sharding_state(state, id_map, exclude_keys=("step",))
    if common_step is not None:
        state["state"]["common_step"] = copy.deepcopy(common_step)
    return state


def _tensor_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in model.state_dict().items() if isinstance(t, torch.Tensor)}


def _sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    rank, world = _rank_and_world()
    model_sharded = model.sharded_state_dict()
    return {
        "model": model_sharded,
        "optimizer": _optimizer_sharded_state_dict(model_sharded, optimizer),
        "rng": ShardedObject("rng_state", rng_state(), (world,), (rank,), replica_id=0),
    }


def save(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *,
         data_position: Mapping[str, Any]) -> Path:
    """Write a complete checkpoint into ``directory`` (created if missing; must be empty)."""
    from megatron.core import dist_checkpointing

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"checkpoint target {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise CheckpointError(f"checkpoint directory {directory} is not empty; save into a fresh directory")
    state = _sharded_state(model, optimizer)
    state.update(scheduler=scheduler.state_dict(), data_position=dict(data_position),
                 tensor_shapes=_tensor_shapes(model))
    dist_checkpointing.save(state, str(directory))
    return directory


def check_compatible(directory: str | Path, model: torch.nn.Module) -> None:
    """Raise CheckpointError (one line) unless the checkpoint holds exactly this model's tensor shapes."""
    from megatron.core import dist_checkpointing

    directory = Path(directory)
    if not (directory / "metadata.json").exists():
        raise CheckpointError(f"{directory} is not a finished dist_checkpointing checkpoint (no metadata.json)")
    saved = dist_checkpointing.load_common_state_dict(str(directory)).get("tensor_shapes", {})
    here = _tensor_shapes(model)
    problems = [f"{k} is {saved[k]} there, {here[k]} here" for k in sorted(here) if k in saved and saved[k] != here[k]]
    problems += [f"{k} is missing there" for k in sorted(set(here) - set(saved))]
    problems += [f"{k} is missing here" for k in sorted(set(saved) - set(here))]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"checkpoint {directory} was saved from a differently-shaped model: "
                              f"{problems[0]}{more}")


def load(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: Any) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from ``directory``; returns the saved data position.

    ``scheduler`` must be freshly built (Megatron's scheduler adds the saved step count to its own).
    """
    from megatron.core import dist_checkpointing

    check_compatible(directory, model)
    if scheduler.num_steps != 0:
        raise CheckpointError(f"load into a freshly built scheduler (this one is at step {scheduler.num_steps})")
    loaded = dist_checkpointing.load(_sharded_state(model, optimizer), str(directory))
    model.load_state_dict(loaded["model"], strict=True)
    optim = loaded["optimizer"]
    common_step = optim["state"].pop("common_step", None)
    if common_step is not None:
        for param_state in optim["state"].values():
            param_state["step"] = copy.deepcopy(common_step)
    optimizer.load_state_dict(optim)
    scheduler.load_state_dict(loaded["scheduler"])
    set_rng_state(loaded["rng"])
    return dict(loaded["data_position"])


__all__ = ["CheckpointError", "check_compatible", "load", "rng_state", "save", "set_rng_state"]
