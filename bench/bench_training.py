"""Dagster's overhead on a training stage: ``python -m bench.bench_training``  (a measurement, not a test)

The same tiny pre-training stage 1, lengthened so it trains for a few minutes
(``pretrain.total_tokens`` x ``--scale``), run twice side by side in one session:

* bare: ``torchrun -m model.train ...`` launched directly;
* Dagster: ``pretrain_stage1`` materialized through its asset (PipesSubprocessClient -> the same torchrun
  command), timed from ``materialize()`` call to return: artifact versioning, Pipes set-up and message
  streaming, the commit into the artifact store and the warehouse writes included.

Both read the same tokenized mixture (materialized first, not timed). Reported: wall time, training
tokens/s (from the stage's own summary), and Dagster's share of the wall time.
Writes docs/benchmarks.md (section ``training``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import markdown_table, write_section

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=8, help="pretrain.total_tokens multiplier (8: ~512 steps/stage)")
    args = ap.parse_args()
    from dagster import AssetKey, DagsterInstance, materialize

    from config import get_preset
    from kexaone_dag.config import PresetResource

    overrides = {"pretrain.total_tokens": get_preset("tiny").pretrain.total_tokens * args.scale}
    with tempfile.TemporaryDirectory(prefix="kexaone-bench-training-") as tmp:
        os.environ["KEXAONE_HOME"] = str(Path(tmp) / "home")
        from kexaone_dag.definitions import build_definitions

        defs = build_definitions()
        resources = {**defs.resources, "preset": PresetResource(overrides=overrides)}
        with DagsterInstance.ephemeral() as instance:
            print("materializing the data assets and the stage-1 mixture (not timed) ...", flush=True)
            assert defs.resolve_job_def("data").execute_in_process(instance=instance).success
            mixture = materialize(
                [defs.get_assets_def(AssetKey("tokenized_mixture_stage1"))], instance=instance, resources=resources
            )
            mixture_dir = (
                mixture.asset_materializations_for_node("tokenized_mixture_stage1")[0].metadata["dagster/uri"].value
            )

            print("bare torchrun ...", flush=True)
            t0 = time.perf_counter()
            bare = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    "--nproc-per-node=1",
                    "-m",
                    "model.train",
                    "--preset",
                    "tiny",
                    "--overrides",
                    json.dumps(overrides),
                    "--stage",
                    "stage1",
                    "--data",
                    mixture_dir,
                    "--work-dir",
                    f"{tmp}/bare-work",
                    "--output",
                    f"{tmp}/bare-out",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            bare_wall = time.perf_counter() - t0
            if bare.returncode != 0:
                raise SystemExit(bare.stderr[-3000:])
            bare_summary = json.loads(Path(f"{tmp}/bare-out/summary.json").read_text())

            print("through Dagster (pretrain_stage1 asset) ...", flush=True)
            t0 = time.perf_counter()
            run = materialize(
                [defs.get_assets_def(AssetKey("pretrain_stage1"))], instance=instance, resources=resources
            )
            dagster_wall = time.perf_counter() - t0
            uri = run.asset_materializations_for_node("pretrain_stage1")[0].metadata["dagster/uri"].value
            dagster_summary = json.loads((Path(uri) / "summary.json").read_text())

    steps, tokens = bare_summary["steps"], bare_summary["tokens"]
    overhead = (dagster_wall - bare_wall) / dagster_wall
    rows = [
        ["bare torchrun", steps, tokens, round(bare_wall, 1), bare_summary["tokens_per_s"], "-"],
        [
            "Dagster asset (Pipes)",
            steps,
            tokens,
            round(dagster_wall, 1),
            dagster_summary["tokens_per_s"],
            f"{100 * overhead:+.1f} %",
        ],
    ]
    table = markdown_table(["launch", "steps", "tokens", "wall s", "train tokens/s", "Dagster share of wall"], rows)
    print(table)
    body = (
        f"{table}\n\nTarget: Dagster overhead <= 5 % of the wall time of a run of >= 2 minutes. Tokens/s is the "
        "mean over the stage's steps as the trainer measured them; wall time includes process start-up, "
        "model build, the final checkpoint and, for Dagster, versioning, Pipes, commit and warehouse writes."
    )
    write_section(
        "training",
        "Training launch: Dagster + Pipes vs bare torchrun (tiny preset, CPU)",
        f"python -m bench.bench_training --scale {args.scale}",
        body,
    )


if __name__ == "__main__":
    main()
