"""The one place where Megatron-Core is adapted to run without a GPU.

Megatron-Core has no supported CPU-only path (its maintainers say so); a handful of call sites assume a
CUDA device. The tiny preset trains, evaluates and checkpoints on 2 CPU cores, so this module replaces
exactly those call sites, and nothing else, when no CUDA device is present. On a GPU it is never applied.

Each patch is named, explains why it exists, can be reverted, and is covered by
``tests/unit/test_model_cpu_compat.py`` (which also shows that omitting any single one breaks a CPU run):

* ``current_device``  ``torch.cuda.current_device()`` answers ``"cpu"``. Router buffers, the MTP loss
  tracker, the attention scratch buffer and MoE helpers allocate with ``device=torch.cuda.current_device()``.
* ``causal_masks``    CPU versions of ``get_default_causal_mask`` / ``get_sliding_window_causal_mask``
  (``megatron.core.transformer.utils``, also bound by name in ``megatron.core.fusions.fused_softmax``),
  which hard-code ``device="cuda"``. Same arithmetic, same window semantics. The CPU model itself builds
  no masks (``model.attention.CpuCoreAttention``); Megatron's ``DotProductAttention``, the reference that
  attention is tested and benchmarked against, needs them.
* ``synchronize``     ``torch.cuda.synchronize()`` is a no-op: the ``dist_checkpointing`` writer calls it
  after staging tensors to host memory, which on CPU they already are.
* ``rng_tracker``     Megatron's model-parallel RNG tracker is created as the *inference* tracker, whose
  ``add``/``fork`` do not touch ``torch.cuda`` RNG state (the training tracker calls
  ``torch.cuda.get_rng_state``). With world size 1 and dropout 0 (the recipe uses none) no random stream
  is lost: everything draws from the CPU default generator, which the checkpoint saves.

The config side of running on CPU (local specs, ``use_cpu_initialization``, the allgather dispatcher,
fusions off) is data, not a patch: see ``model.architecture.CPU_CONFIG``.

Pipeline parallelism (``PIPELINE_PATCHES``, applied by ``ensure_pipeline()`` only when a process runs
with a pipeline-parallel size above 1, so the PP=1 path sees exactly the four patches above):

* ``schedule_token_count``  Megatron's pipeline schedules (``megatron/core/pipeline_parallel/schedules.py``,
  ``forward_backward_pipelining_without_interleaving`` and friends) allocate the step's token counter with
  ``torch.zeros([], dtype=torch.int, device="cuda")``, which raises on a machine without CUDA. The
  schedules module gets a ``torch`` whose ``zeros`` puts a ``device="cuda"`` tensor on the CPU; every
  other name is the real ``torch``.
* ``embedding_copy``  ``LanguageModule.setup_embeddings_and_output_layer``
  (``megatron/core/models/common/language_module/language_module.py``) moves the last stage's copy of the
  word embedding (the MTP block's, or a tied output head's) to the GPU with ``weight.data.cuda()`` before
  all-reducing it from the first stage. While that method runs, ``Tensor.cuda`` returns the tensor itself.

``apply()`` is idempotent; ``is_applied()`` says whether every patch is in place; ``revert()`` undoes
them. ``ensure()`` is what the rest of ``model/`` calls: it applies the patches when CUDA is absent. Set
``KEXAONE_CPU_COMPAT=0`` to keep them off (to check whether a new Megatron release still needs them).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

import torch

ENV_VAR = "KEXAONE_CPU_COMPAT"

# name -> list of (owner object, attribute, original value); filled while a patch is applied
_applied: dict[str, list[tuple[object, str, object]]] = {}


def _cpu_default_causal_mask(sq: int) -> torch.Tensor:
    """Same as megatron.core.transformer.utils.get_default_causal_mask, on the CPU."""
    return torch.triu(torch.ones(sq, sq, device="cpu"), diagonal=1).bool()


def _cpu_sliding_window_causal_mask(sq: int, skv: int, window_size) -> torch.Tensor:
    """Same as megatron.core.transformer.utils.get_sliding_window_causal_mask, on the CPU.

    True = masked. Query i (aligned to the end of the keys) sees keys j with
    i - window_size[0] <= j <= i + window_size[1].
    """
    m = torch.ones(sq, skv, dtype=torch.bool, device="cpu")
    mu = torch.triu(m, diagonal=skv - sq - window_size[0])
    ml = torch.tril(mu, diagonal=skv - sq + window_size[1])
    return ~ml


def _cpu_current_device() -> str:
    return "cpu"


def _no_synchronize(device=None) -> None:
    return None


def _patch_current_device() -> list[tuple[object, str, object]]:
    return [(torch.cuda, "current_device", _cpu_current_device)]


def _patch_causal_masks() -> list[tuple[object, str, object]]:
    from megatron.core.fusions import fused_softmax
    from megatron.core.transformer import utils

    return [
        (module, name, fn)
        for module in (utils, fused_softmax)
        for name, fn in (
            ("get_default_causal_mask", _cpu_default_causal_mask),
            ("get_sliding_window_causal_mask", _cpu_sliding_window_causal_mask),
        )
    ]


def _patch_synchronize() -> list[tuple[object, str, object]]:
    return [(torch.cuda, "synchronize", _no_synchronize)]


def _patch_rng_tracker() -> list[tuple[object, str, object]]:
    from megatron.core.tensor_parallel import random as mrandom

    original = mrandom.initialize_rng_tracker

    def initialize_cpu_rng_tracker(
        use_te_rng_tracker=False, inference_rng_tracker=False, use_cudagraphable_rng=False, force_reset=False
    ):
        return original(use_te_rng_tracker, True, use_cudagraphable_rng, force_reset)

    initialize_cpu_rng_tracker.__wrapped__ = original  # type: ignore[attr-defined]
    return [(mrandom, "initialize_rng_tracker", initialize_cpu_rng_tracker)]


def _reset_rng_tracker() -> None:
    # A tracker created before (or under) the patch must be rebuilt by the next seeding call.
    from megatron.core.tensor_parallel import random as mrandom

    mrandom._CUDA_RNG_STATE_TRACKER = None
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = False


PATCHES: dict[str, Callable[[], list[tuple[object, str, object]]]] = {
    "current_device": _patch_current_device,
    "causal_masks": _patch_causal_masks,
    "synchronize": _patch_synchronize,
    "rng_tracker": _patch_rng_tracker,
}


class _CpuZerosTorch:
    """``torch`` as Megatron's schedules module sees it: ``zeros(..., device="cuda")`` lands on the CPU."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def zeros(self, *args, **kwargs):
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return self._real.zeros(*args, **kwargs)


