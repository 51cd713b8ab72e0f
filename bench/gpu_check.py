"""The GPU check: ``python -m bench.gpu_check [--out DIR] [--steps N] [--no-write]``  (evidence, never a CI gate)

One script for a machine with one or more GPUs, about ten minutes on one H200. Every check is a row with a
status: ``ok``, ``FAILED`` (with what differed) or ``skipped`` (with the one-line reason: no CUDA, no
TransformerEngine, too few GPUs). On a machine without a GPU it runs the CPU-possible parts, so the script
itself is exercised by the test suite (``tests/unit/test_gpu_check.py``).

Checks, in order:

1. ``environment``: torch / CUDA / TransformerEngine / Triton versions, the device, and the measured bf16
   matmul rate (8192^3 on GPU; fp32 1024^3 on CPU), which is the MFU denominator below.
2. ``cpu reference``: the tiny model trained ``--steps`` steps in-process on CPU in fp32 (Muon + AdamW, the
   WSD schedule with a steep ``CURVE_SCHEDULE``, the preset's clipping), on tokens from a fixed Markov chain
   (2 successors per token), so the loss falls.
3. ``tiny on CUDA, local modules``: the same steps, same seed, same tokens, with the CPU backend's modules
   (no TransformerEngine) moved to the GPU, fp32 with TF32 off: the per-step loss must match the CPU
   reference within ``LOCAL_RTOL`` (it is the same arithmetic on another device).
4. ``tiny on TE bf16``: the GPU backend (TransformerEngine modules, bf16, TE's fused windowed attention): the
   per-step loss must stay within ``BF16_RTOL`` of the fp32 CPU reference.
5. ``FP8 switch``: a scaled-down K-EXAONE stack (full width: hidden 6144, 64 query / 8 KV heads, SWA 128,
   sigmoid routing top-8 with a shared expert; ``STACK_LAYERS`` layers and ``STACK_EXPERTS`` experts so it
   fits one GPU with its gradients) forward+backward in bf16 and with the preset's FP8 recipe (e4m3,
   block-wise scaling) on the same weights and tokens: the loss must agree within ``FP8_RTOL``; the step
   time ratio is reported.
6. ``full-width MoE layer``: one K-EXAONE MoE layer (128 experts, top-8, 4096 tokens) fwd+bwd in bf16:
   tokens/s and MFU against the measured matmul rate (``bench.bench_model.layer_row``).
7. ``context parallelism``: a CP=2 step against CP=1 on the same batch (``model.train``'s CP path needs 2
   GPUs: NCCL refuses two ranks on one device).
8. ``kernels``: the Triton decode-attention and router kernels against their torch references at the full
   preset's shapes, and their time against the library path (``bench.bench_kernels_gpu``, reduced).

On this workplace's H200 (torch and triton in the image, nothing fetched there): ``scripts/gpu_wheels.sh`` here
fetches megatron-core, emerging-optimizers and dill into ``.whl/`` (2.5 MB), then the device command is
``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:.
python3 -m bench.gpu_check --out $OUT --no-write`` with ``.whl`` carried. TransformerEngine's wheels are far over
what travels there, so rows 4-7 say "skipped" on that machine; they run on a cluster node with TE (an NGC
PyTorch container).

Results: ``gpu_check.json`` in ``--out`` (default ``bench/results``) and the table in docs/benchmarks.md
(section ``gpu_check``) unless ``--no-write``. The exit status is 1 when any check FAILED, else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench.report import markdown_table, write_section

REPO = Path(__file__).resolve().parent.parent
LOCAL_RTOL = 2e-3  # the same fp32 arithmetic on another device (summation order of the GPU's kernels differs)
BF16_RTOL = 3e-2  # bf16 parameters and activations against fp32, over a few dozen steps
FP8_RTOL = 2e-2  # FP8 block-wise against bf16 on one forward of the same weights
# a short, steep schedule so a few dozen steps move the loss well away from its start (a curve worth comparing)
CURVE_SCHEDULE = {"pretrain.max_lr": 3e-3, "pretrain.warmup_fraction": 0.001}
STACK_LAYERS = 4  # 1 dense + 3 MoE: window layers and the first global layer (global_attn_every 4)
STACK_EXPERTS = 16  # full-width experts, fewer of them: weights + bf16 gradients fit one H200


@dataclass
class Check:
    name: str
    status: str = "ok"  # ok | FAILED | skipped
    detail: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def run_check(name: str, fn: Callable[[Check], None]) -> Check:
    check = Check(name)
    t0 = time.perf_counter()
    try:
        fn(check)
    except SkipCheck as why:
        check.status, check.detail = "skipped", str(why)
    except Exception as exc:  # a broken check is a result, not the end of the script
        check.status = "FAILED"
        check.detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
    check.values["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"[{check.status:>7}] {check.name}: {check.detail}", flush=True)
    return check


class SkipCheck(Exception):
    pass


def need_cuda(gpus: int = 1) -> None:
    if not torch.cuda.is_available():
        raise SkipCheck("no CUDA device on this machine")
    if torch.cuda.device_count() < gpus:
        raise SkipCheck(f"needs {gpus} GPUs, this machine has {torch.cuda.device_count()}")


def need_te() -> None:
    from model.architecture import have_transformer_engine

    need_cuda()
    if not have_transformer_engine():
        raise SkipCheck("TransformerEngine is not installed (the GPU backend's modules)")


# -- a fixed token stream with structure the tiny model learns within a few dozen steps --------------------


def token_stream(vocab: int, batch: int, seq: int, steps: int, seed: int) -> list[torch.Tensor]:
    """``steps`` batches of [batch, seq+1] ids from a fixed Markov chain: each token has 2 successors."""
    g = torch.Generator().manual_seed(seed)
    successors = torch.randint(0, vocab, (vocab, 2), generator=g)
    out = []
    for _ in range(steps):
        rows = torch.empty(batch, seq + 1, dtype=torch.int64)
        rows[:, 0] = torch.randint(0, vocab, (batch,), generator=g)
        choice = torch.randint(0, 2, (batch, seq), generator=g)
        for t in range(seq):
            rows[:, t + 1] = successors[rows[:, t], choice[:, t]]
        out.append(rows)
    return out


def train_curve(preset_name: str, *, backend: str, device: str, steps: int, seed: int = 1234) -> list[float]:
    """Per-step total loss of the preset's model trained in this process (world size 1)."""
    from config import get_preset
    from model import parallel, training
    from model.architecture import build_model

    preset = get_preset(preset_name, overrides=CURVE_SCHEDULE)
    parallel.initialize()
    model = build_model(preset, backend=backend, seed=seed)
    model.to(device)
    optimizer = training.build_optimizer(model, preset)
    scheduler = training.wsd_scheduler(optimizer, preset)
    seq = preset.pretrain.seq_length
    losses = []
    for tokens in token_stream(preset.tokenizer.vocab_size, 4, seq, steps, seed):
        batch = {k: v.to(device) for k, v in training.batch_from_tokens(tokens).items()}
        result = training.train_step(model, optimizer, scheduler, batch, grad_clip=preset.pretrain.grad_clip)
        losses.append(result.loss)
    del model, optimizer
    if device == "cuda":
        torch.cuda.empty_cache()
    return losses


