"""`kexaone plan` / model.plan: parameter, FLOP and KV-cache arithmetic.

The full preset must land on the report's figures; for the tiny preset the inventory must equal the
instantiated Megatron model tensor group by tensor group."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from config import get_preset
from model.plan import kv_cache_bytes, layer_forward_flops_per_token, mean_keys_per_query, plan
from tests.model_support import MEGATRON_QUIET

pytestmark = MEGATRON_QUIET

GIB = 1 << 30


def test_full_preset_lands_on_the_report():
    p = plan(get_preset("k-exaone-236b"))
    # Released checkpoint inventory, MTP and the 47 x 128 expert-bias floats included.
    assert p["params_total"] == 237_099_669_632
    assert p["params_trainable"] == 237_099_669_632 - 47 * 128
    assert 0.52e9 <= p["params_mtp"] <= 0.53e9  # "0.52B" MTP block
    assert 22.5e9 <= p["params_active"] <= 23.5e9  # "~23B activated"
    assert p["pretrain_flops"] == pytest.approx(1.52e24, rel=0.02)  # 6 x 23B x 11T
    assert p["pretrain_flops"] == 6 * p["params_active"] * 11e12
    # 12 global layers x 256K tokens x 4 KiB = 12 GiB, plus 36 SWA layers x 128 tokens x 4 KiB.
    assert p["kv_cache_bytes_256k"] == 12 * GIB + 36 * 128 * 4096
    assert p["kv_cache_bytes_256k_all_global"] == 48 * GIB
    assert p["global_layers"] == list(range(3, 48, 4))


def test_kv_cache_counts_window_only_for_swa_layers():
    m = get_preset("tiny").model  # 4 layers (1 global), 2 KV groups x 16 dims, window 16
    per_token = 2 * 2 * 16 * 2
    assert kv_cache_bytes(m, 10) == per_token * 4 * 10  # shorter than the window: every layer stores all
    assert kv_cache_bytes(m, 1000) == per_token * (1000 + 3 * 16)
    assert kv_cache_bytes(m, 1000, all_global=True) == per_token * 4 * 1000


def test_layer_flops_add_up_to_the_active_parameters():
    """Summed over layers, the weight part of the per-layer FLOPs is 2 x the active matmul weights: the
    active parameters minus the output head and the norms (which multiply nothing)."""
    preset = get_preset("k-exaone-236b")
    m, p = preset.model, plan(preset)
    seq = 8192
    b = p["params_breakdown"]
    core = [
        4
        * m.num_attention_heads
        * m.kv_channels
        * mean_keys_per_query(seq, None if i in m.global_layers else m.sliding_window)
        for i in range(48)
    ]
    weights = sum(layer_forward_flops_per_token(m, i, seq) - core[i] for i in range(48)) / 2
    norms = b["layer_norms"] + 48 * 2 * m.kv_channels
    assert weights == p["params_active"] - b["output_layer"] - norms
    # a sliding-window layer's cost does not grow with the sequence; a global layer's does
    growth = [layer_forward_flops_per_token(m, i, 262_144) / layer_forward_flops_per_token(m, i, 8192) for i in (1, 3)]
    assert growth[0] < 1.001 and growth[1] > 4


def test_tiny_inventory_equals_the_megatron_model(tiny):
    preset, model = tiny
    p = plan(preset)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    # Trainable parameters exactly; the total adds the persistent expert-bias buffers.
    assert p["params_trainable"] == sum(t.numel() for t in params.values())
    expert_bias = sum(t.numel() for n, t in buffers.items() if n.endswith("router.expert_bias"))
    assert expert_bias == 3 * 8
    assert p["params_total"] == p["params_trainable"] + expert_bias

    def count(pred) -> int:
        return sum(t.numel() for n, t in params.items() if pred(n))

    b = p["params_breakdown"]
    main = lambda n: not n.startswith("mtp.")  # noqa: E731
    assert b["mtp"] == count(lambda n: n.startswith("mtp."))
    assert b["embedding"] == count(lambda n: n.startswith("embedding."))
    assert b["output_layer"] == count(lambda n: n.startswith("output_layer."))
    assert b["router"] == count(lambda n: main(n) and n.endswith("router.weight"))
    assert b["routed_experts"] == count(lambda n: main(n) and ".experts." in n)
    assert b["shared_experts"] == count(lambda n: main(n) and ".shared_experts." in n)
    assert b["dense_mlp"] == count(lambda n: main(n) and ".mlp.linear_fc" in n)
    assert b["layer_norms"] == count(
        lambda n: main(n)
        and n.endswith(("input_layernorm.weight", "pre_mlp_layernorm.weight", "final_layernorm.weight"))
    )
    assert b["attention"] == count(lambda n: main(n) and ".self_attention." in n)
    assert sum(b.values()) == p["params_total"]


def _kexaone(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kexaone_dag.cli", *args], capture_output=True, text=True, timeout=120)


def test_plan_cli_prints_json_without_torch_or_megatron():
    for args in (["plan", "--preset", "k-exaone-236b", "--json"], ["--preset", "k-exaone-236b", "plan", "--json"]):
        result = _kexaone(*args)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == json.loads(json.dumps(plan(get_preset("k-exaone-236b"))))
    probe = (
        "import sys; from kexaone_dag.cli import main; rc = main(['plan', '--preset', 'tiny']); "
        "heavy = [m for m in ('torch', 'megatron') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "574,008 total" in result.stdout


def test_plan_cli_rejects_unknown_preset():
    result = _kexaone("plan", "--preset", "nope", "--json")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: unknown preset 'nope' (known: tiny, k-exaone-236b)"]
