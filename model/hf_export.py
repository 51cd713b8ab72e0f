"""Megatron-Core <-> Hugging Face ``exaone_moe``: how a checkpoint of this project leaves it, and how a published
K-EXAONE checkpoint comes in.

The HF format is the one transformers (>= 5.1) implements as ``exaone_moe`` and vLLM / SGLang serve; names and
layouts follow the published K-EXAONE checkpoint and Megatron-Bridge's mapping, checked against the
installed ``transformers/models/exaone_moe`` by ``tests/integration/test_hf_export.py`` (logits of the
exported model in transformers against the Megatron model, and the same check as the ``hf_checkpoint`` asset's
blocking check).

* ``name_table(m)``: every Megatron name -> HF name(s) of a model of shape ``m``, with the layout change
  (``copy``; ``qkv``: Megatron's fused QKV is interleaved per query group — for each KV group its
  heads-per-group query heads, then its key head, then its value head — HF keeps q / k / v apart;
  ``gate_up``: Megatron's ``linear_fc1`` is [gate; up] stacked on the output dimension). The docs table
  (docs/release.md) is this table.
* ``to_hf(state, m)`` / ``from_hf(tensors, m)``: the weights, in either direction. Megatron names are those of the
  local (CPU) layer specs; TransformerEngine's fused-norm names (``linear_qkv.layer_norm_weight``,
  ``mlp.linear_fc1.layer_norm_weight``) are read as their local equivalents (``canonical_name``).
* ``hf_config(preset, ...)``: ``config.json`` with the field names of the published K-EXAONE config
  (``layer_types``, ``sliding_window``, RoPE on sliding layers only, ``num_nextn_predict_layers`` for MTP).
* ``hf_to_checkpoint(hf_dir, preset, out)`` / ``python -m model.hf_export --preset P --hf DIR --out CKPT``: an HF
  checkpoint (a published K-EXAONE one) as the Megatron weights checkpoint a later stage initialises from.
* ``save_hf(...)``: safetensors shards (+ ``model.safetensors.index.json`` when there is more than one), the
  config, ``generation_config.json`` and the tokenizer files, written into a fresh directory.

MTP weights are exported under ``mtp.*`` (transformers ignores them on load; vLLM's ``exaone_moe_mtp`` draft
model reads them). Experts are written one tensor per expert (``mlp.experts.{e}.gate_proj.weight``), the
published layout; transformers fuses them into its 3-D expert tensors on load.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from config import ModelArgs, Preset

Layout = Literal["copy", "qkv", "gate_up"]

SAFETENSORS_INDEX = "model.safetensors.index.json"


class HFExportError(ValueError):
    """A conversion that cannot be done as asked; one line naming the problem."""


@dataclass(frozen=True)
class NameMap:
    megatron: str
    hf: tuple[str, ...]  # one name, or q/k/v, or gate/up
    layout: Layout


def _attention_and_norms(meg: str, hf: str) -> list[NameMap]:
    return [
        NameMap(f"{meg}input_layernorm.weight", (f"{hf}input_layernorm.weight",), "copy"),
        NameMap(
            f"{meg}self_attention.linear_qkv.weight",
            (f"{hf}self_attn.q_proj.weight", f"{hf}self_attn.k_proj.weight", f"{hf}self_attn.v_proj.weight"),
            "qkv",
        ),
        NameMap(f"{meg}self_attention.q_layernorm.weight", (f"{hf}self_attn.q_norm.weight",), "copy"),
        NameMap(f"{meg}self_attention.k_layernorm.weight", (f"{hf}self_attn.k_norm.weight",), "copy"),
        NameMap(f"{meg}self_attention.linear_proj.weight", (f"{hf}self_attn.o_proj.weight",), "copy"),
        NameMap(f"{meg}pre_mlp_layernorm.weight", (f"{hf}post_attention_layernorm.weight",), "copy"),
    ]


def _mlp(meg: str, hf: str) -> list[NameMap]:
    """A SwiGLU MLP: Megatron ``linear_fc1`` = [gate; up], ``linear_fc2`` = down."""
    return [
        NameMap(f"{meg}linear_fc1.weight", (f"{hf}gate_proj.weight", f"{hf}up_proj.weight"), "gate_up"),
        NameMap(f"{meg}linear_fc2.weight", (f"{hf}down_proj.weight",), "copy"),
    ]


def _layer(meg: str, hf: str, m: ModelArgs, *, dense: bool) -> list[NameMap]:
    out = _attention_and_norms(meg, hf)
    if dense:
        return out + _mlp(f"{meg}mlp.", f"{hf}mlp.")
    out += [
        NameMap(f"{meg}mlp.router.weight", (f"{hf}mlp.gate.weight",), "copy"),
        NameMap(f"{meg}mlp.router.expert_bias", (f"{hf}mlp.e_score_correction_bias",), "copy"),
    ]
    for e in range(m.num_moe_experts):
        out += _mlp(f"{meg}mlp.experts.local_experts.{e}.", f"{hf}mlp.experts.{e}.")
    return out + _mlp(f"{meg}mlp.shared_experts.", f"{hf}mlp.shared_experts.")


def name_table(m: ModelArgs) -> list[NameMap]:
    """Every tensor of a model of shape ``m``: Megatron name -> HF name(s) and the layout change."""
    table = [NameMap("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), "copy")]
    for i in range(m.num_layers):
        table += _layer(f"decoder.layers.{i}.", f"model.layers.{i}.", m, dense=i < m.num_dense_layers)
    table.append(NameMap("decoder.final_layernorm.weight", ("model.norm.weight",), "copy"))
    if m.untie_embeddings_and_output_weights:
        table.append(NameMap("output_layer.weight", ("lm_head.weight",), "copy"))
    for d in range(m.mtp_num_layers):
        meg, hf = f"mtp.layers.{d}.", f"mtp.layers.{d}." if m.mtp_num_layers > 1 else "mtp."
        table += [
            NameMap(f"{meg}enorm.weight", (f"{hf}pre_fc_norm_embedding.weight",), "copy"),
            NameMap(f"{meg}hnorm.weight", (f"{hf}pre_fc_norm_hidden.weight",), "copy"),
            NameMap(f"{meg}eh_proj.weight", (f"{hf}fc.weight",), "copy"),
            NameMap(f"{meg}final_layernorm.weight", (f"{hf}norm.weight",), "copy"),
        ]
        # the MTP block's transformer layer is dense (report: "1 dense block")
        table += _layer(f"{meg}mtp_model_layer.", f"{hf}layers.0.", m, dense=True)
    return table


LAYOUT_NOTES = {
    "copy": "same tensor",
    "qkv": "split rows: per KV group g, [q heads of g; k_g; v_g] -> q_proj / k_proj / v_proj",
    "gate_up": "split rows in half: [gate; up] -> gate_proj / up_proj",
}


def name_table_markdown(m: ModelArgs) -> str:
    """The docs' table (docs/release.md): one row per distinct name pattern, layers as ``{i}``, experts as
    ``{e}``, with the dense layer, an MoE layer and the MTP block each shown once."""
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for entry in name_table(m):
        meg = re.sub(r"layers\.\d+\.", "layers.{i}.", entry.megatron)
        meg = re.sub(r"local_experts\.\d+\.", "local_experts.{e}.", meg)
        meg = re.sub(r"^mtp\.layers\.\{i\}\.", "mtp.layers.0.", meg)
        hf = ", ".join(entry.hf)
        hf = re.sub(r"model\.layers\.\d+\.", "model.layers.{i}.", hf)
        hf = re.sub(r"experts\.\d+\.", "experts.{e}.", hf)
        dense_layer = entry.megatron.startswith(tuple(f"decoder.layers.{i}." for i in range(m.num_dense_layers)))
        dense = dense_layer and ".mlp." in entry.megatron
        key = meg + (" (dense)" if dense else "")
        if key in seen:
            continue
        seen.add(key)
        where = (
            f"first {m.num_dense_layers} layer(s): dense MLP"
            if dense
            else "MTP block"
            if meg.startswith("mtp.")
            else "MoE layers"
            if ".mlp." in meg
            else "every layer"
            if "layers.{i}" in meg
            else ""
        )
        rows.append((f"`{meg}`" + (f" ({where})" if where else ""), f"`{hf}`", LAYOUT_NOTES[entry.layout]))
    lines = ["| Megatron-Core | Hugging Face exaone_moe | layout |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


# TransformerEngine layer specs fuse the pre-attention / pre-MLP norms into the next linear layer
_TE_NAMES = [
    (re.compile(r"self_attention\.linear_qkv\.layer_norm_weight$"), "input_layernorm.weight"),
    (re.compile(r"mlp\.linear_fc1\.layer_norm_weight$"), "pre_mlp_layernorm.weight"),
]


def canonical_name(name: str) -> str:
    """A Megatron state-dict name as the local (CPU) specs spell it."""
    for pattern, local in _TE_NAMES:
        if pattern.search(name):
            return pattern.sub(local, name)
    return name


def _qkv_split(w: torch.Tensor, m: ModelArgs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    groups, d = m.num_query_groups, m.kv_channels
    per_group = m.num_attention_heads // groups
    w = w.reshape(groups, (per_group + 2) * d, -1)
    q, k, v = torch.split(w, [per_group * d, d, d], dim=1)
    return q.reshape(groups * per_group * d, -1), k.reshape(groups * d, -1), v.reshape(groups * d, -1)


def _qkv_join(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: ModelArgs) -> torch.Tensor:
    groups, d = m.num_query_groups, m.kv_channels
    per_group = m.num_attention_heads // groups
    hidden = q.shape[-1]
    joined = torch.cat(
        [q.reshape(groups, per_group * d, hidden), k.reshape(groups, d, hidden), v.reshape(groups, d, hidden)], dim=1
    )
    return joined.reshape(groups * (per_group + 2) * d, hidden)


def to_hf(state: Mapping[str, Any], m: ModelArgs, *, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Megatron weights (a ``model.state_dict()`` of one process holding the whole model) -> HF tensors."""
    tensors = {canonical_name(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    out: dict[str, torch.Tensor] = {}
    table = name_table(m)
    missing = [e.megatron for e in table if e.megatron not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise HFExportError(f"the Megatron state has no {missing[0]}{more}: not a model of this preset's shape")
    unmapped = sorted(set(tensors) - {e.megatron for e in table})
    if unmapped:
        raise HFExportError(f"no HF name for Megatron tensor {unmapped[0]} ({len(unmapped)} unmapped)")
    for entry in table:
        w = tensors[entry.megatron].detach().to("cpu")
        if entry.layout == "qkv":
            parts = _qkv_split(w, m)
        elif entry.layout == "gate_up":
            parts = tuple(torch.chunk(w, 2, dim=0))
        else:
            parts = (w,)
        for name, part in zip(entry.hf, parts):
            # the router's weight and expert bias stay fp32 (transformers keeps them fp32 too)
            keep_fp32 = name.endswith(("mlp.gate.weight", "e_score_correction_bias"))
            target = torch.float32 if keep_fp32 or dtype is None else dtype
            out[name] = part.to(target).contiguous().clone()
    return out


def from_hf(tensors: Mapping[str, torch.Tensor], m: ModelArgs) -> dict[str, torch.Tensor]:
    """HF tensors (an export, or a published K-EXAONE checkpoint) -> Megatron names (local specs), fp32.
    Missing or unexpected HF tensors are errors: a partial load would train from half-random weights."""
    table = name_table(m)
    wanted = {name for e in table for name in e.hf}
    missing = sorted(wanted - set(tensors))
    if missing:
        raise HFExportError(f"the HF checkpoint lacks {missing[0]} ({len(missing)} missing): not this preset's shape")
    extra = sorted(set(tensors) - wanted)
    if extra:
        raise HFExportError(f"the HF checkpoint has {extra[0]} ({len(extra)} unexpected): not this preset's shape")
    out: dict[str, torch.Tensor] = {}
    for entry in table:
        parts = [tensors[n].to(torch.float32) for n in entry.hf]
        if entry.layout == "qkv":
            out[entry.megatron] = _qkv_join(*parts, m)
        elif entry.layout == "gate_up":
            out[entry.megatron] = torch.cat(parts, dim=0)
        else:
            out[entry.megatron] = parts[0]
    return out


def load_into(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], m: ModelArgs) -> None:
    """Copy HF tensors into a Megatron model built for ``m`` (one process, local or TE names), shape-checked."""
    converted = from_hf(tensors, m)
    state = model.state_dict()
    by_canonical = {canonical_name(k): k for k, v in state.items() if isinstance(v, torch.Tensor)}
    unknown = sorted(set(by_canonical) - set(converted))
    if unknown:
        raise HFExportError(f"the model has {unknown[0]}, which no HF tensor fills ({len(unknown)} unfilled)")
    with torch.no_grad():
        for name, value in converted.items():
            target = state[by_canonical[name]]
            if tuple(target.shape) != tuple(value.shape):
                raise HFExportError(f"{name}: HF gives {tuple(value.shape)}, the model has {tuple(target.shape)}")
            target.copy_(value.to(target.dtype))


def layer_types(m: ModelArgs) -> list[str]:
    return ["full_attention" if i in m.global_layers else "sliding_attention" for i in range(m.num_layers)]


def hf_config(
    preset: Preset, *, dtype: torch.dtype, eos_token_id: int, pad_token_id: int, bos_token_id: int | None = None
) -> dict[str, Any]:
    """``config.json`` for ``ExaoneMoeForCausalLM``. ``vocab_size`` is the padded embedding (the published
    K-EXAONE config says 153,600 too); ``max_position_embeddings`` the longest context stage's."""
    m = preset.model
    if m.num_moe_experts and m.moe_ffn_hidden_size and m.moe_shared_expert_intermediate_size % m.moe_ffn_hidden_size:
        raise HFExportError(
            "exaone_moe sizes the shared expert as moe_intermediate_size x num_shared_experts; "
            f"{m.moe_shared_expert_intermediate_size} is not a multiple of {m.moe_ffn_hidden_size}"
        )
    if m.moe_router_score_function != "sigmoid":
        raise HFExportError(f"exaone_moe routes with sigmoid scores, this preset with {m.moe_router_score_function}")
    longest = max([preset.pretrain.seq_length] + [s.seq_length for s in preset.context.stages.values()])
    return {
        "architectures": ["ExaoneMoeForCausalLM"],
        "model_type": "exaone_moe",
        "vocab_size": m.padded_vocab_size,
        "hidden_size": m.hidden_size,
        "intermediate_size": m.ffn_hidden_size,
        "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_attention_heads,
        "num_key_value_heads": m.num_query_groups,
        "head_dim": m.kv_channels,
        "hidden_act": "silu",
        "max_position_embeddings": longest,
        "rms_norm_eps": m.norm_eps,
        "tie_word_embeddings": not m.untie_embeddings_and_output_weights,
        "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta},
        "sliding_window": m.sliding_window,
        "sliding_window_pattern": "L" * (m.global_attn_every - 1) + "G",
        "layer_types": layer_types(m),
        "first_k_dense_replace": m.num_dense_layers,
        "mlp_layer_types": ["dense" if i < m.num_dense_layers else "sparse" for i in range(m.num_layers)],
        "moe_intermediate_size": m.moe_ffn_hidden_size,
        "num_experts": m.num_moe_experts,
        "num_experts_per_tok": m.moe_router_topk,
        "num_shared_experts": m.moe_shared_expert_intermediate_size // m.moe_ffn_hidden_size,
        "norm_topk_prob": m.moe_router_topk > 1,  # Megatron normalises the top-k sigmoid scores when k > 1
        "routed_scaling_factor": m.moe_router_topk_scaling_factor,
        "n_group": 1,
        "topk_group": 1,
        "num_nextn_predict_layers": m.mtp_num_layers,
        "attention_dropout": 0.0,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }


def generation_config(preset: Preset, *, eos_token_id: int, pad_token_id: int) -> dict[str, Any]:
    """The report's decoding (§4.1: temperature 1.0, top-p 0.95), as ``generation_config.json``."""
    return {
        "do_sample": True,
        "temperature": preset.release.temperature,
        "top_p": preset.release.top_p,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
    }


def shard(tensors: Mapping[str, torch.Tensor], max_shard_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors in name order, cut into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    return shards


def write_weights(directory: Path, tensors: Mapping[str, torch.Tensor], max_shard_bytes: int) -> list[str]:
    """``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` + the index; returns the file names."""
    from safetensors.torch import save_file

    shards = shard(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(dict(shards[0]), str(directory / "model.safetensors"), metadata={"format": "pt"})
        return ["model.safetensors"]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    for name, part in zip(names, shards):
        save_file(dict(part), str(directory / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return names + [SAFETENSORS_INDEX]


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HF checkpoint directory (one file or an index of shards)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / SAFETENSORS_INDEX
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise HFExportError(f"{directory} has no model.safetensors or {SAFETENSORS_INDEX}")
    out: dict[str, torch.Tensor] = {}
    for name in files:
        out.update(load_file(str(directory / name)))
    return out


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def save_hf(
    directory: str | Path,
    model: torch.nn.Module,
    preset: Preset,
    *,
    tokenizer_dir: str | Path,
    dtype: torch.dtype,
    max_shard_bytes: int,
) -> list[str]:
    """The whole HF checkpoint of ``model`` into ``directory`` (which must not hold a checkpoint yet): weights,
    ``config.json``, ``generation_config.json``, the tokenizer files (its chat template included) with
    ``model_max_length`` set. Returns the file names written."""
    from tokenizers import Tokenizer

    directory, tokenizer_dir = Path(directory), Path(tokenizer_dir)
    if (directory / "config.json").exists():
        raise HFExportError(f"{directory} already holds an HF checkpoint; export into a fresh directory")
    for name in TOKENIZER_FILES:
        if not (tokenizer_dir / name).exists():
            raise HFExportError(f"tokenizer directory {tokenizer_dir} has no {name}")
    tok_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    ids = {t: tokenizer.token_to_id(tok_config.get(t)) for t in ("eos_token", "pad_token")}
    if None in ids.values():
        raise HFExportError(f"the tokenizer lacks its eos/pad tokens ({tok_config.get('eos_token')!r})")
    directory.mkdir(parents=True, exist_ok=True)
    files = write_weights(directory, to_hf(model.state_dict(), preset.model, dtype=dtype), max_shard_bytes)
    config = hf_config(preset, dtype=dtype, eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"])
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = generation_config(preset, eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"])
    (directory / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    (directory / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    tok_config["model_max_length"] = config["max_position_embeddings"]
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    return files + ["config.json", "generation_config.json", *TOKENIZER_FILES]


def check_config(directory: str | Path, preset: Preset) -> None:
    """The HF checkpoint's ``config.json`` describes this preset's architecture (before any weight is read)."""
    config = json.loads((Path(directory) / "config.json").read_text())
    if config.get("model_type") != "exaone_moe":
        raise HFExportError(f"{directory} is a {config.get('model_type')!r} checkpoint, not exaone_moe")
    expected = hf_config(preset, dtype=torch.float32, eos_token_id=0, pad_token_id=0)
    keys = [
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "sliding_window", "layer_types", "moe_intermediate_size", "num_experts",
        "num_experts_per_tok", "num_shared_experts", "routed_scaling_factor", "first_k_dense_replace",
    ]  # fmt: skip
    for key in keys:
        if config.get(key) != expected[key]:
            raise HFExportError(
                f"{directory}: config {key}={config.get(key)!r}, preset {preset.name!r} has {expected[key]!r}"
            )
    theta = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta"))
    if theta != expected["rope_parameters"]["rope_theta"]:
        raise HFExportError(
            f"{directory}: rope_theta {theta!r}, preset has {expected['rope_parameters']['rope_theta']}"
        )


def megatron_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """[b, s, vocab] logits of the Megatron model (eval mode, MTP skipped as at inference)."""
    from megatron.core.inference.utils import InferenceMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), InferenceMode.active():
            positions = torch.arange(ids.shape[1]).unsqueeze(0).expand(ids.shape[0], -1)
            return model(ids, positions, None, runtime_gather_output=True).float()
    finally:
        model.train(was_training)


def load_transformers(directory: str | Path, *, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The export as transformers loads it (``AutoModelForCausalLM``, eager attention); unexpected or missing
    keys other than the ``mtp.*`` transformers deliberately ignores are an error."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=dtype, attn_implementation="eager", output_loading_info=True
    )
    problems = {k: [n for n in v if not n.startswith("mtp.")] for k, v in info.items() if isinstance(v, (list, set))}
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        kind, names = next(iter(problems.items()))
        raise HFExportError(f"transformers loaded {directory} with {kind}: {sorted(names)[:3]}")
    return model.eval()


def parity(
    hf_model: torch.nn.Module, model: torch.nn.Module, prompts: torch.Tensor, *, vocab_size: int, new_tokens: int
) -> dict[str, Any]:
    """transformers vs Megatron on the same ids: the max |logit difference| over every position of ``prompts``
    [b, s], and whether greedy continuations of ``new_tokens`` agree (both recompute the full sequence per
    token, so the comparison is of the models, not of two caches)."""
    with torch.no_grad():
        hf_logits = hf_model(prompts).logits.float()
    meg = megatron_logits(model, prompts)
    max_diff = float((hf_logits - meg).abs().max())
    hf_ids, meg_ids = prompts.clone(), prompts.clone()
    for _ in range(new_tokens):
        with torch.no_grad():
            hf_next = hf_model(hf_ids).logits[:, -1, :vocab_size].argmax(-1, keepdim=True)
        meg_next = megatron_logits(model, meg_ids)[:, -1, :vocab_size].argmax(-1, keepdim=True)
        hf_ids, meg_ids = torch.cat([hf_ids, hf_next], 1), torch.cat([meg_ids, meg_next], 1)
    same = (hf_ids == meg_ids).all(dim=1)
    return {
        "max_abs_logit_diff": max_diff,
        "logit_scale": float(meg.abs().max()),
        "greedy_identical": int(same.sum()),
        "prompts": int(prompts.shape[0]),
        "prompt_tokens": int(prompts.shape[1]),
        "new_tokens": new_tokens,
    }


__all__ = [
    "HFExportError",
    "NameMap",
    "SAFETENSORS_INDEX",
    "canonical_name",
    "check_config",
    "from_hf",
    "generation_config",
    "hf_config",
    "hf_to_checkpoint",
    "layer_types",
    "load_into",
    "load_transformers",
    "megatron_logits",
    "parity",
    "name_table",
    "name_table_markdown",
    "read_weights",
    "save_hf",
    "shard",
    "to_hf",
    "write_weights",
]


def hf_to_checkpoint(hf_dir: str | Path, preset: Preset, out: str | Path) -> Path:
    """A Megatron weights checkpoint (``checkpoint.save_model``; what ``load_model`` and a stage's
    initialisation read) from an HF ``exaone_moe`` directory: the way a published K-EXAONE checkpoint seeds the
    later stages. The config is checked against the preset before any weight is read."""
    from model import checkpoint
    from model.architecture import build_model

    check_config(hf_dir, preset)
    if Path(out).exists():
        raise HFExportError(f"{out} exists; the checkpoint goes into a fresh directory")
    tensors = read_weights(hf_dir)
    vocab = json.loads((Path(hf_dir) / "config.json").read_text())["vocab_size"]
    model = build_model(preset, vocab_size=vocab)
    load_into(model, tensors, preset.model)
    return checkpoint.save_model(out, model)


def main(argv: list[str] | None = None) -> int:
    """``python -m model.hf_export --preset P --hf DIR --out CKPT``: HF -> Megatron checkpoint."""
    import argparse
    import sys

    from config import get_preset

    ap = argparse.ArgumentParser(prog="python -m model.hf_export", description=main.__doc__)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--hf", required=True, type=Path, help="an HF exaone_moe directory (config.json + safetensors)")
    ap.add_argument("--out", required=True, type=Path, help="the Megatron checkpoint directory to create")
    args = ap.parse_args(argv)
    try:
        out = hf_to_checkpoint(args.hf, get_preset(args.preset), args.out)
    except (HFExportError, OSError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
