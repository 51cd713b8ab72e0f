"""[release] group: ``hf_checkpoint``, the chain's last checkpoint (``preference_checkpoint``) in the Hugging Face
``exaone_moe`` format that transformers, vLLM and SGLang load (``model.hf_export``).

The asset loads the Megatron checkpoint into one process, writes the HF directory (weights in
``release.hf_dtype``, safetensors shards of ``release.hf_max_shard_bytes`` with an index, ``config.json``,
``generation_config.json``, the tokenizer with its chat template) and then proves it against code no one here
wrote: transformers loads the export and its logits on ``release.parity_prompts`` prompts longer than the
sliding window must match the Megatron model's within ``release.parity_max_abs_diff``, with identical greedy
continuations (blocking check ``hf_matches_megatron``). At the full preset the export needs one host that holds
the whole model (about 1 TB in fp32); streaming a sharded conversion is not built.
"""

import json
from pathlib import Path

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetDep, AssetExecutionContext, asset

from assets import keys
from assets.metadata import table
from assets.tokenizer import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, eod_and_pad, load_tokenizer
from assets.versioning import BuildResult, latest_upstream, materialize_versioned
from config import get_preset
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from kexaone_dag.executors import training_asset_kwargs
from resources.artifact_store import ArtifactStore
from resources.warehouse import Warehouse

RELEASE_GROUP = "release"
HF_DIR = "hf"
HF_MATCHES_MEGATRON = "hf_matches_megatron"
PARITY_FILE = "parity.json"
PARITY_NEW_TOKENS = 16  # greedy continuation compared token by token


@asset(
    group_name=RELEASE_GROUP,
    deps=[AssetDep(keys.PREFERENCE_CHECKPOINT), AssetDep(keys.SUPERBPE_TOKENIZER)],
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    check_specs=[
        AssetCheckSpec(
            HF_MATCHES_MEGATRON,
            asset=keys.HF_CHECKPOINT,
            blocking=True,
            description="transformers' exaone_moe loads the export; its logits match the Megatron model within "
            "release.parity_max_abs_diff on prompts longer than the window, and greedy continuations agree",
        )
    ],
    **{k: v for k, v in training_asset_kwargs(get_preset(), launches_trainer=False).items() if k != "kinds"},
    kinds={"pytorch", "huggingface"},
    description="The post-trained checkpoint in the Hugging Face exaone_moe format (transformers, vLLM, SGLang): "
    "sharded safetensors with MTP weights under mtp.*, config.json, generation_config.json, the tokenizer with "
    "its chat template; checked against transformers.",
)
def hf_checkpoint(
    context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
):
    import torch

    from model import checkpoint as ckpt
    from model import hf_export
    from model.architecture import build_model

    p = preset.get()
    r = p.release
    upstream = {
        "checkpoint": latest_upstream(context, keys.PREFERENCE_CHECKPOINT),
        "tokenizer": latest_upstream(context, keys.SUPERBPE_TOKENIZER),
    }

    def build(staging: Path) -> BuildResult:
        tok = load_tokenizer(artifact_store, upstream["tokenizer"].version)
        vocab = tok.get_vocab_size(with_added_tokens=True)
        eod, _ = eod_and_pad(tok, p)
        model = build_model(p, vocab_size=vocab)
        with artifact_store.local_copy(keys.PREFERENCE_CHECKPOINT, upstream["checkpoint"].version) as copy:
            ckpt.load_model(copy / "checkpoint", model)
        tok_dir = staging / "tokenizer_source"
        tok_dir.mkdir()
        for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE):
            with artifact_store.open(keys.SUPERBPE_TOKENIZER, upstream["tokenizer"].version, name, "rb") as f:
                (tok_dir / name).write_bytes(f.read())
        dtype = getattr(torch, r.hf_dtype)
        files = hf_export.save_hf(
            staging / HF_DIR, model, p, tokenizer_dir=tok_dir, dtype=dtype, max_shard_bytes=r.hf_max_shard_bytes
        )
        for f in tok_dir.iterdir():
            f.unlink()
        tok_dir.rmdir()
        hf_model = hf_export.load_transformers(staging / HF_DIR, dtype=dtype)
        prompts = torch.randint(
            0,
            vocab,
            (r.parity_prompts, r.parity_prompt_tokens),
            generator=torch.Generator().manual_seed(p.pretrain.seed),
        )
        parity = hf_export.parity(hf_model, model, prompts, vocab_size=vocab, new_tokens=PARITY_NEW_TOKENS)
        parity["eos_token_id"] = eod
        (staging / PARITY_FILE).write_text(json.dumps(parity, indent=2) + "\n")
        sizes = [(name, (staging / HF_DIR / name).stat().st_size) for name in files]
        return BuildResult(
            metadata={
                "hf_dir": HF_DIR,
                "dtype": r.hf_dtype,
                "files": len(files),
                "weights_bytes": sum(s for n, s in sizes if n.endswith(".safetensors")),
                "max_abs_logit_diff": parity["max_abs_logit_diff"],
                "greedy_identical": f"{parity['greedy_identical']}/{parity['prompts']}",
            },
            tables={
                "files": table(
                    [{"file": n, "bytes": s} for n, s in sizes],
                    [("file", "string", "file of the HF checkpoint"), ("bytes", "int", "size on disk")],
                )
            },
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("model", "release", "context.stages", "pretrain.seq_length", "pretrain.seed"),
        upstream=upstream,
        build=build,
    )
    parity = artifact_store.read_json(keys.HF_CHECKPOINT, result.ref.version, PARITY_FILE)
    passed = parity["max_abs_logit_diff"] <= r.parity_max_abs_diff and parity["greedy_identical"] == parity["prompts"]
    check = AssetCheckResult(
        check_name=HF_MATCHES_MEGATRON,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"transformers vs Megatron: max |logit diff| {parity['max_abs_logit_diff']:.2e} "
            f"(limit {r.parity_max_abs_diff:g}), greedy identical on {parity['greedy_identical']}/{parity['prompts']} "
            f"prompts of {parity['prompt_tokens']} tokens"
        ),
        metadata={k: v for k, v in parity.items() if isinstance(v, (int, float))},
    )
    return result.materialize_result(check_results=[check])


release_assets = [hf_checkpoint]
