"""The K-EXAONE block on Megatron-Core: preset -> ``TransformerConfig`` -> layer specs -> ``GPTModel``.

One source of numbers: ``preset.model`` (config/). Its field names match
``TransformerConfig`` fields where Megatron has the same knob, so those pass through by name; the rest are
derived here, each with the reason next to it.

The architecture lives in data, not branches:

* which layers are sliding-window and which skip RoPE: ``window_attn_skip_freq`` / ``no_rope_freq``
  (every ``global_attn_every``-th layer is global and NoPE: "LLLG");
* which layers are dense: ``moe_layer_freq`` (a 0/1 list, the first ``num_dense_layers`` dense);
* which modules implement a layer: a ``Backend`` (Megatron ModuleSpecs + the config fields that go
  with them). ``cpu`` = Megatron's local modules, with ``model.attention.CpuCoreAttention`` as the core
  attention (same maths, no O(s^2) masks for the window layers); ``gpu`` = TransformerEngine modules, bf16, grouped
  GEMM experts, all-to-all dispatch and the FP8 switch.
* the MTP block: one dense transformer layer (the dense layer's spec, not the MoE one), sharing the
  embedding and the output head with the main model. Megatron numbers the layer inside an MTP block from
  1, so it follows layer 1's attention pattern: sliding window with RoPE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F

from config import ModelArgs, Preset
from model import cpu_compat

BackendName = Literal["cpu", "gpu"]


class ModelBuildError(ValueError):
    """The model cannot be built as asked; the message is one line naming the problem."""


@dataclass(frozen=True)
class Backend:
    name: BackendName
    use_transformer_engine: bool
    config: dict[str, Any]  # TransformerConfig fields this backend needs
    dense_layer_spec: Callable[[Any], Any]  # config -> ModuleSpec of one dense TransformerLayer
    # replaces Megatron's local DotProductAttention in every layer spec (None: keep the spec's own)
    core_attention: Callable[[], type] | None = None


def _cpu_core_attention() -> type:
    from model.attention import CpuCoreAttention

    return CpuCoreAttention


def _local_dense_layer_spec(config: Any) -> Any:
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    return get_gpt_layer_local_spec(
        num_experts=None, qk_layernorm=config.qk_layernorm, normalization=config.normalization
    )


def _te_dense_layer_spec(config: Any) -> Any:
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

    return get_gpt_layer_with_transformer_engine_spec(num_experts=None, qk_layernorm=config.qk_layernorm)


# Local (non-TE) modules, fp32, nothing that needs a CUDA kernel (megatron-cpu.md).
CPU_CONFIG: dict[str, Any] = dict(
    transformer_impl="local",
    use_cpu_initialization=True,  # build weights on the host; the default allocates on the GPU
    params_dtype=torch.float32,
    bf16=False,
    moe_token_dispatcher_type="allgather",  # alltoall creates a CUDA stream
    moe_grouped_gemm=False,  # SequentialMLP experts; grouped GEMM needs TE
    gradient_accumulation_fusion=False,
    bias_activation_fusion=False,
    bias_dropout_fusion=False,
    masked_softmax_fusion=False,
    apply_rope_fusion=False,
    persist_layer_norm=False,
    moe_permute_fusion=False,
    moe_router_fusion=False,
    cross_entropy_loss_fusion=False,
)

# TransformerEngine modules in bf16; sliding window runs inside TE's fused attention (window_size).
GPU_CONFIG: dict[str, Any] = dict(
    transformer_impl="transformer_engine",
    use_cpu_initialization=False,
    params_dtype=torch.bfloat16,
    bf16=True,
    moe_token_dispatcher_type="alltoall",  # expert parallelism over the node
    moe_grouped_gemm=True,  # TEGroupedMLP: all local experts in one grouped GEMM
    moe_permute_fusion=True,
    cross_entropy_loss_fusion=True,
)

# FP8 "native" training (report §3.1) on Hopper: e4m3 everywhere with block-wise scaling (1x128 / 128x128),
# the DeepSeek-V3 style recipe TransformerEngine >= 2.3 implements. Dropless routing gives experts any
# token count; FP8 grouped GEMMs want multiples of 16/32, so the router pads its map (no token dropped).
FP8_CONFIG: dict[str, Any] = dict(fp8="e4m3", fp8_recipe="blockwise", moe_router_padding_for_quantization=True)

# Context parallelism through TE's attention: "a2a" (Ulysses-style: heads are split over the CP ranks and each
# computes whole-sequence attention) keeps every attention variant of the model, the sliding window included,
# exact; the ring ("p2p") exchange does not serve windowed layers. Needs heads and KV groups divisible by CP.
CP_COMM_TYPE = "a2a"

BACKENDS: dict[BackendName, Backend] = {
    "cpu": Backend(
        "cpu",
        use_transformer_engine=False,
        config=CPU_CONFIG,
        dense_layer_spec=_local_dense_layer_spec,
        core_attention=_cpu_core_attention,
    ),
    "gpu": Backend("gpu", use_transformer_engine=True, config=GPU_CONFIG, dense_layer_spec=_te_dense_layer_spec),
}


def have_transformer_engine() -> bool:
    from megatron.core.extensions.transformer_engine import HAVE_TE

    return bool(HAVE_TE)


def select_backend(backend: BackendName | Literal["auto"] = "auto") -> Backend:
    """``auto``: the GPU backend when CUDA and TransformerEngine are both present, else the CPU one."""
    gpu_ready = torch.cuda.is_available() and have_transformer_engine()
    if backend == "auto":
        return BACKENDS["gpu" if gpu_ready else "cpu"]
    if backend not in BACKENDS:
        raise ModelBuildError(f"unknown backend {backend!r} (known: auto, {', '.join(BACKENDS)})")
    if backend == "gpu" and not gpu_ready:
        missing = "no CUDA device" if not torch.cuda.is_available() else "no TransformerEngine"
        raise ModelBuildError(
            f"backend 'gpu' needs CUDA and TransformerEngine, but this machine has {missing}; use backend='cpu'"
        )
    return BACKENDS[backend]


def _passthrough_fields(m: ModelArgs) -> dict[str, Any]:
    """ModelArgs fields whose names are TransformerConfig fields (deliberately the same knob)."""
    from megatron.core.transformer import TransformerConfig

    config_fields = {f.name for f in dataclasses.fields(TransformerConfig)}
    return {f.name: getattr(m, f.name) for f in dataclasses.fields(ModelArgs) if f.name in config_fields}


def transformer_config(
    preset: Preset, *, backend: BackendName | Literal["auto"] = "auto", fp8: bool | None = None, **overrides: Any
) -> Any:
    """The preset's model section as a Megatron ``TransformerConfig`` for the chosen backend.

    ``fp8`` defaults to ``preset.pretrain.fp8`` on the GPU backend and to off on the CPU backend; asking
    for it on CPU is an error (Megatron would silently run without FP8). ``overrides`` are extra
    TransformerConfig fields (benchmarks, tests), applied last.
    """
    from megatron.core.transformer import TransformerConfig

    chosen = select_backend(backend)
    m = preset.model
    if fp8 is None:
        fp8 = preset.pretrain.fp8 and chosen.use_transformer_engine
    if fp8 and not chosen.use_transformer_engine:
        raise ModelBuildError("fp8=True needs TransformerEngine on a GPU (backend 'gpu'); the CPU backend runs in fp32")
    fields: dict[str, Any] = dict(
        _passthrough_fields(m),
        # Attention: GQA with QK RMSNorm; sliding window of `sliding_window` tokens including the query
        # itself (Megatron's window is (left, right) *extra* tokens); every global_attn_every-th layer
        # is global and skips RoPE.
        window_size=(m.sliding_window - 1, 0),
        window_attn_skip_freq=m.global_attn_every,
        no_rope_freq=m.global_attn_every,  # RoPE theta goes to GPTModel (rotary_base)
        normalization="RMSNorm",
        layernorm_epsilon=m.norm_eps,
        # SwiGLU MLPs without biases (the released tensor inventory has gate/up/down, no biases).
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        # Leading dense layer(s), then MoE.
        moe_layer_freq=[0] * m.num_dense_layers + [1] * (m.num_layers - m.num_dense_layers),
        moe_router_dtype="fp32",  # routing scores and the expert bias compare in fp32
        # No dropout in the recipe; the CPU RNG tracker relies on it too.
        hidden_dropout=0.0,
        attention_dropout=0.0,
        **chosen.config,
        **(FP8_CONFIG if fp8 else {}),
    )
    fields.update(overrides)
    return TransformerConfig(**fields)


def decoder_block_spec(config: Any, backend: Backend) -> Any:
    """Per-layer ModuleSpecs: dense or MoE as ``config.moe_layer_freq`` says, modules from the backend."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    spec = get_gpt_decoder_block_spec(
        config, use_transformer_engine=backend.use_transformer_engine, normalization=config.normalization
    )
    return _with_backend_attention(spec, backend)


