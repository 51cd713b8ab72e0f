"""The K-EXAONE block as built from the preset: hybrid attention, RoPE placement, dense/MoE layout, MTP."""

from __future__ import annotations

import pytest
import torch

from config import get_preset
from model.architecture import ModelBuildError, build_model, transformer_config
from tests.model_support import MEGATRON_QUIET, random_tokens

pytestmark = MEGATRON_QUIET


def test_full_preset_becomes_the_report_configuration(megatron_cpu):
    from megatron.core.transformer.utils import is_layer_window_attention

    c = transformer_config(get_preset("k-exaone-236b"), backend="cpu")
    assert (c.num_layers, c.hidden_size, c.num_attention_heads, c.num_query_groups, c.kv_channels) == (
        48,
        6144,
        64,
        8,
        128,
    )
    assert c.window_size == (127, 0)  # 128 tokens including the query itself
    global_layers = [
        i for i in range(48) if not is_layer_window_attention(c.window_size, c.window_attn_skip_freq, i + 1)
    ]
    assert global_layers == list(range(3, 48, 4))
    assert [i for i, skip in enumerate(c.no_rope_freq) if skip] == global_layers  # NoPE exactly on global layers
    assert c.qk_layernorm and c.normalization == "RMSNorm" and c.gated_linear_unit
    assert c.ffn_hidden_size == 18432 and c.moe_layer_freq == [0] + [1] * 47
    assert (c.num_moe_experts, c.moe_router_topk, c.moe_ffn_hidden_size, c.moe_shared_expert_intermediate_size) == (
        128,
        8,
        2048,
        2048,
    )
    assert c.moe_router_score_function == "sigmoid" and c.moe_router_topk_scaling_factor == 2.5
    assert c.moe_router_enable_expert_bias and c.moe_router_bias_update_rate == 1e-4
    assert c.moe_router_load_balancing_type == "seq_aux_loss" and c.moe_aux_loss_coeff == 1e-4
    assert c.moe_expert_capacity_factor is None  # dropless
    assert (c.mtp_num_layers, c.mtp_loss_scaling_factor) == (1, 0.05)
    assert c.fp8 is None  # the CPU backend never runs FP8


def _layer_output(model, index: int, hidden: torch.Tensor, rope: bool = True) -> torch.Tensor:
    layer = model.decoder.layers[index]
    with torch.no_grad():
        out, _ = layer(
            hidden, attention_mask=None, rotary_pos_emb=model.rotary_pos_emb(hidden.shape[0]) if rope else None
        )
    return out


def test_swa_layer_ignores_tokens_beyond_the_window_global_layer_does_not(tiny):
    preset, model = tiny
    model.eval()
    window, seq, changed = preset.model.sliding_window, 64, 10
    hidden = torch.randn(seq, 1, preset.model.hidden_size, generator=torch.Generator().manual_seed(1))
    perturbed = hidden.clone()
    perturbed[changed] += 1.0
    for index in range(preset.model.num_layers):
        delta = (_layer_output(model, index, perturbed) - _layer_output(model, index, hidden)).abs().amax(dim=(1, 2))
        affected = delta.nonzero().flatten().tolist()
        if index in preset.model.global_layers:
            assert affected == list(range(changed, seq)), index  # every later position sees it
        else:
            # positions changed .. changed + window - 1 see the token; farther ones are exactly unchanged
            assert affected == list(range(changed, changed + window)), index


def test_global_layers_apply_no_rope_swa_layers_do(tiny):
    """Without positions, attention is blind to the order of the keys it sees. Permute 8 tokens that are
    inside every probed query's window: a NoPE layer's output must not move, a RoPE layer's must."""
    preset, model = tiny
    model.eval()
    assert list(model.config.no_rope_freq) == [int(i in preset.model.global_layers) for i in range(4)]
    hidden = torch.randn(64, 1, preset.model.hidden_size, generator=torch.Generator().manual_seed(2))
    shuffled = hidden.clone()
    shuffled[40:48] = hidden[40:48].flip(0)
    queries = slice(48, 56)  # windows 33..48 .. 40..55 all contain 40..47
    for index in range(preset.model.num_layers):
        moved = (
            (_layer_output(model, index, shuffled)[queries] - _layer_output(model, index, hidden)[queries]).abs().max()
        )
        if index in preset.model.global_layers:
            assert moved < 1e-5, index
        else:
            assert moved > 1e-3, index
            # and it is RoPE that sees the order: the same layer without rotary embeddings does not
            no_rope = (
                (
                    _layer_output(model, index, shuffled, rope=False)[queries]
                    - _layer_output(model, index, hidden, rope=False)[queries]
                )
                .abs()
                .max()
            )
            assert no_rope < 1e-5, index


def test_first_layer_dense_then_moe_and_a_dense_mtp_block(tiny):
    from megatron.core.transformer.mlp import MLP
    from megatron.core.transformer.moe.moe_layer import MoELayer

    preset, model = tiny
    kinds = [type(layer.mlp) for layer in model.decoder.layers]
    assert kinds == [MLP] + [MoELayer] * (preset.model.num_layers - 1)
    assert model.decoder.layers[0].mlp.linear_fc2.weight.shape == (
        preset.model.hidden_size,
        preset.model.ffn_hidden_size,
    )
    assert len(model.mtp.layers) == preset.model.mtp_num_layers == 1
    mtp = model.mtp.layers[0]
    assert type(mtp.mtp_model_layer.mlp) is MLP  # dense, like the report's MTP block
    assert mtp.eh_proj.weight.shape == (preset.model.hidden_size, 2 * preset.model.hidden_size)
    # untied: the output head is its own tensor
    assert model.output_layer.weight.data_ptr() != model.embedding.word_embeddings.weight.data_ptr()


