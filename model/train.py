"""One training stage as its own process: what Dagster launches through Pipes (``torchrun -m model.train``).

    torchrun --standalone --nproc-per-node N -m model.train --preset tiny --stage stage1 \\
        --data MIXTURE_DIR --work-dir WORK_DIR --output OUT_DIR [--init-from CHECKPOINT_DIR] [--expert-parallel 2] \\
        [--pipeline-parallel 2] [--context-parallel 8]

Read top to bottom: ``main`` parses and validates everything (preset, mixture, vocabulary, output folder,
the checkpoint it starts from) before the first step; ``run_stage`` is the loop.

* Resume: every ``pretrain.checkpoint_every_steps`` (a context stage: its own ``checkpoint_every_steps``)
  the full state (model, optimizer, schedule, data position, RNG) goes to
  ``WORK_DIR/checkpoints/step_NNNNNN`` (written as ``.partial``, renamed when complete). A restarted run
  with the same arguments continues from the newest complete one: batches are a pure function of the step
  (Megatron's blended dataset indices), so the continued curve equals an uninterrupted one.
* Stages chain: ``--init-from`` loads the previous stage's final checkpoint (weights, optimizer and the
  WSD schedule, which spans all stages); its data position and RNG are not carried over.
* Reporting: rank 0 appends one JSON line per step to ``WORK_DIR/metrics.jsonl`` and, under Dagster Pipes,
  logs progress and finally reports the materialization (metadata + data version from the Pipes extras).
* Parallelism: TP / EP / DP as before; ``--pipeline-parallel N`` runs Megatron's 1F1B pipeline schedule over
  N stages (micro-batches of ``compute.micro_batch_size`` sequences; CPU/gloo too, ``model.cpu_compat``'s
  pipeline patches); ``--context-parallel N`` splits every sequence over N ranks (2N load-balanced chunks,
  ``model.parallel.split_for_context_parallel``) and needs CUDA with TransformerEngine attention -- without
  them the trainer refuses in one line before any compute. NIAH after training needs PP = CP = 1.
* Output: ``OUT_DIR/checkpoint`` (Megatron dist checkpoint), ``metrics.jsonl``, ``loss_curve.png``,
  ``summary.json``. ``OUT_DIR`` must be empty: a finished artifact is never written over.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch

from config import Preset, PresetError, get_preset
from model import checkpoint, data, training
from model.architecture import CP_COMM_TYPE, ModelBuildError, build_model, check_vocab
from model.stages import METRICS, NIAH_BATCH_TOKENS, StagePlan, TrainingSetupError, stage_plan

CHECKPOINTS = "checkpoints"
PARTIAL = ".partial"


# -- reporting: Dagster Pipes on rank 0 when launched by Dagster, plain stdout otherwise -----------------


class Reporter:
    def __init__(self, pipes: Any | None, rank: int):
        self.pipes, self.rank = pipes, rank

    def info(self, message: str) -> None:
        if self.rank != 0:
            return
        if self.pipes is not None:
            self.pipes.log.info(message)
        print(message, flush=True)

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.pipes.extras) if self.pipes is not None else {}

    def materialization(self, metadata: dict[str, Any], data_version: str | None) -> None:
        if self.rank == 0 and self.pipes is not None:
            self.pipes.report_asset_materialization(metadata=metadata, data_version=data_version)


@contextlib.contextmanager
def open_reporter(rank: int) -> Iterator[Reporter]:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if rank == 0 and os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR):
        with open_dagster_pipes() as pipes:  # an exception in here reaches Dagster as the step's error
            yield Reporter(pipes, rank)
    else:
        yield Reporter(None, rank)


# -- validation before any compute ----------------------------------------------------------------------


def validate_inputs(
    preset: Preset,
    plan: StagePlan,
    manifest: data.MixtureManifest,
    *,
    output: Path,
    init_from: Path | None,
    world_size: int,
    tensor_parallel: int,
    expert_parallel: int,
    context_parallel: int = 1,
    pipeline_parallel: int = 1,
    niah: bool = False,
) -> None:
    problems = []
    if context_parallel != 1:
        if context_parallel < 1 or not context_parallel_available():
            # one line, before any compute: the CPU backend's attention has no context-parallel path
            raise TrainingSetupError(
                f"context parallelism {context_parallel} is not supported on this machine: it needs CUDA "
                "GPUs with TransformerEngine attention; run the stage with --context-parallel 1"
            )
        m = preset.model
        if plan.seq_length % (2 * context_parallel):
            problems.append(
                f"sequence length {plan.seq_length} does not split into 2 x {context_parallel} context-parallel chunks"
            )
        if m.num_attention_heads % context_parallel or m.num_query_groups % context_parallel:
            problems.append(
                f"context parallelism {context_parallel} ({CP_COMM_TYPE} exchange) must divide the "
                f"{m.num_attention_heads} attention heads and {m.num_query_groups} KV groups"
            )
    if pipeline_parallel < 1 or preset.model.num_layers % pipeline_parallel:
        problems.append(
            f"pipeline parallelism {pipeline_parallel} does not divide the model's {preset.model.num_layers} layers"
        )
    if niah and (pipeline_parallel > 1 or context_parallel > 1):
        problems.append(
            "the NIAH evaluation after training generates with a whole model on rank 0; run a stage with "
            "--niah-cases at --pipeline-parallel 1 and --context-parallel 1"
        )
    try:
        check_vocab(preset, manifest.vocab_size)
    except ModelBuildError as exc:
        problems.append(f"tokenizer/model vocabulary mismatch: {exc}")
    biggest = max((s.max_token_id for s in manifest.sources), default=-1)
    if biggest >= preset.model.padded_vocab_size:
        problems.append(
            f"mixture holds token id {biggest}, beyond the model's {preset.model.padded_vocab_size} embedding rows"
        )
    if manifest.seq_length != plan.seq_length:
        problems.append(
            f"mixture {manifest.stage} is packed for sequence length {manifest.seq_length}, stage "
            f"{plan.stage} trains at {plan.seq_length}"
        )
    if manifest.kind == "blend" and manifest.num_samples < plan.num_samples:
        problems.append(f"mixture has {manifest.num_samples} samples, stage {plan.stage} needs {plan.num_samples}")
    pp, cp = max(1, pipeline_parallel), max(1, context_parallel)
    # experts are whole on each rank (expert tensor parallelism 1): EP splits the TP x CP x DP ranks of a stage
    if world_size % (tensor_parallel * pp * cp) or (world_size // pp) % expert_parallel:
        extra = (f" x PP={pp}" if pp > 1 else "") + (f" x CP={cp}" if cp > 1 else "")
        problems.append(f"{world_size} processes do not divide into TP={tensor_parallel} x EP={expert_parallel}{extra}")
    data_parallel = max(1, world_size // (tensor_parallel * pp * cp))
    if plan.global_batch_size % data_parallel:
        problems.append(
            f"global batch {plan.global_batch_size} does not split over {data_parallel} data-parallel ranks"
        )
    if preset.model.num_moe_experts % expert_parallel:
        problems.append(f"expert parallelism {expert_parallel} does not divide {preset.model.num_moe_experts} experts")
    if output.exists() and any(output.iterdir()):
        problems.append(f"output {output} is not empty; a finished artifact is never overwritten")
    if init_from is not None and not (init_from / "metadata.json").exists():
        problems.append(f"--init-from {init_from} is not a finished dist checkpoint (no metadata.json)")
    if init_from is None and plan.first_step > 0:
        problems.append(
            f"stage {plan.stage} starts at step {plan.first_step}; it needs --init-from (the "
            "previous stage's checkpoint)"
        )
    if problems:
        raise TrainingSetupError("; ".join(problems))


def context_parallel_available() -> bool:
    """Context parallelism runs through TransformerEngine's attention: CUDA and TE must both be present."""
    from model.architecture import have_transformer_engine

    return torch.cuda.is_available() and have_transformer_engine()


