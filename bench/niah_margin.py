"""Does the tiny chain pass its NIAH gates with margin on other float kernels and other grids?
``python -m bench.niah_margin``  (a measurement, not a test; about 10 minutes per configuration on 2 cores)

Different CPUs run different float kernels (MKL / oneDNN / ATen dispatch), so the tiny model trains to a
slightly different place on each. One machine can stand in for several: each *kernel configuration*
below changes which kernels run, and so the floats, the way another CPU would:

* ``default``: what this machine picks (AVX-512 where it has it), torch threads = cores;
* ``avx2``: ``ATEN_CPU_CAPABILITY=avx2`` (ATen's vectorised kernels) + ``MKL_ENABLE_INSTRUCTIONS=AVX2``
  (MKL's GEMMs), what an AMD EPYC without AVX-512 runs;
* ``scalar-1t``: ``ATEN_CPU_CAPABILITY=default`` (no vector ISA in ATen) + ``MKL_ENABLE_INSTRUCTIONS=SSE4_2``
  + ``OMP_NUM_THREADS=1`` (one thread: other reduction orders).

For each configuration the whole tiny DAG runs in a fresh home (``kexaone demo``'s job, in a child process
with that environment, so the trainer subprocesses inherit it). Then both context checkpoints are scored on
the NIAH grid drawn with several seeds: the gate's own seed (its answers are read from the artifact's
``niah.json``) and fresh ones (new keys, values and filler; the checkpoint is loaded and answers greedily
under the same environment). The report is each cell's **minimum** over configurations and seeds.

``--adopt CONFIG=HOME`` takes a chain already run under that configuration (e.g. a fresh clone's
``make demo``) and only rescores it. ``--reuse-from HOME`` copies the data artifacts of an earlier run
(corpus, tokenizer, synthetic data: integer work, the same under every configuration) into every fresh
home; ``--reuse-pretraining`` also its pre-training checkpoints (a quicker check of a context-stage
change, no longer a test of the whole chain under each configuration).
``--overrides JSON`` applies preset overrides to the chain (tuning).

Writes ``docs/benchmarks.md`` (section ``niah_margin``) and ``<work>/niah_margin.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "scalar-1t": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "1"},
}
CONTEXT_STAGES = ("stage1", "stage2")
# what --reuse-from leaves out: everything trained (pre-training too, unless --reuse-pretraining)
CONTEXT_ON = ("context_", "niah_report_", "short_context_eval", "evaluation_summary")
PRETRAINING = ("pretrain_",)


# -- child: the chain ---------------------------------------------------------------------------------------


def run_chain(overrides: dict) -> int:
    """The demo job in this process (its trainers inherit this process's environment)."""
    from dagster import DagsterInstance

    from kexaone_dag.definitions import build_definitions

    defs = build_definitions()
    run_config = {"resources": {"preset": {"config": {"overrides": overrides}}}} if overrides else {}
    with DagsterInstance.ephemeral() as instance:
        for job in ("observe_raw_corpus", "demo"):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, raise_on_error=False, run_config=run_config if job == "demo" else {}
            )
        gates = {
            e.asset_key.to_user_string(): e.passed
            for e in result.get_asset_check_evaluations()
            if e.check_name == "niah_green_light"
        }
    print(json.dumps({"success": result.success, "gates": gates}))
    return 0


# -- child: scoring a checkpoint on more grid seeds ---------------------------------------------------------


def _held_out_filler(preset, provenance: dict) -> dict[str, list[str]]:
    """The gate's filler: held-out documents of the deduplicated_corpus versions the stage was built from."""
    from assets.context import niah_filler
    from corpus.pipeline import DOCUMENTS_DIR
    from corpus.sources import SourceFile, file_format, filesystem, iter_documents
    from tokenizer.recipe import is_held_out

    artifacts = Path(provenance["_root"])
    fs, _ = filesystem(str(artifacts))
    texts = {}
    for domain in preset.data.domains:
        version = provenance["upstream"][f"niah_filler_{domain}"]["version"]
        folder = artifacts / f"deduplicated_corpus__{domain}" / version / DOCUMENTS_DIR
        texts[domain] = []
        for path in sorted(str(p) for p in folder.rglob("*") if p.is_file()):
            fmt = file_format(path)
            if fmt is None:
                continue
            file = SourceFile(
                path=path, relpath=path[len(str(folder)) :].lstrip("/"), size=0, fingerprint="", format=fmt
            )
            texts[domain] += [
                d.text for d in iter_documents(fs, file) if is_held_out(d.id, preset.tokenizer.held_out_fraction)
            ]
    return niah_filler(preset, texts)


