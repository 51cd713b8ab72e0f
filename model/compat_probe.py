"""Which CPU compat patches does this Megatron-Core still need?  ``python -m model.compat_probe``

Runs the tiny model through every stage a CPU run uses (seed the RNG tracker, build, one training step,
save a checkpoint), then Megatron's own ``DotProductAttention`` on a sliding-window layer (the reference the
CPU core attention is tested and benchmarked against), once with all patches, once with none, and once with
each single patch left out, and prints a JSON report: for each configuration the first stage that failed and
its error. Run it after upgrading megatron-core: a patch whose omission no longer fails can be deleted from
model/cpu_compat.py. Needs a machine without CUDA (on a GPU the patches are never applied).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

STAGES = ("seed", "build", "train_step", "save", "reference_attention")  # in the order a CPU run meets them


def _run_stages(preset) -> dict[str, str | None]:
    """The first stage of STAGES that failed and its error (both None when every stage passed)."""
    import torch

    from model import checkpoint, parallel, training
    from model.architecture import build_model

    stage = "seed"
    try:
        parallel.seed_everything(preset.pretrain.seed)
        stage = "build"
        model = build_model(preset)
        stage = "train_step"
        optimizer = training.adamw(model, preset)
        scheduler = training.wsd_scheduler(optimizer, preset)
        tokens = torch.arange(2 * 65).reshape(2, 65) % preset.tokenizer.vocab_size
        training.train_step(
            model, optimizer, scheduler, training.batch_from_tokens(tokens), grad_clip=preset.pretrain.grad_clip
        )
        stage = "save"
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint.save(os.path.join(tmp, "ckpt"), model, optimizer, scheduler, data_position={})
        stage = "reference_attention"
        _reference_attention(model.config)
    except Exception as exc:  # the report is the point: record which stage broke and how
        message = (str(exc).strip().splitlines() or [""])[0]
        return {"failed_stage": stage, "error": f"{type(exc).__name__}: {message}"[:300]}
    return {"failed_stage": None, "error": None}


def _reference_attention(config) -> None:
    """Megatron's DotProductAttention (not used by the CPU model) on layer 1, a sliding-window layer."""
    import torch
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    q = torch.randn(32, 1, config.num_attention_heads, config.kv_channels)
    kv = torch.randn(32, 1, config.num_query_groups, config.kv_channels)
    DotProductAttention(config, 1, AttnMaskType.causal, "self")(q, kv, kv, None)


def probe() -> dict[str, dict[str, str | None]]:
    os.environ["KEXAONE_CPU_COMPAT"] = "0"  # nothing applies patches behind the probe's back
    from config import get_preset
    from model import cpu_compat, parallel

    if cpu_compat.cuda_available():
        raise SystemExit("compat_probe: this machine has CUDA; the CPU patches are never applied here")
    preset = get_preset("tiny")
    configurations = {"all": list(cpu_compat.PATCHES), "none": []}
    configurations.update(
        {f"without_{name}": [n for n in cpu_compat.PATCHES if n != name] for name in cpu_compat.PATCHES}
    )
    report = {}
    for label, names in configurations.items():
        cpu_compat.revert()
        cpu_compat.apply(names)
        parallel.initialize()  # torch.distributed + parallel state need no patch; idempotent
        report[label] = _run_stages(preset)
    cpu_compat.revert()
    return report


if __name__ == "__main__":  # dist_checkpointing.save re-imports the main module in a helper process
    print(json.dumps(probe(), indent=2))
    sys.exit(0)