def _with_backend_attention(spec: Any, backend: Backend) -> Any:
    from model.attention import with_core_attention

    return spec if backend.core_attention is None else with_core_attention(spec, backend.core_attention())


def mtp_block_spec(config: Any, backend: Backend) -> Any:
    """The MTP block: ``mtp_num_layers`` copies of the *dense* layer spec (the report's MTP is dense)."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_mtp_block_spec

    if not config.mtp_num_layers:
        return None
    spec = get_gpt_mtp_block_spec(
        config, backend.dense_layer_spec(config), use_transformer_engine=backend.use_transformer_engine
    )
    return _with_backend_attention(spec, backend)


def check_vocab(preset: Preset, vocab_size: int | None) -> int:
    """The tokenizer's vocabulary must fit the padded embedding table; returns the padded size."""
    m = preset.model
    vocab_size = preset.tokenizer.vocab_size if vocab_size is None else vocab_size
    if vocab_size > m.padded_vocab_size:
        raise ModelBuildError(
            f"tokenizer vocabulary {vocab_size} exceeds model.padded_vocab_size="
            f"{m.padded_vocab_size} of preset {preset.name!r}"
        )
    return m.padded_vocab_size


def build_model(
    preset: Preset,
    *,
    backend: BackendName | Literal["auto"] = "auto",
    fp8: bool | None = None,
    vocab_size: int | None = None,
    seed: int | None = None,
    **config_overrides: Any,
) -> Any:
    """A Megatron ``GPTModel`` with the preset's K-EXAONE architecture.

    ``vocab_size`` is the tokenizer's (default ``preset.tokenizer.vocab_size``); the embedding has
    ``preset.model.padded_vocab_size`` rows. ``seed`` (default ``preset.pretrain.seed``) seeds the
    initialisation. Initialises torch.distributed / parallel state first if nobody has.
    """
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    from model import parallel

    padded = check_vocab(preset, vocab_size)
    chosen = select_backend(backend)
    if not chosen.use_transformer_engine:
        cpu_compat.ensure()
    if not parallel.is_initialized():
        parallel.initialize()
    # the process's layout in the config too: Megatron's linear layers read ``expert_model_parallel_size``
    # from it to mark expert weights ``allreduce=False`` (held by one expert-parallel rank), which gradient
    # averaging and the global gradient norm (``model.training``) rely on
    layout = {
        "tensor_model_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "expert_model_parallel_size": parallel_state.get_expert_model_parallel_world_size(),
    }
    # pipeline parallelism: Megatron's TransformerBlock builds this stage's layers with their global numbers
    # (get_transformer_layer_offset), so the window/global and dense/MoE patterns stay those of the whole
    # model; the MTP block lives on the last stage (mtp_on_this_rank), which keeps a copy of the embedding
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    if pp > 1:
        layout["pipeline_model_parallel_size"] = pp
        layout["pipeline_dtype"] = chosen.config["params_dtype"]  # what the stages send each other
    cp = parallel_state.get_context_parallel_world_size()
    if cp > 1:
        if not chosen.use_transformer_engine:
            raise ModelBuildError(
                f"context parallelism {cp} needs TransformerEngine attention on CUDA; the CPU backend has none"
            )
        layout["context_parallel_size"] = cp
        layout["cp_comm_type"] = CP_COMM_TYPE
    config = transformer_config(preset, backend=chosen.name, fp8=fp8, **{**layout, **config_overrides})
    parallel.seed_everything(preset.pretrain.seed if seed is None else seed)
    return GPTModel(
        config=config,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        transformer_layer_spec=decoder_block_spec(config, chosen),
        vocab_size=padded,
        max_sequence_length=preset.pretrain.seq_length,
        share_embeddings_and_output_weights=not preset.model.untie_embeddings_and_output_weights,
        position_embedding_type="rope",
        rotary_base=int(preset.model.rope_theta),
        mtp_block_spec=mtp_block_spec(config, chosen),
    )


__all__ = [
    "BACKENDS",
    "Backend",
    "CPU_CONFIG",
    "CP_COMM_TYPE",
    "FP8_CONFIG",
    "GPU_CONFIG",
    "ModelBuildError",
    "build_model",
    "check_vocab",
    "decoder_block_spec",
    "mtp_block_spec",
    "select_backend",
    "transformer_config",
]
