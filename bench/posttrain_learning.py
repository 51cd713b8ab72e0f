"""Does the tiny post-training learn? AGAPO's held-out pass@1 over SFT, and what GROUPER does to the rubric.
``python -m bench.posttrain_learning``  (a measurement, not a test, after a ``make demo``; on 2 cores about
1.5 minutes per seed, plus 1 minute for ``--retrain-sft`` and 1 for ``--niah``, per kernel configuration)

From a finished chain (``--home``, default ``.kexaone``: its ``sft_checkpoint``, ``sft_data``,
``context_ext_stage2``, ``rl_prompts`` and tokenizer, the latest of each in the warehouse's ``artifacts``
table), for every kernel configuration (``bench.niah_margin.CONFIGS``: other CPUs' float kernels) a child
process with that environment:

0. with ``--retrain-sft``, retrains SFT (``model.train --stage sft`` from ``context_ext_stage2`` on the chain's
   ``sft_data``) under the configuration, so that the whole post-training chain runs on its kernels;
1. for every seed, runs ``posttrain.policy_train --algorithm agapo`` from the SFT checkpoint with
   ``pretrain.seed`` = seed (the prompts each round, the rollouts' generators: everything random in the
   stage), then ``--algorithm grouper`` from that RL checkpoint, with the preset's other settings unchanged
   (tiny: 30 AGAPO rounds x 8 prompts x G=8; 10 GROUPER rounds x 4 x G=4);
2. scores SFT, RL and preference checkpoints on **every** held-out prompt of ``rl_prompts`` (never trained
   on), in the RL stage's mode (tiny: non-reasoning), ``--k`` samples each with the report's decoding
   (temperature 1.0, top-p 0.95), sample seeds drawn from the seed: pass@1 averaged over k per domain, and
   the offline judge's mean rubric score (``posttrain.rubric``, scaled to [0, 1]);
3. with ``--niah``, answers the stage-2 NIAH grid (the gate's cases) with the first seed's final checkpoint:
   does long context survive post-training on these kernels?

The report: per configuration and seed the three checkpoints side by side, then mean, spread (sample
standard deviation) and **minimum** over all runs of the gains RL - SFT (pass@1) and preference - RL
(rubric score). Writes ``docs/benchmarks.md`` (section ``posttrain_learning``) and
``<work>/posttrain_learning.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = ("sft", "rl", "preference")


def latest(home: Path, asset: str) -> Path:
    """The newest artifact folder of ``asset`` recorded in the home's warehouse."""
    from resources.warehouse import Warehouse

    rows = Warehouse(path=str(home / "warehouse.duckdb")).query(
        "select uri from artifacts where asset = ? order by created_at desc limit 1", [asset]
    )
    if not rows or not Path(rows[0]["uri"]).is_dir():
        raise SystemExit(f"error: no {asset} artifact in {home} (run `make demo` first, or pass --home)")
    return Path(rows[0]["uri"])


# -- child: one configuration and seed ---------------------------------------------------------------------


