"""The CPU core attention (``model.attention.CpuCoreAttention``) computes what Megatron's own
``DotProductAttention`` computes: outputs and gradients, sliding-window and global layers, a full
sequence and one token against a KV cache."""

from __future__ import annotations

import pytest
import torch

from config import get_preset
from model import cpu_compat, parallel
from model.architecture import build_model, transformer_config
from model.attention import CpuCoreAttention, windowed_attention


@pytest.fixture(scope="module")
def config():
    cpu_compat.ensure()
    if not parallel.is_initialized():
        parallel.initialize()
    return transformer_config(get_preset("tiny"), backend="cpu")


def _outputs_and_grads(module, q, k, v):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = module(q, k, v, None)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)  # a loss that weighs every output
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    return out, grads


# tiny: layers 1-3 slide a 16-token window, layer 4 is global. (sq, sk): a whole sequence (training,
# prefill), one token against a KV cache (decoding), and for the window a chunk of queries at the end of the
# keys (Megatron defines the global layer's causal mask only for sq == sk or one new token).
SHAPES = [(64, 64), (300, 300), (1, 300), (1, 7)]


@pytest.mark.parametrize("layer_number,sq,sk", [(1, *s) for s in [*SHAPES, (5, 40)]] + [(4, *s) for s in SHAPES])
def test_matches_megatron_dot_product_attention(config, layer_number, sq, sk):
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    gen = torch.Generator().manual_seed(sq * 1000 + sk)
    heads, groups, dim = config.num_attention_heads, config.num_query_groups, config.kv_channels
    q = torch.randn(sq, 2, heads, dim, generator=gen)
    k = torch.randn(sk, 2, groups, dim, generator=gen)
    v = torch.randn(sk, 2, groups, dim, generator=gen)
    reference = DotProductAttention(config, layer_number, AttnMaskType.causal, "self")
    ours = CpuCoreAttention(config, layer_number, AttnMaskType.causal, "self")
    assert (ours.window_left is not None) == (layer_number != 4)
    ref_out, ref_grads = _outputs_and_grads(reference, q, k, v)
    out, grads = _outputs_and_grads(ours, q, k, v)
    assert out.shape == ref_out.shape
    torch.testing.assert_close(out, ref_out, atol=2e-6, rtol=1e-5)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-4)


def test_window_sees_exactly_its_keys():
    """Query i's output depends on keys i-left..i only: move a key outside the window, nothing changes."""
    q, k, v = (torch.randn(1, 1, 50, 4) for _ in range(3))
    base = windowed_attention(q, k, v, left=3, scale=0.5)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 10], v2[:, :, 10] = 100.0, -100.0
    moved = windowed_attention(q, k2, v2, left=3, scale=0.5)
    changed = (moved - base).abs().amax(dim=(0, 1, 3)) > 0
    assert changed.nonzero().flatten().tolist() == [10, 11, 12, 13]


def test_the_cpu_model_uses_it_everywhere(config):
    model = build_model(get_preset("tiny"), backend="cpu")
    cores = [m for m in model.modules() if hasattr(m, "scale_mask_softmax")]
    assert cores and all(isinstance(m, CpuCoreAttention) for m in cores)  # the decoder and the MTP layer
    assert len(cores) == get_preset("tiny").model.num_layers + get_preset("tiny").model.mtp_num_layers
