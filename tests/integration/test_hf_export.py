"""model/hf_export.py against code no one here wrote: transformers' ``exaone_moe`` loads the export and computes
the same logits as the Megatron model; the reverse conversion restores the Megatron weights exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from config import get_preset
from model import hf_export
from tests.model_support import MEGATRON_QUIET
from tests.posttrain_support import small_chat_tokenizer

pytestmark = [*MEGATRON_QUIET, pytest.mark.timeout(300)]

VOCAB = 512  # tests/posttrain_support.py's tokenizer


@pytest.fixture(scope="module")
def megatron_tiny():
    """A tiny Megatron model whose every tensor matters: norms, QK norms and the router's expert bias are
    random too (at initialisation they are ones / zeros, which would hide a swapped or dropped tensor), and
    the output layer scaled to a trained model's logit range."""
    from model import parallel
    from model.architecture import build_model

    parallel.initialize()
    preset = get_preset("tiny")
    model = build_model(preset, vocab_size=VOCAB, seed=7)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if isinstance(t, torch.Tensor) and (
                name.endswith(("layernorm.weight", "norm.weight")) or "expert_bias" in name
            ):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + (0.75 if "norm" in name else -0.25))
        model.output_layer.weight.mul_(20.0)  # logits of a trained model's size (|logit| ~ 10), not ~ 0.5
    return preset, model


@pytest.fixture(scope="module")
def export(megatron_tiny, tmp_path_factory):
    preset, model = megatron_tiny
    tok_dir = tmp_path_factory.mktemp("tok")
    small_chat_tokenizer(tok_dir)
    out = tmp_path_factory.mktemp("hf") / "hf"
    files = hf_export.save_hf(
        out, model, preset, tokenizer_dir=tok_dir, dtype=torch.float32, max_shard_bytes=256 * 1024
    )
    return out, files


def test_transformers_computes_the_megatron_logits_past_the_window(megatron_tiny, export):
    preset, model = megatron_tiny
    out, _ = export
    hf_model = hf_export.load_transformers(out)  # raises on unexpected / missing keys (mtp.* aside)
    assert type(hf_model).__name__ == "ExaoneMoeForCausalLM"
    assert hf_model.config.layer_types == ["sliding_attention"] * 3 + ["full_attention"]
    for seed, length in ((0, 48), (1, 100)):  # 3 and 6 windows of 16 tokens
        prompts = torch.randint(0, VOCAB, (3, length), generator=torch.Generator().manual_seed(seed))
        result = hf_export.parity(hf_model, model, prompts, vocab_size=VOCAB, new_tokens=12)
        assert result["max_abs_logit_diff"] <= 1e-4, result
        assert result["logit_scale"] > 5.0  # logits of a real size, not a near-zero model
        assert result["greedy_identical"] == 3, result


def test_a_wrong_layout_is_caught_by_the_parity(megatron_tiny, export, tmp_path):
    """The comparison can fail: swapping two query heads' rows inside one KV group changes the HF logits."""
    preset, model = megatron_tiny
    out, _ = export
    tensors = hf_export.read_weights(out)
    q = tensors["model.layers.1.self_attn.q_proj.weight"]
    d = preset.model.kv_channels
    q[:d], q[d : 2 * d] = q[d : 2 * d].clone(), q[:d].clone()
    broken = tmp_path / "broken"
    broken.mkdir()
    hf_export.write_weights(broken, tensors, 1 << 30)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((out / name).read_bytes())
    prompts = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(3))
    result = hf_export.parity(hf_export.load_transformers(broken), model, prompts, vocab_size=VOCAB, new_tokens=1)
    assert result["max_abs_logit_diff"] > 1e-2


def test_the_reverse_conversion_restores_every_megatron_tensor(megatron_tiny, export):
    from model.architecture import build_model

    preset, model = megatron_tiny
    out, _ = export
    fresh = build_model(preset, vocab_size=VOCAB, seed=99)
    hf_export.check_config(out, preset)
    hf_export.load_into(fresh, hf_export.read_weights(out), preset.model)
    theirs = fresh.state_dict()
    compared = 0
    for name, t in model.state_dict().items():
        if isinstance(t, torch.Tensor):
            assert torch.equal(t, theirs[name]), name
            compared += 1
    assert compared == len(hf_export.name_table(preset.model)) > 100  # MTP block included