def _patch_schedule_token_count() -> list[tuple[object, str, object]]:
    from megatron.core.pipeline_parallel import schedules

    return [(schedules, "torch", _CpuZerosTorch(torch))]


def _patch_embedding_copy() -> list[tuple[object, str, object]]:
    from megatron.core.models.common.language_module.language_module import LanguageModule

    original = LanguageModule.setup_embeddings_and_output_layer

    def setup_embeddings_and_output_layer(self) -> None:
        saved = torch.Tensor.cuda
        torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor  # type: ignore[method-assign]
        try:
            return original(self)
        finally:
            torch.Tensor.cuda = saved  # type: ignore[method-assign]

    setup_embeddings_and_output_layer.__wrapped__ = original  # type: ignore[attr-defined]
    return [(LanguageModule, "setup_embeddings_and_output_layer", setup_embeddings_and_output_layer)]


PIPELINE_PATCHES: dict[str, Callable[[], list[tuple[object, str, object]]]] = {
    "schedule_token_count": _patch_schedule_token_count,
    "embedding_copy": _patch_embedding_copy,
}


def cuda_available() -> bool:
    return torch.cuda.is_available()


def apply(names: Iterable[str] | None = None) -> None:
    """Put the named patches (default: all) in place. Applying an applied patch does nothing."""
    names = list(PATCHES) if names is None else list(names)
    known = {**PATCHES, **PIPELINE_PATCHES}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown CPU compat patch(es) {unknown} (known: {', '.join(known)})")
    for name in names:
        if name in _applied:
            continue
        saved = []
        for owner, attr, replacement in known[name]():
            saved.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, replacement)
        _applied[name] = saved
        if name == "rng_tracker":
            _reset_rng_tracker()


def revert(names: Iterable[str] | None = None) -> None:
    """Restore the original functions of the named patches (default: all applied ones)."""
    for name in list(_applied) if names is None else list(names):
        for owner, attr, original in reversed(_applied.pop(name, [])):
            setattr(owner, attr, original)
        if name == "rng_tracker":
            _reset_rng_tracker()


def applied() -> tuple[str, ...]:
    """Names of the patches currently in place (the pipeline ones only once ``ensure_pipeline`` ran)."""
    return tuple(name for name in PATCHES if name in _applied)


def pipeline_applied() -> tuple[str, ...]:
    return tuple(name for name in PIPELINE_PATCHES if name in _applied)


def is_applied() -> bool:
    """True when every patch is in place."""
    return all(name in _applied for name in PATCHES)


def disabled_by_env() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "off", "no")


def inductor_keeps_vector_code() -> int | None:
    """Under ``ATEN_CPU_CAPABILITY=default`` (ATen's scalar kernels), give TorchInductor's generated C++ the
    machine's widest vector ISA again; returns that width in bits (None: nothing changed).

    Inductor follows the same variable and then generates scalar C++, but torch 2.14's scalar code for masked
    reductions still names ``at::vec``, so compiling the function Megatron's router wraps in ``jit_fuser``
    (``torch.compile``) fails with a C++ error and no CPU run can start. ATen's own kernels stay scalar:
    that is what the setting is for (``bench/niah_margin.py`` uses it to change the floats)."""
    if os.environ.get("ATEN_CPU_CAPABILITY") != "default":
        return None
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    if config.cpp.simdlen is None and valid_vec_isa_list():
        config.cpp.simdlen = valid_vec_isa_list()[0].bit_width()
        return config.cpp.simdlen
    return None


def ensure() -> bool:
    """Apply every patch when there is no CUDA device (unless KEXAONE_CPU_COMPAT=0). Returns is_applied()."""
    if not cuda_available() and not disabled_by_env():
        apply()
        inductor_keeps_vector_code()
    return is_applied()


def ensure_pipeline() -> bool:
    """``ensure()`` plus the pipeline-schedule patches, for a process with pipeline parallelism > 1."""
    if not cuda_available() and not disabled_by_env():
        ensure()
        apply(PIPELINE_PATCHES)
    return all(name in _applied for name in PIPELINE_PATCHES)


__all__ = [
    "ENV_VAR",
    "PATCHES",
    "PIPELINE_PATCHES",
    "ensure_pipeline",
    "pipeline_applied",
    "applied",
    "apply",
    "cuda_available",
    "disabled_by_env",
    "ensure",
    "inductor_keeps_vector_code",
    "is_applied",
    "revert",
]