def compare_curves(check: Check, got: list[float], reference: list[float], rtol: float) -> None:
    worst = max(abs(a - b) / abs(b) for a, b in zip(got, reference))
    check.values.update(first_loss=got[0], last_loss=got[-1], max_rel_diff_vs_cpu=worst, rtol=rtol)
    finite = all(math.isfinite(x) for x in got)
    if not finite or worst > rtol:
        check.status = "FAILED"
    check.detail = (
        f"loss {got[0]:.4f} -> {got[-1]:.4f}; max relative difference to the CPU run {worst:.2e} (limit {rtol:g})"
    )


# -- the checks ------------------------------------------------------------------------------------------


def environment(check: Check) -> None:
    from bench.bench_model import matmul_flops_per_second
    from model.architecture import have_transformer_engine

    check.values["torch"] = torch.__version__
    check.values["cuda"] = torch.version.cuda or "-"
    check.values["transformer_engine"] = have_transformer_engine()
    try:
        import triton

        check.values["triton"] = triton.__version__
    except ImportError:
        check.values["triton"] = "-"
    if torch.cuda.is_available():
        check.values["device"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
        check.values["matmul_tflops"] = matmul_flops_per_second("cuda", torch.bfloat16, 8192) / 1e12
        check.detail = f"{check.values['device']}, bf16 matmul {check.values['matmul_tflops']:.0f} TFLOP/s"
    else:
        check.values["device"] = "cpu"
        check.values["matmul_tflops"] = matmul_flops_per_second("cpu", torch.float32, 1024) / 1e12
        check.detail = f"no CUDA; CPU fp32 matmul {check.values['matmul_tflops'] * 1e3:.0f} GFLOP/s"
    check.detail += f"; TransformerEngine {'present' if check.values['transformer_engine'] else 'absent'}"


def kernel_matches(what: str, error: str) -> bool:
    """The error column of bench_kernels_gpu: bf16 attention within 2e-2, the router's choices identical."""
    if "DIFFER" in error or "OOM" in error:
        return False
    return float(error.split(",")[0]) <= (2e-2 if what.startswith("attention") else 1e-5)


def make_checks(args: argparse.Namespace) -> list[tuple[str, Callable[[Check], None]]]:
    state: dict[str, Any] = {}

    def cpu_reference(check: Check) -> None:
        state["cpu"] = train_curve("tiny", backend="cpu", device="cpu", steps=args.steps)
        curve = state["cpu"]
        check.values.update(first_loss=curve[0], last_loss=curve[-1], steps=len(curve))
        if not all(math.isfinite(x) for x in curve) or not curve[-1] < curve[0]:
            check.status = "FAILED"
        check.detail = f"tiny, {len(curve)} steps fp32: loss {curve[0]:.4f} -> {curve[-1]:.4f}"

    def local_on_cuda(check: Check) -> None:
        need_cuda()
        if "cpu" not in state:
            raise SkipCheck("the CPU reference did not run")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        compare_curves(
            check, train_curve("tiny", backend="cpu", device="cuda", steps=args.steps), state["cpu"], LOCAL_RTOL
        )

    def te_bf16(check: Check) -> None:
        need_te()
        if "cpu" not in state:
            raise SkipCheck("the CPU reference did not run")
        compare_curves(
            check, train_curve("tiny", backend="gpu", device="cuda", steps=args.steps), state["cpu"], BF16_RTOL
        )

    def fp8_switch(check: Check) -> None:
        need_te()
        bf16_loss, bf16_ms = stack_step(fp8=False)
        fp8_loss, fp8_ms = stack_step(fp8=True)
        rel = abs(fp8_loss - bf16_loss) / abs(bf16_loss)
        check.values.update(bf16_loss=bf16_loss, fp8_loss=fp8_loss, rel_diff=rel, bf16_ms=bf16_ms, fp8_ms=fp8_ms)
        check.status = "ok" if rel <= FP8_RTOL and math.isfinite(fp8_loss) else "FAILED"
        check.detail = (
            f"{STACK_LAYERS} layers x {STACK_EXPERTS} experts at full width: loss bf16 {bf16_loss:.4f}, FP8 "
            f"{fp8_loss:.4f} (relative {rel:.2e}, limit {FP8_RTOL:g}); step {bf16_ms:.0f} ms -> {fp8_ms:.0f} ms "
            f"({bf16_ms / fp8_ms:.2f}x)"
        )

    def moe_layer(check: Check) -> None:
        from bench.bench_model import layer_row, matmul_flops_per_second

        need_te()
        peak = matmul_flops_per_second("cuda", torch.bfloat16, 8192)
        row = layer_row("k-exaone-236b", "gpu", "cuda", torch.bfloat16, seq=4096, batch=1, peak=peak)
        check.values.update(what=row[0], median_ms=row[4], tokens_per_s=row[6], mfu=row[7])
        check.detail = f"{row[0]}: {row[4]:.1f} ms, {row[6]:.3g} tokens/s, MFU {row[7]}"

    def context_parallel(check: Check) -> None:
        need_te()
        need_cuda(2)
        import subprocess

        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        cmd += ["-m", "bench.gpu_check_cp"]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        last = (done.stdout.strip().splitlines() or ["{}"])[-1]
        if done.returncode:
            raise RuntimeError(f"CP=2 run exited {done.returncode}: {done.stderr.strip()[-300:]}")
        result = json.loads(last)
        check.values.update(result)
        check.status = "ok" if result.get("ok") else "FAILED"
        check.detail = result.get("detail", "")

    def kernels(check: Check) -> None:
        need_cuda()
        from bench import bench_kernels_gpu as kg

        rows = []
        with torch.no_grad():
            for label, slots, window in kg.CACHES[:2]:  # the wrapped ring buffer and a 4K global cache
                row = kg.attention_row(8, label, slots, window)
                rows.append(dict(what=f"{row[0]}, batch 8", kernel_ms=row[3], library_ms=row[5], error=row[-1]))
            row = kg.router_row(16384)
            rows.append(dict(what=row[0], kernel_ms=row[3], library_ms=row[5], error=row[-1]))
        bad = [r for r in rows if not kernel_matches(r["what"], r["error"])]
        check.values["rows"] = rows
        check.status = "FAILED" if bad else "ok"
        check.detail = f"{len(rows) - len(bad)}/{len(rows)} kernel shapes match their torch reference; " + "; ".join(
            f"{r['what']}: {r['kernel_ms']} ms vs library {r['library_ms']} ms" for r in rows
        )

    return [
        ("environment", environment),
        ("cpu reference", cpu_reference),
        ("tiny on CUDA, local modules", local_on_cuda),
        ("tiny on TE bf16", te_bf16),
        ("FP8 switch", fp8_switch),
        ("full-width MoE layer", moe_layer),
        ("context parallelism", context_parallel),
        ("kernels", kernels),
    ]


def stack_step(*, fp8: bool) -> tuple[float, float]:
    """Loss and median ms of fwd+bwd of the scaled-down full-width stack on a fixed batch (seeded weights)."""
    from config import get_preset
    from model import parallel
    from model.architecture import build_model
    from model.training import batch_from_tokens

    preset = get_preset("k-exaone-236b")
    parallel.initialize()
    model = build_model(
        preset,
        backend="gpu",
        fp8=fp8,
        seed=7,
        num_layers=STACK_LAYERS,
        num_moe_experts=STACK_EXPERTS,
        moe_layer_freq=[0] + [1] * (STACK_LAYERS - 1),
        mtp_num_layers=None,
    )
    tokens = token_stream(preset.tokenizer.vocab_size, 1, 4096, 1, seed=7)[0].cuda()
    batch = batch_from_tokens(tokens)
    times, loss = [], float("nan")
    for _ in range(6):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        per_token = model(batch["input_ids"], batch["position_ids"], None, labels=batch["labels"])
        total = per_token.float().mean()
        total.backward()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        loss = float(total)
    del model
    torch.cuda.empty_cache()
    return loss, sorted(times[1:])[len(times[1:]) // 2] * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for gpu_check.json")
    ap.add_argument("--steps", type=int, default=30, help="training steps of the tiny curves (default 30)")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the CPU reference checks that the loss falls)")
    checks = [run_check(name, fn) for name, fn in make_checks(args)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps([asdict(c) for c in checks], indent=2, default=str) + "\n")
    if not args.no_write:
        rows = [[c.name, c.status, c.detail, c.values.get("seconds", "")] for c in checks]
        write_section(
            "gpu_check",
            "GPU check: TE/bf16, FP8, a full-width MoE layer, GPU vs CPU training, CP, kernels",
            "python -m bench.gpu_check",
            markdown_table(["check", "status", "result", "s"], rows),
        )
    return 1 if any(c.status == "FAILED" for c in checks) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