def test_mtp_loss_enters_the_gradients_with_the_preset_weight(tiny):
    """grad = grad(LM) + w * grad(MTP). Measured at w = 0, 0.05 (the preset) and 1 on the same batch."""
    preset, model = tiny
    assert model.config.mtp_loss_scaling_factor == preset.model.mtp_loss_scaling_factor == 0.05
    model.train()
    tokens = random_tokens(2, 65, preset.tokenizer.vocab_size)
    ids, labels = tokens[:, :-1], tokens[:, 1:]
    positions = torch.arange(64).unsqueeze(0).expand(2, -1)
    probe = {
        "mtp": model.mtp.layers[0].eh_proj.weight,
        "trunk": model.decoder.layers[0].self_attention.linear_qkv.weight,
    }

    def grads(weight: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        model.config.mtp_loss_scaling_factor = weight
        model.zero_grad(set_to_none=True)
        lm = model(ids, positions, None, labels=labels)
        lm.mean().backward()
        for layer in model.decoder.layers[1:]:  # the bias-update counters are not under test here
            layer.mlp.router.local_tokens_per_expert.zero_()
        return {k: p.grad.clone() for k, p in probe.items()}, lm.detach()

    g0, lm0 = grads(0.0)
    g1, lm1 = grads(1.0)
    gw, lmw = grads(preset.model.mtp_loss_scaling_factor)
    assert torch.equal(lm0, lm1) and torch.equal(lm0, lmw)  # the main loss itself does not include MTP
    assert torch.count_nonzero(g0["mtp"]) == 0  # the MTP block learns only from its own loss
    assert torch.allclose(gw["mtp"], 0.05 * g1["mtp"], rtol=1e-4, atol=1e-9)
    assert torch.count_nonzero(g1["mtp"]) > 0
    mtp_part = g1["trunk"] - g0["trunk"]  # the MTP loss reaches the shared trunk too
    assert mtp_part.abs().max() > 0
    assert torch.allclose(gw["trunk"] - g0["trunk"], 0.05 * mtp_part, rtol=1e-3, atol=1e-8)


def test_bad_requests_fail_before_any_compute(megatron_cpu):
    tiny_preset = megatron_cpu
    with pytest.raises(ModelBuildError, match=r"^tokenizer vocabulary 4096 exceeds model.padded_vocab_size=2048"):
        build_model(tiny_preset, vocab_size=4096)
    if not torch.cuda.is_available():
        with pytest.raises(
            ModelBuildError,
            match=r"backend 'gpu' needs CUDA and TransformerEngine, but this machine has no CUDA device",
        ):
            transformer_config(tiny_preset, backend="gpu")
    with pytest.raises(ModelBuildError, match=r"fp8=True needs TransformerEngine on a GPU"):
        transformer_config(tiny_preset, backend="cpu", fp8=True)
    with pytest.raises(ModelBuildError, match=r"unknown backend 'tpu'"):
        transformer_config(tiny_preset, backend="tpu")


def test_gpu_backend_config_passes_megatron_validation(monkeypatch, megatron_cpu):
    """The GPU path cannot run here. Megatron's TransformerEngine version checks are answered as
    'TE 2.8 installed'; every other check in TransformerConfig.__post_init__ validates the GPU backend's
    fields (TE modules, bf16, grouped GEMM, all-to-all, FP8 block scaling with padded routing) for real."""
    from megatron.core.transformer import transformer_config as megatron_config
    from megatron.core.transformer.moe import moe_utils
    from packaging.version import Version

    from model import architecture

    monkeypatch.setattr(megatron_config, "is_te_min_version", lambda *args, **kwargs: True)
    monkeypatch.setattr(megatron_config, "get_te_version", lambda: Version("2.8.0"))
    for name in (
        "fused_permute",
        "fused_permute_with_probs",
        "fused_sort_chunks_by_index",
        "fused_sort_chunks_by_index_with_probs",
        "fused_unpermute",
    ):
        monkeypatch.setattr(moe_utils, name, object())
    monkeypatch.setattr(architecture, "select_backend", lambda backend="auto": architecture.BACKENDS["gpu"])
    full = get_preset("k-exaone-236b")
    c = transformer_config(full, backend="gpu")  # fp8 follows preset.pretrain.fp8 on the GPU backend
    assert full.pretrain.fp8 and (c.fp8, c.fp8_recipe, c.moe_router_padding_for_quantization) == (
        "e4m3",
        "blockwise",
        True,
    )
    assert (c.transformer_impl, c.params_dtype, c.bf16) == ("transformer_engine", torch.bfloat16, True)
    assert (c.moe_grouped_gemm, c.moe_token_dispatcher_type, c.use_cpu_initialization) == (True, "alltoall", False)
    assert c.window_size == (127, 0) and c.moe_layer_freq == [0] + [1] * 47
    assert transformer_config(full, backend="gpu", fp8=False).fp8 is None