def rescore(artifacts: Path, overrides: dict, seeds: list[int]) -> int:
    """Per stage and seed: every case's result (the gate seed from niah.json, the others answered anew)."""
    from dataclasses import asdict

    from tokenizers import Tokenizer

    from assets.context import previous_length
    from config import get_preset
    from evaluation import niah
    from model import checkpoint
    from model.architecture import build_model
    from model.inference import generate_batch
    from model.stages import NIAH_BATCH_TOKENS

    preset = get_preset("tiny", overrides)
    out: dict = {}
    for stage in CONTEXT_STAGES:
        folders = sorted(
            (artifacts / f"context_ext_{stage}").glob("*/provenance.json"), key=lambda f: f.stat().st_mtime
        )
        if not folders:
            out[stage] = None  # not trained: the previous gate blocked it
            continue
        folder = folders[-1].parent
        provenance = json.loads(folders[-1].read_text()) | {"_root": str(artifacts)}
        tok_dir = artifacts / "superbpe_tokenizer" / provenance["upstream"]["tokenizer"]["version"]
        tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        filler = niah.FillerPool(lambda t: tok.encode(t).ids, _held_out_filler(preset, provenance))
        cs = preset.context.stages[stage]
        model = None
        out[stage] = {}
        for seed in seeds:
            if seed == preset.pretrain.seed:
                rows = json.loads((folder / "niah.json").read_text())
            else:
                if model is None:
                    model = build_model(preset, vocab_size=tok.get_vocab_size(with_added_tokens=True))
                    checkpoint.load_model(folder / "checkpoint", model)
                cases = niah.stage_cases(
                    lambda t: tok.encode(t).ids,
                    filler,
                    seq_length=cs.seq_length,
                    previous_length=previous_length(preset, stage),
                    num_lengths=preset.eval.niah_num_lengths,
                    num_depths=preset.eval.niah_num_depths,
                    trials=preset.eval.niah_trials,
                    seed=seed,
                )
                vocab = tok.get_vocab_size(with_added_tokens=True)

                def generate_many(prompts: list[list[int]]) -> list[str]:
                    answers = generate_batch(model, prompts, niah.MAX_NEW_TOKENS, vocab_size=vocab)
                    return [tok.decode(ids) for ids in answers]

                results = niah.evaluate_batched(cases, generate_many, NIAH_BATCH_TOKENS)
                rows = [asdict(r) for r in results.cases]
            out[stage][str(seed)] = rows
    print(json.dumps(out))
    return 0


# -- parent ---------------------------------------------------------------------------------------------------


def _child(args: list[str], env: dict[str, str], log: Path) -> dict:
    with open(log, "a") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.niah_margin", *args],
            cwd=REPO,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=f,
        )
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed ({proc.returncode}); see {log}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _seed_home(home: Path, reuse_from: Path, with_pretraining: bool) -> None:
    src = reuse_from / "artifacts"
    skip = CONTEXT_ON if with_pretraining else CONTEXT_ON + PRETRAINING
    for folder in src.iterdir():
        if folder.name.startswith(".") or folder.name.startswith(skip):
            continue
        shutil.copytree(folder, home / "artifacts" / folder.name)


def _cells(rows: list[dict]) -> dict[tuple[int, float], tuple[int, int]]:
    from evaluation import niah

    results = niah.results_from_cases(niah.CaseResult(**r) for r in rows)
    return {(c.length, c.depth): (c.correct, c.trials) for c in results.cells}