# -- periodic checkpoints in the work directory ---------------------------------------------------------


def complete_checkpoints(work_dir: Path) -> list[Path]:
    """Finished periodic checkpoints, oldest first (a ``.partial`` one was interrupted mid-write)."""
    folder = work_dir / CHECKPOINTS
    if not folder.exists():
        return []
    done = [
        p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(PARTIAL) and (p / "metadata.json").exists()
    ]
    return sorted(done, key=lambda p: p.name)


def save_periodic(work_dir: Path, stage_step: int, model, optimizer, scheduler, position: dict, keep: int) -> Path:
    rank = torch.distributed.get_rank()
    final = work_dir / CHECKPOINTS / f"step_{stage_step:06d}"
    partial = final.with_name(final.name + PARTIAL)
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
    torch.distributed.barrier()
    checkpoint.save(partial, model, optimizer, scheduler, data_position=position)
    torch.distributed.barrier()
    if rank == 0:
        os.replace(partial, final)  # atomic: a checkpoint is either complete under its name or absent
        for old in complete_checkpoints(work_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    torch.distributed.barrier()
    return final


def _rewrite_metrics(path: Path, before_global_step: int) -> None:
    """Keep the metric rows of steps already in the checkpoint we resume from (the rest are redone)."""
    if not path.exists():
        return
    rows = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= before_global_step
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(r + "\n" for r in rows))
    os.replace(tmp, path)