def test_the_files_are_the_published_layout(megatron_tiny, export):
    from transformers import AutoTokenizer

    from posttrain import chat

    preset, _ = megatron_tiny
    out, files = export
    index = json.loads((out / hf_export.SAFETENSORS_INDEX).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards == sorted(f for f in files if f.endswith(".safetensors"))
    names = set(index["weight_map"])
    assert "model.layers.1.mlp.experts.7.gate_proj.weight" in names  # one tensor per expert, as published
    assert "model.layers.1.mlp.e_score_correction_bias" in names
    assert {"mtp.fc.weight", "mtp.pre_fc_norm_embedding.weight", "mtp.layers.0.self_attn.q_proj.weight"} <= names
    assert not any(n.startswith("model.layers.4.") for n in names)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "exaone_moe" and config["num_nextn_predict_layers"] == 1
    assert config["sliding_window"] == 16 and config["rope_parameters"]["rope_theta"] == 1e6
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["temperature"], gen["top_p"]) == (1.0, 0.95)  # report §4.1
    tok = AutoTokenizer.from_pretrained(str(out))
    messages = [{"role": "user", "content": "What is 37 + 48?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, enable_thinking=False)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tok.decode(ids) == chat.render(messages, add_generation_prompt=True, reasoning=False)
    longest = max(s.seq_length for s in preset.context.stages.values())
    assert tok.model_max_length == config["max_position_embeddings"] == longest  # the 256K stage's, scaled down


def test_the_full_preset_config_builds_the_published_model_in_transformers():
    """The 236B config on the meta device: parameters + expert biases + MTP = the released inventory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from model.plan import plan

    preset = get_preset("k-exaone-236b")
    config = hf_export.hf_config(preset, dtype=torch.bfloat16, eos_token_id=0, pad_token_id=1)
    hf_config = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    params = sum(p.numel() for p in model.parameters())
    biases = sum(b.numel() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))
    p = plan(preset)
    assert params + biases + p["params_mtp"] == p["params_total"] == 237_099_669_632
    assert hf_config.layer_types.count("full_attention") == 12 and hf_config.mlp_layer_types[:2] == ["dense", "sparse"]


def test_bad_input_is_refused_in_one_line(megatron_tiny, export, tmp_path):
    preset, model = megatron_tiny
    out, _ = export
    with pytest.raises(hf_export.HFExportError, match="already holds an HF checkpoint"):
        hf_export.save_hf(out, model, preset, tokenizer_dir=out, dtype=torch.float32, max_shard_bytes=1 << 30)
    tensors = hf_export.read_weights(out)
    del tensors["model.layers.2.mlp.experts.3.down_proj.weight"]
    with pytest.raises(hf_export.HFExportError, match="lacks model.layers.2.mlp.experts.3.down_proj.weight"):
        hf_export.from_hf(tensors, preset.model)
    with pytest.raises(hf_export.HFExportError, match="config vocab_size=2048, preset 'k-exaone-236b' has 153600"):
        hf_export.check_config(out, get_preset("k-exaone-236b"))
    with pytest.raises(hf_export.HFExportError, match="no model.safetensors"):
        hf_export.read_weights(tmp_path)


def test_an_hf_checkpoint_becomes_the_weights_checkpoint_a_policy_stage_starts_from(megatron_tiny, export, tmp_path):
    """``python -m model.hf_export``: HF -> ``checkpoint.save_model`` (what ``posttrain.policy_train --init-from``
    and evaluation read), every tensor equal; a wrong preset is refused in one line before any weight is read."""
    import subprocess
    import sys

    from model import checkpoint
    from model.architecture import build_model

    preset, model = megatron_tiny
    out, _ = export
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "model.hf_export", "--hf", str(out), "--out", str(tmp_path / "ckpt")]
    proc = subprocess.run([*cmd, "--preset", "tiny"], capture_output=True, text=True, cwd=repo, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = build_model(preset, vocab_size=json.loads((out / "config.json").read_text())["vocab_size"])
    checkpoint.load_model(tmp_path / "ckpt", fresh)
    theirs = fresh.state_dict()
    tensors = {n: t for n, t in model.state_dict().items() if isinstance(t, torch.Tensor)}
    assert all(torch.equal(t, theirs[n]) for n, t in tensors.items()) and len(tensors) > 100
    wrong = subprocess.run([*cmd, "--preset", "k-exaone-236b"], capture_output=True, text=True, cwd=repo, timeout=240)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "preset 'k-exaone-236b' has" in wrong.stderr