def report(results: dict, seeds: list[int], threshold: float, command: str, seconds: float, work: Path) -> str:
    from bench.report import markdown_table

    lines = []
    summary_rows = []
    for config, per_stage in results.items():
        for stage in CONTEXT_STAGES:
            if per_stage.get(stage) is None:
                summary_rows.append([config, stage, "blocked by the stage-1 gate", "-", "-", "-"])
                continue
            for seed in seeds:
                cells = _cells(per_stage[stage][str(seed)])
                correct = sum(c for c, _ in cells.values())
                total = sum(t for _, t in cells.values())
                worst = min(cells.items(), key=lambda kv: kv[1][0] / kv[1][1])
                summary_rows.append(
                    [
                        config,
                        stage,
                        seed,
                        f"{correct}/{total}",
                        f"{worst[1][0]}/{worst[1][1]}",
                        f"length {worst[0][0]} depth {worst[0][1]:.2f}",
                    ]
                )
    lines.append(
        markdown_table(["configuration", "stage", "grid seed", "correct", "worst cell", "where"], summary_rows)
    )
    for stage in CONTEXT_STAGES:
        minimum: dict[tuple[int, float], float] = {}
        for per_stage in results.values():
            for seed in seeds:
                if per_stage.get(stage) is None:
                    continue
                for key, (c, t) in _cells(per_stage[stage][str(seed)]).items():
                    minimum[key] = min(minimum.get(key, 1.0), c / t)
        if not minimum:
            continue
        lengths = sorted({k[0] for k in minimum})
        depths = sorted({k[1] for k in minimum})
        below = sum(1 for v in minimum.values() if v < threshold)
        lines.append(
            f"\n`context_ext_{stage}`: each cell's **minimum** accuracy over {len(results)} configurations "
            f"x {len(seeds)} grid seeds ({below} cell(s) below the gate's {threshold:.0%}):\n"
        )
        lines.append(
            markdown_table(
                ["depth \\ length", *map(str, lengths)],
                [[f"{d:.2f}", *(f"{minimum[(n, d)]:.0%}" for n in lengths)] for d in depths],
            )
        )
    configs = "; ".join(
        f"`{name}`: {' '.join(f'{k}={v}' for k, v in CONFIGS[name].items()) or 'no override'}" for name in results
    )
    lines.append(
        f"\nConfigurations tried: {configs}. Grid seeds {', '.join(map(str, seeds))} (the gate draws with "
        f"the preset's seed). Total bench time {seconds / 60:.0f} min; raw answers in `{work}/niah_margin.json`."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.niah_margin", description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma-separated NIAH grid seeds (default: the gate's own, pretrain.seed, then 1 and 2)",
    )
    ap.add_argument("--overrides", default="{}", help="JSON preset overrides for the tiny chain")
    ap.add_argument(
        "--reuse-from",
        type=Path,
        default=None,
        help="a KEXAONE_HOME whose data artifacts (corpus, tokenizer, synthetic data: no floats "
        "trained) every configuration starts from",
    )
    ap.add_argument(
        "--reuse-pretraining",
        action="store_true",
        help="with --reuse-from, also its pre-training checkpoints (tuning a context stage only)",
    )
    ap.add_argument(
        "--work", type=Path, default=None, help="where the per-configuration homes go (default: a temp dir)"
    )
    ap.add_argument(
        "--adopt",
        action="append",
        default=[],
        metavar="CONFIG=HOME",
        help="use the chain already run in HOME (a KEXAONE_HOME, e.g. `make demo`'s .kexaone) under "
        "CONFIG's environment instead of running it again; only the rescoring runs",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--run-chain", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rescore", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    overrides = json.loads(args.overrides)
    if args.seeds is None:
        from config import get_preset as _preset

        args.seeds = f"{_preset('tiny', overrides).pretrain.seed},1,2"
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.run_chain:
        return run_chain(overrides)
    if args.rescore:
        return rescore(args.rescore, overrides, seeds)

    from bench.report import write_section
    from config import get_preset

    names = args.configs.split(",")
    adopted = dict(item.split("=", 1) for item in args.adopt)
    names += [n for n in adopted if n not in names]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown} (known: {', '.join(CONFIGS)})")
    preset = get_preset("tiny", overrides)
    work = args.work or Path(tempfile.mkdtemp(prefix="niah-margin-"))
    started = time.monotonic()
    results: dict = {}
    work.mkdir(parents=True, exist_ok=True)
    for name in names:
        env = {k: v for k, v in os.environ.items() if k not in ("KEXAONE_PRESET", "DAGSTER_HOME")}
        env.update(CONFIGS[name])
        if name in adopted:
            home = Path(adopted[name]).resolve()
            print(f"[{name}] adopting the chain in {home}", flush=True)
        else:
            home = work / name
            if home.exists():
                shutil.rmtree(home)
            (home / "artifacts").mkdir(parents=True)
            if args.reuse_from:
                _seed_home(home, args.reuse_from, args.reuse_pretraining)
            env.update(KEXAONE_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))
            (home / "dagster_home").mkdir()
            t0 = time.monotonic()
            chain = _child(["--run-chain", "--overrides", json.dumps(overrides)], env, home / "chain.log")
            print(f"[{name}] chain {time.monotonic() - t0:.0f}s: {chain}", flush=True)
            if not chain["success"] and all(chain["gates"].values()):  # no gate failed, so something else did
                raise SystemExit(f"[{name}] the chain failed before its NIAH gates; see {home / 'chain.log'}")
        t0 = time.monotonic()
        results[name] = _child(
            ["--rescore", str(home / "artifacts"), "--overrides", json.dumps(overrides), "--seeds", args.seeds],
            env,
            work / f"{name}-rescore.log",
        )
        print(f"[{name}] rescored {time.monotonic() - t0:.0f}s", flush=True)
        (work / "niah_margin.json").write_text(json.dumps(results))
    command = " ".join(["python -m bench.niah_margin", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    body = report(results, seeds, preset.eval.niah_threshold, command, time.monotonic() - started, work)
    if args.no_write:
        print(body)
    else:
        write_section(
            "niah_margin", "NIAH gate margin: the tiny chain over kernel configurations and grid seeds", command, body
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