# -- the loop -------------------------------------------------------------------------------------------


def _batch(dataset, plan: StagePlan, stage_step: int, dp_rank: int, dp_size: int) -> dict[str, torch.Tensor]:
    """This rank's slice of global batch ``stage_step``: samples are a pure function of the step."""
    local = plan.global_batch_size // dp_size
    first = stage_step * plan.global_batch_size + dp_rank * local
    items = [dataset[i] for i in range(first, first + local)]
    return {
        "input_ids": torch.stack([torch.as_tensor(x["tokens"]) for x in items]).long(),
        "labels": torch.stack([torch.as_tensor(x["labels"]) for x in items]).long(),
        "position_ids": torch.stack([torch.as_tensor(x["position_ids"]) for x in items]).long(),
        "loss_mask": torch.stack([torch.as_tensor(x["loss_mask"]) for x in items]).float(),
    }


def run_stage(args: argparse.Namespace, preset: Preset, plan: StagePlan, report: Reporter) -> dict[str, Any]:
    from megatron.core import parallel_state

    from model import parallel

    output, work = Path(args.output), Path(args.work_dir)
    parallel.initialize(
        tensor_parallel=args.tensor_parallel,
        expert_parallel=args.expert_parallel,
        pipeline_parallel=args.pipeline_parallel,
        context_parallel=args.context_parallel,
        seed=preset.pretrain.seed,
    )
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    manifest = data.read_manifest(args.data)
    model = build_model(preset, vocab_size=manifest.vocab_size)
    optimizer = training.build_optimizer(model, preset)
    scheduler = training.wsd_scheduler(optimizer, preset)

    resumable = complete_checkpoints(work)
    start, resumed_from = 0, None
    if resumable:
        position = checkpoint.load(resumable[-1], model, optimizer, scheduler, restore_rng=True)
        if position.get("stage") != plan.stage:
            raise TrainingSetupError(f"{resumable[-1]} belongs to stage {position.get('stage')!r}, not {plan.stage!r}")
        start, resumed_from = int(position["stage_step"]), str(resumable[-1])
        report.info(f"{plan.stage}: resuming from {resumable[-1].name} (stage step {start} of {plan.steps})")
    elif args.init_from:
        checkpoint.load(args.init_from, model, optimizer, scheduler, restore_rng=False)
        if scheduler.num_steps != plan.first_step:
            raise TrainingSetupError(
                f"--init-from {args.init_from} ends at optimizer step {scheduler.num_steps}; "
                f"stage {plan.stage} starts at step {plan.first_step}"
            )
        report.info(f"{plan.stage}: initialised from {args.init_from}")
    if rank == 0:
        work.mkdir(parents=True, exist_ok=True)
        _rewrite_metrics(work / METRICS, plan.first_step + start)

    # always the whole stage's blend: Megatron's sample order depends on the size asked for
    dataset = data.open_mixture(args.data, work / "index_cache")
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()
    tokens_per_step = plan.global_batch_size * plan.seq_length
    report.info(
        f"{plan.stage}: {plan.steps} steps x {tokens_per_step} tokens, world {world} "
        f"(TP {args.tensor_parallel}, EP {args.expert_parallel}, "
        + (f"PP {args.pipeline_parallel}, " if args.pipeline_parallel > 1 else "")
        + (f"CP {args.context_parallel}, " if args.context_parallel > 1 else "")
        + f"DP {dp_size}), optimizer "
        f"{preset.pretrain.optimizer}"
    )
    wall_start = time.perf_counter()
    for stage_step in range(start, plan.steps):
        batch = _batch(dataset, plan, stage_step, dp_rank, dp_size)
        stage_lr = plan.lr_at(stage_step)
        if stage_lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = stage_lr * group.get("lr_mult", 1.0)
        t0 = time.perf_counter()
        result = training.train_step(
            model,
            optimizer,
            scheduler,
            batch,
            grad_clip=preset.pretrain.grad_clip,
            micro_batch_size=preset.compute.micro_batch_size,  # read only with pipeline parallelism
        )
        seconds = time.perf_counter() - t0
        row = {
            "stage": plan.stage,
            "step": plan.first_step + stage_step + 1,
            "stage_step": stage_step + 1,
            **asdict(result),
            "tokens_per_s": tokens_per_step / seconds,
            "step_seconds": seconds,
        }
        if rank == 0:
            with open(work / METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
        if (stage_step + 1) % preset.pretrain.log_every_steps == 0 or stage_step + 1 == plan.steps:
            report.info(
                f"{plan.stage} step {stage_step + 1}/{plan.steps}: loss {result.lm_loss:.4f} "
                f"mtp {result.mtp_loss:.4f} aux {result.seq_aux_loss:.2e} lr {result.lr:.2e} "
                f"grad {result.grad_norm:.3f} imbalance {result.expert_load_imbalance:.2f} "
                f"{row['tokens_per_s']:.0f} tok/s"
            )
        done = stage_step + 1
        if done % plan.checkpoint_every_steps == 0 and done < plan.steps:
            position = {"stage": plan.stage, "stage_step": done, "consumed_samples": done * plan.global_batch_size}
            save_periodic(work, done, model, optimizer, scheduler, position, preset.pretrain.keep_checkpoints)
            report.info(f"{plan.stage}: checkpoint at stage step {done}")
    train_seconds = time.perf_counter() - wall_start

    position = {"stage": plan.stage, "stage_step": plan.steps, "consumed_samples": plan.num_samples}
    checkpoint.save(output / "checkpoint", model, optimizer, scheduler, data_position=position)
    torch.distributed.barrier()
    summary: dict[str, Any] = {}
    if rank == 0:
        summary = finish_outputs(output, work, plan, manifest, train_seconds, resumed_from, world, args)
        if args.niah_cases is not None:
            summary["niah_accuracy"] = run_niah(model, args, manifest, output, report)
            (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_niah(model, args: argparse.Namespace, manifest: data.MixtureManifest, output: Path, report: Reporter) -> float:
    """Greedy NIAH over the cases the asset prepared; every answer goes to ``niah.json`` (the asset gates)."""
    from tokenizers import Tokenizer

    from evaluation import niah
    from model.inference import generate_batch

    tok = Tokenizer.from_file(str(args.tokenizer))
    cases = [niah.NiahCase(**c) for c in json.loads(Path(args.niah_cases).read_text())]

    def generate_many(prompts: list[list[int]]) -> list[str]:
        answers = generate_batch(model, prompts, niah.MAX_NEW_TOKENS, vocab_size=manifest.vocab_size)
        return [tok.decode(ids) for ids in answers]

    def progress(done: int, total: int, result) -> None:
        if done % max(1, total // 5) == 0 or done == total:
            report.info(f"NIAH {done}/{total} cases")

    results = niah.evaluate_batched(cases, generate_many, NIAH_BATCH_TOKENS, progress=progress)
    (output / "niah.json").write_text(json.dumps([dataclasses.asdict(r) for r in results.cases], indent=2))
    report.info(f"NIAH exact match {results.accuracy:.1%} over {len(cases)} cases")
    return results.accuracy


def finish_outputs(
    output: Path,
    work: Path,
    plan: StagePlan,
    manifest: data.MixtureManifest,
    train_seconds: float,
    resumed_from: str | None,
    world: int,
    args: argparse.Namespace,
) -> dict:
    from model.plots import loss_curve_png

    rows = [json.loads(line) for line in (work / METRICS).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["stage"] == plan.stage]
    shutil.copyfile(work / METRICS, output / METRICS)
    loss_curve_png(
        [r["step"] for r in rows],
        [r["lm_loss"] for r in rows],
        output / "loss_curve.png",
        title=f"{plan.stage} LM loss",
    )
    tail = rows[-max(1, len(rows) // 10) :]
    head = rows[: max(1, len(rows) // 10)]
    summary = {
        "stage": plan.stage,
        "steps": plan.steps,
        "first_step": plan.first_step,
        "tokens": plan.tokens,
        "seq_length": plan.seq_length,
        "global_batch_size": plan.global_batch_size,
        "world_size": world,
        "tensor_parallel": args.tensor_parallel,
        "expert_parallel": args.expert_parallel,
        **({"pipeline_parallel": args.pipeline_parallel} if args.pipeline_parallel > 1 else {}),
        **({"context_parallel": args.context_parallel} if args.context_parallel > 1 else {}),
        "loss_first": round(sum(r["lm_loss"] for r in head) / len(head), 4),
        "loss_final": round(sum(r["lm_loss"] for r in tail) / len(tail), 4),
        "mtp_loss_final": round(tail[-1]["mtp_loss"], 4),
        "lr_final": tail[-1]["lr"],
        "expert_load_imbalance_final": round(tail[-1]["expert_load_imbalance"], 3),
        "tokens_per_s": round(sum(r["tokens_per_s"] for r in rows) / len(rows), 1),
        "train_seconds_this_run": round(train_seconds, 2),
        "resumed_from": resumed_from,
        "mixture_sources": [s.name for s in manifest.sources if s.weight > 0],
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--overrides", default="{}", help="JSON object of dotted preset overrides")
    ap.add_argument("--stage", required=True)
    ap.add_argument("--data", required=True, type=Path, help="a tokenized mixture folder")
    ap.add_argument("--work-dir", required=True, type=Path, help="periodic checkpoints and metrics (resume)")
    ap.add_argument("--output", required=True, type=Path, help="empty folder for the final artifact")
    ap.add_argument("--init-from", type=Path, default=None, help="the previous stage's checkpoint folder")
    ap.add_argument("--tensor-parallel", type=int, default=None)
    ap.add_argument("--expert-parallel", type=int, default=None)
    ap.add_argument("--pipeline-parallel", type=int, default=None, help="pipeline stages (compute.pipeline_parallel)")
    ap.add_argument("--context-parallel", type=int, default=1)
    ap.add_argument("--niah-cases", type=Path, default=None, help="NIAH cases (JSON) to answer after training")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json (decodes NIAH answers)")
    ap.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps of the stage (parity checks, benchmarks); the output is "
        "then a mid-stage checkpoint",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from model.launch_guard import die_with_parent

    args = parse_args(argv)
    die_with_parent()  # torchrun (our parent) gone -> SIGTERM: a worker never trains on as an orphan
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    with open_reporter(rank) as report:
        try:
            preset = get_preset(args.preset, json.loads(args.overrides))
            args.tensor_parallel = args.tensor_parallel or 1
            args.expert_parallel = args.expert_parallel or 1
            args.pipeline_parallel = args.pipeline_parallel or 1
            plan = stage_plan(preset, args.stage)
            if args.max_steps is not None:
                if not 0 < args.max_steps <= plan.steps:
                    raise TrainingSetupError(f"--max-steps must be within 1..{plan.steps}")
                plan = dataclasses.replace(plan, steps=args.max_steps)
            manifest = data.read_manifest(args.data)
            if args.niah_cases is not None and (args.tokenizer is None or not args.niah_cases.exists()):
                raise TrainingSetupError("--niah-cases needs an existing cases file and --tokenizer")
            validate_inputs(
                preset,
                plan,
                manifest,
                output=args.output,
                init_from=args.init_from,
                world_size=world,
                tensor_parallel=args.tensor_parallel,
                expert_parallel=args.expert_parallel,
                context_parallel=args.context_parallel,
                pipeline_parallel=args.pipeline_parallel,
                niah=args.niah_cases is not None,
            )
            summary = run_stage(args, preset, plan, report)
        except (
            TrainingSetupError,
            PresetError,
            data.DataError,
            checkpoint.CheckpointError,
            training.OptimizerUnavailableError,
            json.JSONDecodeError,
        ) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            if report.pipes is not None:
                raise
            return 2
        if rank == 0:
            metadata = {k: v for k, v in summary.items() if v is not None and not isinstance(v, list)}
            metadata["mixture_sources"] = ", ".join(summary["mixture_sources"])
            report.materialization(metadata, report.extras.get("artifact_version"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