def policy_stage(algorithm: str, seed: int, init: Path, inputs: dict, out: Path, log) -> Path:
    """``python -m posttrain.policy_train`` as the trainer runs it; returns the new checkpoint folder."""
    from posttrain.launch import cli_args

    args = cli_args(
        preset="tiny",
        overrides={"pretrain.seed": seed},
        algorithm=algorithm,
        prompts=inputs["prompts"],
        tokenizer=inputs["tokenizer"],
        init_from=init,
        work_dir=out / f"{algorithm}-work",
        output=out / algorithm,
    )
    command = [sys.executable, "-m", "posttrain.policy_train", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{algorithm} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    log(f"{algorithm} seed {seed}: {time.perf_counter() - t0:.0f} s")
    return out / algorithm / "checkpoint"


def retrain_sft(inputs: dict, out: Path, log) -> Path:
    """``model.train --stage sft`` from context_ext_stage2 on the chain's sft_data, in this environment."""
    command = [sys.executable, "-m", "model.train", "--preset", "tiny", "--stage", "sft", "--data",
               str(inputs["sft_data"]), "--init-from", str(inputs["context"] / "checkpoint"), "--work-dir",
               str(out / "sft-work"), "--output", str(out / "sft")]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"sft failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    log(f"sft: {time.perf_counter() - t0:.0f} s")
    return out / "sft" / "checkpoint"


def niah_after(model, preset, tok, context_folder: Path) -> dict:
    """The stage-2 NIAH grid (the gate's seed, as post_training_eval draws it) answered greedily."""
    from assets.context import previous_length
    from bench.niah_margin import _held_out_filler
    from evaluation import niah
    from model.inference import generate_batch
    from model.stages import NIAH_BATCH_TOKENS

    provenance = json.loads((context_folder / "provenance.json").read_text()) | {
        "_root": str(context_folder.parents[1])
    }
    cases = niah.stage_cases(
        lambda t: tok.encode(t).ids,
        _held_out_filler(preset, provenance),
        seq_length=preset.context.stages["stage2"].seq_length,
        previous_length=previous_length(preset, "stage2"),
        num_lengths=preset.eval.niah_num_lengths,
        num_depths=preset.eval.niah_num_depths,
        trials=preset.eval.niah_trials,
        seed=preset.pretrain.seed,
    )
    vocab = tok.get_vocab_size(with_added_tokens=True)
    results = niah.evaluate_batched(
        cases,
        lambda prompts: [tok.decode(a) for a in generate_batch(model, prompts, niah.MAX_NEW_TOKENS, vocab_size=vocab)],
        NIAH_BATCH_TOKENS,
    )
    worst = min(results.cells, key=lambda c: c.accuracy)
    return {"accuracy": results.accuracy, "min_cell": worst.accuracy, "worst": worst.describe(), "cases": len(cases)}


def run_config(inputs: dict, seeds: list[int], k: int, out: Path, sft: bool, with_niah: bool) -> list[dict]:
    """Every seed under this process's kernel configuration (SFT retrained first when ``sft``)."""
    import torch
    from tokenizers import Tokenizer

    from config import get_preset
    from evaluation import posttrain_eval as pe
    from model import checkpoint
    from model.architecture import build_model
    from posttrain import chat, verifiers

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    sft_ckpt = retrain_sft(inputs, out, log) if sft else inputs["sft"]
    tok = Tokenizer.from_file(str(inputs["tokenizer"]))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    records = pe.held_out([json.loads(x) for x in Path(inputs["prompts"]).read_text().splitlines() if x], 10**9)
    results = []
    for seed in seeds:
        preset = get_preset("tiny", {"pretrain.seed": seed})
        rl = preset.posttrain.rl
        rl_ckpt = policy_stage("agapo", seed, sft_ckpt, inputs, out / f"seed{seed}", log)
        pref_ckpt = policy_stage("grouper", seed, rl_ckpt, inputs, out / f"seed{seed}", log)
        model = build_model(preset, vocab_size=vocab)
        rows = []
        with torch.no_grad():
            for name, folder in zip(CHECKPOINTS, (sft_ckpt, rl_ckpt, pref_ckpt)):
                checkpoint.load_model(folder, model)
                t0 = time.perf_counter()
                rows += [
                    r.row()
                    for r in pe.evaluate_model(
                        model,
                        name,
                        records,
                        tokenizer=tok,
                        eos_token_id=tok.token_to_id(chat.EOS),
                        vocab_size=vocab,
                        max_new_tokens=rl.max_response_tokens,
                        temperature=rl.temperature,
                        top_p=rl.top_p,
                        k=k,
                        seed=seed * 7919,
                        judge=verifiers.OfflineJudge(),
                        rubric_dimensions=preset.posttrain.rubric,
                        modes=(rl.reasoning,),
                    )
                ]
                log(f"eval {name} seed {seed}: {len(records)} held-out prompts x {k}, {time.perf_counter() - t0:.0f} s")
            niah = None
            if with_niah and seed == seeds[0]:  # the final checkpoint of the first seed (model holds it)
                t0 = time.perf_counter()
                niah = niah_after(model, get_preset("tiny"), tok, inputs["context"])
                log(f"niah after post-training: {niah} in {time.perf_counter() - t0:.0f} s")
        summaries = {
            a: json.loads((out / f"seed{seed}" / a / "summary.json").read_text()) for a in ("agapo", "grouper")
        }
        results.append({"seed": seed, "rows": rows, "summaries": summaries, "niah": niah, "sft_retrained": sft})
    return results


# -- parent: every configuration and seed, the report ------------------------------------------------------


def pooled(rows: list[dict], checkpoint: str, field: str) -> float:
    """Over every held-out domain: the sample-weighted mean of ``field``."""
    mine = [r for r in rows if r["checkpoint"] == checkpoint]
    return sum(r[field] * r["samples"] for r in mine) / sum(r["samples"] for r in mine)


def report(results: list[dict], k: int) -> str:
    from bench.report import markdown_table

    main = "math"  # the tiny preset's learnable family (arithmetic) lives in the math domain
    others = sorted({r["domain"] for res in results for r in res["rows"]} - {main})
    table, gains_pass, gains_rubric = [], [], []
    filtered = [res["summaries"]["grouper"]["share_filtered_mean"] for res in results]
    for res in results:
        rows = res["rows"]
        by = {(r["checkpoint"], r["domain"]): r for r in rows}
        rub = {c: pooled(rows, c, "rubric_score") for c in CHECKPOINTS}
        table.append(
            [
                res["config"],
                res["seed"],
                *(f"{by[(c, main)]['pass_at_1']:.1%}" for c in CHECKPOINTS),
                *(f"{rub[c]:.3f}" for c in CHECKPOINTS),
                f"{res['summaries']['agapo']['share_filtered_mean']:.2f}",
                f"{res['summaries']['grouper']['share_filtered_mean']:.2f}",
                "-" if not res.get("niah") else f"{res['niah']['accuracy']:.1%} / {res['niah']['min_cell']:.0%}",
            ]
        )
        gains_pass.append(by[("rl", main)]["pass_at_1"] - by[("sft", main)]["pass_at_1"])
        gains_rubric.append(rub["preference"] - rub["rl"])
    columns = ["config", "seed", "math SFT", "math RL", "math pref", "rubric SFT", "rubric RL", "rubric pref"]
    columns += ["AGAPO groups filtered", "GROUPER groups filtered", "NIAH after (mean / worst cell)"]
    prompts = {r["domain"]: r["prompts"] for r in results[0]["rows"] if r["checkpoint"] == "sft"}
    best_other = {d: max(r["pass_at_1"] for res in results for r in res["rows"] if r["domain"] == d) for d in others}

    configs = list(dict.fromkeys(res["config"] for res in results))
    per_seed = {}
    for res in results:
        per_seed.setdefault(res["seed"], []).append(json.dumps([res["rows"], res.get("niah")], sort_keys=True))
    same = len(configs) > 1 and all(len(set(v)) == 1 for v in per_seed.values())
    if same:  # repeated runs are not more evidence: count each seed once
        gains_pass = gains_pass[: len(per_seed)]
        gains_rubric = gains_rubric[: len(per_seed)]

    def stats(xs: list[float], pct: bool) -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        f = (lambda v: f"{v * 100:+.1f} pt") if pct else (lambda v: f"{v:+.3f}")
        runs = f"{len(xs)} seeds (each the same in every configuration)" if same else f"{len(xs)} runs"
        return f"mean {f(statistics.mean(xs))}, sd {f(sd)[1:]}, minimum {f(min(xs))} over {runs}"

    identical = (
        f"Every configuration gives identical rows: {', '.join(configs)} change the floats of training (the loss "
        "curves differ in the 7th digit) but, in these runs, no sampled token and no greedy NIAH answer.\n\n"
        if same
        else ""
    )
    return (
        f"Held-out prompts per domain: {prompts} (all of rl_prompts' held-out split, never trained on), k = {k} "
        "samples each, temperature 1.0, top-p 0.95, in the RL stage's mode (tiny: non-reasoning). pass@1 averaged "
        "over k; rubric: the offline judge's mean over `posttrain.rubric`, in [0, 1], pooled over domains; "
        "groups filtered: the mean share of zero-variance groups (no update from them); NIAH after: the final "
        "(preference) checkpoint of the first seed on the stage-2 grid, greedy, as `niah_survives_post_training` "
        "scores it (gate: every cell >= 95 %).\n\n"
        + markdown_table(columns, table)
        + "\n\n"
        + identical
        + f"**AGAPO over SFT, held-out math pass@1**: {stats(gains_pass, True)}.\n\n"
        f"**GROUPER over RL, rubric score**: {stats(gains_rubric, False)} (GROUPER learns only from groups whose "
        f"scores differ; {statistics.mean(filtered):.0%} of its groups scored all-equal).\n\n"
        f"Other domains, best pass@1 of any checkpoint in any run: "
        + ", ".join(f"{d} {v:.1%}" for d, v in best_other.items())
        + " (the tiny model does not learn them).\n"
    )


def main(argv: list[str] | None = None) -> int:
    from bench.niah_margin import CONFIGS

    ap = argparse.ArgumentParser(prog="python -m bench.posttrain_learning", description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=REPO / ".kexaone", help="a finished chain's KEXAONE_HOME")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=["default"], choices=sorted(CONFIGS))
    ap.add_argument("--k", type=int, default=8, help="samples per held-out prompt")
    ap.add_argument("--retrain-sft", action="store_true", help="retrain SFT under each configuration first")
    ap.add_argument("--niah", action="store_true", help="stage-2 NIAH of the first seed's final checkpoint")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="print the report, leave docs/benchmarks.md alone")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one configuration, in the environment the parent set
        inputs = {k: Path(v) for k, v in json.loads(args.child).items()}
        print(json.dumps(run_config(inputs, args.seeds, args.k, Path(args.work), args.retrain_sft, args.niah)))
        return 0
    home = args.home.resolve()
    inputs = {
        "sft": latest(home, "sft_checkpoint") / "checkpoint",
        "sft_data": latest(home, "sft_data"),
        "context": latest(home, "context_ext_stage2"),
        "prompts": latest(home, "rl_prompts") / "prompts.jsonl",
        "tokenizer": latest(home, "superbpe_tokenizer") / "tokenizer.json",
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="posttrain-learning-"))
    results = []
    for config in args.configs:
        out = work / config
        out.mkdir(parents=True, exist_ok=False)
        command = [sys.executable, "-m", "bench.posttrain_learning", "--child", json.dumps(
            {k: str(v) for k, v in inputs.items()}
        ), "--seeds", *map(str, args.seeds), "--k", str(args.k), "--work", str(out),
            *(["--retrain-sft"] if args.retrain_sft else []), *(["--niah"] if args.niah else [])]  # fmt: skip
        print(f"[{config}] {' '.join(f'{k}={v}' for k, v in CONFIGS[config].items())}", flush=True)
        proc = subprocess.run(
            command, cwd=REPO, env={**os.environ, **CONFIGS[config]}, stdout=subprocess.PIPE, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"error: configuration {config} failed (exit {proc.returncode})")
        results += [{"config": config, **r} for r in json.loads(proc.stdout.strip().splitlines()[-1])]
        (work / "posttrain_learning.json").write_text(json.dumps(results, indent=2))
    flags = [*(["--configs", *args.configs] if args.configs != ["default"] else []), "--seeds", *map(str, args.seeds)]
    flags += [*(["--retrain-sft"] if args.retrain_sft else []), *(["--niah"] if args.niah else [])]
    command = "python -m bench.posttrain_learning " + shlex.join(flags)
    body = report(results, args.k)
    if args.no_write:
        print(body)
    else:
        from bench.report import write_section

        title = "Post-training learns: AGAPO pass@1 and GROUPER rubric (tiny)"
        write_section("posttrain_learning", title, command, body)
    print(f"raw results: {work / 'posttrain_learning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
