"""Process-level set-up every Megatron-Core user in this project shares: torch.distributed, Megatron's
parallel state and the random seeds. Idempotent, so tests, benchmarks and training code can all call
``initialize()`` without knowing whether somebody else already did.

Under ``torchrun`` (RANK/WORLD_SIZE in the environment) the process group comes from the environment;
otherwise a single process forms a world of size 1 over an in-memory store, so nothing listens on a port.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from model import cpu_compat


class ParallelStateError(RuntimeError):
    """The process is already set up with a different parallel layout."""


def initialize(
    *,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    expert_parallel: int = 1,
    context_parallel: int = 1,
    seed: int | None = None,
) -> None:
    """torch.distributed (gloo on CPU, nccl on GPU) + Megatron parallel state (+ seeds if given)."""
    from megatron.core import parallel_state

    cpu_compat.ensure()
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            torch.distributed.init_process_group(backend=backend)
        else:
            torch.distributed.init_process_group(
                backend=backend, store=torch.distributed.HashStore(), rank=0, world_size=1
            )
    wanted = {
        "tensor": tensor_parallel,
        "pipeline": pipeline_parallel,
        "expert": expert_parallel,
        "context": context_parallel,
    }
    if parallel_state.model_parallel_is_initialized():
        have = {
            "tensor": parallel_state.get_tensor_model_parallel_world_size(),
            "pipeline": parallel_state.get_pipeline_model_parallel_world_size(),
            "expert": parallel_state.get_expert_model_parallel_world_size(),
            "context": parallel_state.get_context_parallel_world_size(),
        }
        if have != wanted:
            raise ParallelStateError(f"parallel state is already initialized as {have}, asked for {wanted}")
    else:
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_parallel,
            pipeline_model_parallel_size=pipeline_parallel,
            expert_model_parallel_size=expert_parallel,
            context_parallel_size=context_parallel,
        )
    if seed is not None:
        seed_everything(seed)


def seed_everything(seed: int) -> None:
    """Python, NumPy, torch (CPU and, through Megatron's tracker, every model-parallel CUDA stream)."""
    from megatron.core import tensor_parallel

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def is_initialized() -> bool:
    from megatron.core import parallel_state

    return torch.distributed.is_initialized() and parallel_state.model_parallel_is_initialized()


__all__ = ["ParallelStateError", "initialize", "is_initialized", "seed_everything"]
