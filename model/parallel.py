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
    if pipeline_parallel > 1:
        cpu_compat.ensure_pipeline()  # Megatron's pipeline schedules on CPU (no-op with CUDA)
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
            # whole experts per rank (model.layout's accounting): Megatron's default would split every expert
            # over TP too and need TP x EP to divide the ranks of a pipeline stage (TP4 x EP32 > 32 on 64 GPUs)
            expert_tensor_parallel_size=1,
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


def reset() -> None:
    """Forget Megatron's parallel state (torch.distributed stays up), so ``initialize`` can set a new layout:
    the context-parallel comparison runs CP=1 then CP=N in the same processes."""
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()


# -- context parallelism: the load-balanced sequence split ---------------------------------------------------
#
# With causal attention, the token at position i attends to i earlier tokens, so cutting a sequence into CP
# contiguous pieces would give the last rank most of the work. Megatron's convention (what TE's context-parallel
# attention expects of its inputs): cut the sequence into 2*CP equal chunks and give rank r the chunks r and
# 2*CP-1-r, one cheap and one expensive, in that order. Every rank then holds 2 chunks and the same attention
# work; the rotary embedding (Megatron's RotaryEmbedding with its cp_group) picks the same chunks' positions.


def context_parallel_chunks(cp_size: int, cp_rank: int) -> tuple[int, int]:
    """The two of the ``2 * cp_size`` sequence chunks that context-parallel rank ``cp_rank`` holds."""
    if cp_size < 1 or not 0 <= cp_rank < cp_size:
        raise ValueError(f"context-parallel rank {cp_rank} is outside 0..{cp_size - 1}")
    return cp_rank, 2 * cp_size - 1 - cp_rank


def split_for_context_parallel(tensor: torch.Tensor, cp_size: int, cp_rank: int, seq_dim: int = 1) -> torch.Tensor:
    """This rank's share of ``tensor`` along ``seq_dim``: chunks (r, 2*cp-1-r) of 2*cp, concatenated."""
    if cp_size == 1:
        return tensor
    length = tensor.shape[seq_dim]
    if length % (2 * cp_size):
        raise ValueError(f"sequence length {length} does not split into 2 x {cp_size} context-parallel chunks")
    chunks = tensor.chunk(2 * cp_size, dim=seq_dim)
    first, second = context_parallel_chunks(cp_size, cp_rank)
    return torch.cat([chunks[first], chunks[second]], dim=seq_dim)


def gather_from_context_parallel(parts: list[torch.Tensor], seq_dim: int = 1) -> torch.Tensor:
    """The inverse of ``split_for_context_parallel``: ``parts[r]`` is rank r's share; returns the sequence."""
    cp_size = len(parts)
    if cp_size == 1:
        return parts[0]
    chunks: list[torch.Tensor | None] = [None] * (2 * cp_size)
    for rank, part in enumerate(parts):
        first, second = context_parallel_chunks(cp_size, rank)
        chunks[first], chunks[second] = part.chunk(2, dim=seq_dim)
    return torch.cat(chunks, dim=seq_dim)  # type: ignore[arg-type]


def context_parallel_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This context-parallel rank's share of every ``[batch, seq]`` tensor of a training batch."""
    from megatron.core import parallel_state

    cp_size = parallel_state.get_context_parallel_world_size()
    if cp_size == 1:
        return batch
    cp_rank = parallel_state.get_context_parallel_rank()
    return {k: split_for_context_parallel(v, cp_size, cp_rank, seq_dim=1) for k, v in batch.items()}


def is_initialized() -> bool:
    from megatron.core import parallel_state

    return torch.distributed.is_initialized() and parallel_state.model_parallel_is_initialized()


__all__ = [
    "ParallelStateError",
    "context_parallel_batch",
    "context_parallel_chunks",
    "gather_from_context_parallel",
    "initialize",
    "is_initialized",
    "reset",
    "seed_everything",
    "split_for_context_parallel",
]
