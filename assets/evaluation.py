"""[evaluation] group: niah_report_stage{1,2}, short_context_eval, evaluation_summary.

* ``niah_report_stageN``: the NIAH grid that ``context_ext_stageN`` answered (its ``niah.json``) as a
  heatmap PNG (inline in the UI), a table and ``niah_results`` rows. It sits behind the stage's blocking gate.
* ``short_context_eval``: held-out perplexity per language/domain (``tokenizer.held_out_fraction`` of each
  deduplicated_corpus partition, never trained on) at the pre-training length, for every checkpoint of the
  chain; ``short_context_perplexity`` rows, a table and one plot. Check ``short_context_drift`` (WARN) flags a
  context stage whose perplexity rose more than ``eval.short_context_ppl_tolerance`` over pretrain_stage3.
* ``evaluation_summary``: one markdown page with its plots: corpus -> tokenizer -> loss curves -> NIAH ->
  short-context drift -> post-training (``post_training_eval``: held-out pass@1, rubric, NIAH after); it waits
  for post-training, so it is the last asset of the chain.
"""

import dataclasses
import shutil
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    asset,
)

from assets import keys
from assets.context import CONTEXT_STAGES, corpus_texts, niah_grid_table, read_niah
from assets.metadata import table
from assets.tokenizer import eod_and_pad, load_tokenizer
from assets.versioning import BuildResult, ensure_plot, latest_upstream, materialize_versioned
from config import get_preset
from evaluation import niah
from evaluation.perplexity import drift, held_out_windows, perplexity
from evaluation.summary import (
    CHAIN_ORDER,
    CorpusStat,
    DriftSection,
    EvaluationSections,
    LossCurve,
    NiahStage,
    PostTrainingSection,
    TokenizerEfficiency,
    drift_plot_png,
    evaluation_summary_markdown,
)
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from kexaone_dag.executors import training_asset_kwargs
from resources.artifact_store import ArtifactStore
from resources.warehouse import Warehouse

EVALUATION_GROUP = "evaluation"
DRIFT_CHECK = "short_context_drift"
DRIFT_BASELINE = "pretrain_stage3"
WINDOWS_PER_DOMAIN = 16  # held-out windows of pretrain.seq_length tokens per domain (fewer if the data is short)


def niah_report_asset(stage: str) -> AssetsDefinition:
    name = keys.niah_report(stage)
    checkpoint = keys.context_ext(stage)

    @asset(
        name=name,
        group_name=EVALUATION_GROUP,
        code_version="1",
        automation_condition=DOWNSTREAM_OF_DATA,
        deps=[AssetDep(checkpoint)],
        kinds={"duckdb"},
        description=f"NIAH of {checkpoint}: length x depth exact-match heatmap, table, warehouse rows.",
    )
    def _report(
        context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
    ):
        p = preset.get()
        upstream = {"checkpoint": latest_upstream(context, checkpoint)}
        results = read_niah(artifact_store, checkpoint, upstream["checkpoint"].version)

        def build(staging: Path) -> BuildResult:
            niah.heatmap_png(
                results,
                staging / "heatmap.png",
                title=f"{checkpoint} NIAH exact match",
                threshold=p.eval.niah_threshold,
            )
            (staging / "table.md").write_text(niah.markdown_table(results))
            passed, failing = niah.gate(results, p.eval.niah_threshold)
            return BuildResult(
                metadata={
                    "accuracy": round(results.accuracy, 4),
                    "passed": passed,
                    "failing_cells": [c.describe() for c in failing],
                    "lengths": results.lengths,
                    "depths": results.depths,
                },
                tables={"grid": niah_grid_table(results)},
                plots={"heatmap": "heatmap.png"},
            )

        result = materialize_versioned(
            context,
            store=artifact_store,
            warehouse=warehouse,
            preset=p,
            preset_sections=("eval.niah_threshold",),
            upstream=upstream,
            build=build,
        )
        ensure_plot(result, artifact_store, "heatmap", "heatmap.png")  # (artifacts built before plots)
        warehouse.insert(
            "niah_results",
            [
                {
                    "checkpoint": checkpoint,
                    "checkpoint_version": upstream["checkpoint"].version,
                    "length": c.length,
                    "depth": c.depth,
                    "trials": c.trials,
                    "correct": c.correct,
                    "accuracy": c.accuracy,
                }
                for c in results.cells
            ],
            replace_keys=("checkpoint", "checkpoint_version"),
        )
        return result.materialize_result()

    return _report


@asset(
    group_name=EVALUATION_GROUP,
    code_version="1",
    automation_condition=DOWNSTREAM_OF_DATA,
    deps=[AssetDep(c) for c in CHAIN_ORDER] + [AssetDep(keys.DEDUPLICATED_CORPUS), AssetDep(keys.SUPERBPE_TOKENIZER)],
    check_specs=[
        AssetCheckSpec(
            DRIFT_CHECK,
            asset=keys.SHORT_CONTEXT_EVAL,
            description="a context stage's held-out short-context perplexity rose at most "
            "eval.short_context_ppl_tolerance over pretrain_stage3 (warns)",
        )
    ],
    **{k: v for k, v in training_asset_kwargs(get_preset(), launches_trainer=False).items() if k != "kinds"},
    kinds={"pytorch", "duckdb"},
    description="Held-out perplexity per language/domain for every checkpoint of the chain, at the "
    "pre-training length: the rehearsal effect of the context stages, in one table and one plot.",
)
def short_context_eval(
    context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
):
    import torch

    from model import checkpoint as ckpt
    from model.architecture import build_model

    p = preset.get()
    upstream = {c: latest_upstream(context, c) for c in CHAIN_ORDER}
    held_out, corpus_up = corpus_texts(context, artifact_store, p, held_out=True)
    upstream.update({f"held_out_{k}": v for k, v in corpus_up.items()})
    upstream["tokenizer"] = latest_upstream(context, keys.SUPERBPE_TOKENIZER)
    rows: list[dict] = []

    def build(staging: Path) -> BuildResult:
        tok = load_tokenizer(artifact_store, upstream["tokenizer"].version)
        eod, _ = eod_and_pad(tok, p)
        windows = {
            d: held_out_windows(
                [e.ids + [eod] for e in tok.encode_batch(texts)], p.pretrain.seq_length, WINDOWS_PER_DOMAIN
            )
            for d, texts in held_out.items()
            if texts
        }
        model = build_model(p, vocab_size=tok.get_vocab_size(with_added_tokens=True))
        for name in CHAIN_ORDER:
            with artifact_store.local_copy(name, upstream[name].version) as copy:
                ckpt.load_model(copy / "checkpoint", model)
            for domain, w in windows.items():
                if not w:
                    continue
                r = perplexity(model, w, batch_size=8)
                rows.append(
                    {
                        "checkpoint": name,
                        "checkpoint_version": upstream[name].version,
                        "domain": domain,
                        "perplexity": r.perplexity,
                        "tokens": r.tokens,
                    }
                )
            context.log.info(f"short_context_eval: {name} done")
        torch.set_grad_enabled(True)
        drift_plot_png(rows, staging / "perplexity.png")
        (staging / "perplexity.json").write_text(__import__("json").dumps(rows, indent=2))
        return BuildResult(
            metadata={"domains": sorted(windows), "checkpoints": list(CHAIN_ORDER)},
            tables={"perplexity": perplexity_table(rows)},
            plots={"plot": "perplexity.png"},
        )

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("pretrain.seq_length", "tokenizer.held_out_fraction"),
        upstream=upstream,
        build=build,
    )
    if not rows:
        rows = artifact_store.read_json(keys.SHORT_CONTEXT_EVAL, result.ref.version, "perplexity.json")
    ensure_plot(result, artifact_store, "plot", "perplexity.png")  # (artifacts built before plots)
    warehouse.insert(
        "short_context_perplexity",
        [{"eval_version": result.ref.version, **r} for r in rows],
        replace_keys=("eval_version",),
    )
    by = {(r["checkpoint"], r["domain"]): r["perplexity"] for r in rows}
    baseline = {d: v for (c, d), v in by.items() if c == DRIFT_BASELINE}
    flagged = []
    for stage in CONTEXT_STAGES:
        now = {d: v for (c, d), v in by.items() if c == keys.context_ext(stage)}
        flagged += [
            f"{keys.context_ext(stage)} {x.domain}: {x.baseline:.2f} -> {x.now:.2f} (+{x.relative_rise:.1%})"
            for x in drift(baseline, now, p.eval.short_context_ppl_tolerance)
        ]
    check = AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not flagged,
        severity=AssetCheckSeverity.WARN,
        metadata={"tolerance": p.eval.short_context_ppl_tolerance, "flagged": flagged},
    )
    return result.materialize_result(check_results=[check])


def perplexity_table(rows: list[dict]) -> dict:
    """One row per checkpoint (chain order), one held-out perplexity column per domain."""
    domains = sorted({r["domain"] for r in rows})
    by = {(r["checkpoint"], r["domain"]): r["perplexity"] for r in rows}
    return table(
        [
            {"checkpoint": c, **{d: round(by[(c, d)], 2) if (c, d) in by else None for d in domains}}
            for c in CHAIN_ORDER
        ],
        [("checkpoint", "string")] + [(d, "float", f"held-out perplexity on {d} (lower is better)") for d in domains],
    )


def post_training_section(store: ArtifactStore, version: str, p) -> PostTrainingSection:
    """The summary's post-training section from a ``post_training_eval`` artifact."""
    from assets.posttrain import EVAL_CHECKPOINTS, EVAL_FILE

    results = read_niah(store, keys.POST_TRAINING_EVAL, version)
    passed, _ = niah.gate(results, p.eval.niah_threshold)
    return PostTrainingSection(
        rows=store.read_json(keys.POST_TRAINING_EVAL, version, EVAL_FILE),
        checkpoints=EVAL_CHECKPOINTS,
        niah_accuracy=results.accuracy,
        niah_passed=passed,
        threshold=p.eval.niah_threshold,
    )


SUMMARY_DEPS = [
    keys.RAW_CORPUS_STATS,
    keys.DEDUPLICATED_CORPUS,
    keys.TOKENIZER_REPORT,
    "pretrain_stage1",
    "pretrain_stage2",
    "pretrain_stage3",
    "niah_report_stage1",
    "niah_report_stage2",
    keys.SHORT_CONTEXT_EVAL,
    keys.POST_TRAINING_EVAL,
]


@asset(
    group_name=EVALUATION_GROUP,
    code_version="2",
    automation_condition=DOWNSTREAM_OF_DATA,
    deps=[AssetDep(d) for d in SUMMARY_DEPS],
    kinds={"duckdb"},
    description="One markdown report of the whole chain (with its plots): corpus stats -> tokenizer efficiency "
    "-> loss curves -> NIAH heatmaps -> short-context drift -> post-training (held-out pass@1, rubric, long "
    "context after post-training).",
)
def evaluation_summary(
    context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
):
    p = preset.get()
    upstream = {d: latest_upstream(context, d) for d in SUMMARY_DEPS if d != keys.DEDUPLICATED_CORPUS}

    def build(staging: Path) -> BuildResult:
        images = staging / "images"
        images.mkdir()

        def copy(asset_name: str, relpath: str, target: str) -> str:
            with (
                artifact_store.open(asset_name, upstream[asset_name].version, relpath, "rb") as src,
                open(images / target, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
            return f"images/{target}"

        raw = warehouse.query(
            "select source, documents, text_bytes from raw_corpus_stats where stats_version = ?",
            [upstream[keys.RAW_CORPUS_STATS].version],
        )
        dedup = {
            r["partition"]: r
            for r in warehouse.query(
                "select partition, docs_out from corpus_partition_stats where asset = 'deduplicated_corpus'"
            )
        }
        filt = {
            r["partition"]: r
            for r in warehouse.query(
                "select partition, docs_out from corpus_partition_stats where asset = 'filtered_corpus'"
            )
        }
        corpus = [
            CorpusStat(
                source=r["source"],
                documents=r["documents"],
                text_bytes=r["text_bytes"],
                filtered_documents=filt.get(r["source"], {}).get("docs_out"),
                deduplicated_documents=dedup.get(r["source"], {}).get("docs_out"),
            )
            for r in raw
        ]
        tokenizer = [
            TokenizerEfficiency(r["tokenizer"], r["domain"], r["bytes_per_token"])
            for r in warehouse.query(
                "select tokenizer, domain, bytes_per_token from tokenizer_efficiency where report_version = ?",
                [upstream[keys.TOKENIZER_REPORT].version],
            )
        ]
        curves = []
        for name in ("pretrain_stage1", "pretrain_stage2", "pretrain_stage3"):
            summary = artifact_store.read_json(name, upstream[name].version, "summary.json")
            curves.append(
                LossCurve(
                    name,
                    copy(name, "loss_curve.png", f"{name}_loss.png"),
                    final_lm_loss=summary["loss_final"],
                    steps=summary["steps"],
                )
            )
        stages = []
        for stage in CONTEXT_STAGES:
            report = keys.niah_report(stage)
            md = artifact_store.read_provenance(report, upstream[report].version)["build"]["metadata"]
            stages.append(
                NiahStage(
                    keys.context_ext(stage),
                    copy(report, "heatmap.png", f"{report}.png"),
                    accuracy=md["accuracy"],
                    threshold=p.eval.niah_threshold,
                    passed=md["passed"],
                )
            )
        ppl = artifact_store.read_json(
            keys.SHORT_CONTEXT_EVAL, upstream[keys.SHORT_CONTEXT_EVAL].version, "perplexity.json"
        )
        drift_section = DriftSection(
            rows=ppl,
            baseline=DRIFT_BASELINE,
            tolerance=p.eval.short_context_ppl_tolerance,
            image=copy(keys.SHORT_CONTEXT_EVAL, "perplexity.png", "short_context.png"),
        )
        post_training = post_training_section(artifact_store, upstream[keys.POST_TRAINING_EVAL].version, p)
        post_training = dataclasses.replace(
            post_training, image=copy(keys.POST_TRAINING_EVAL, "pass_at_1.png", "post_training_pass_at_1.png")
        )
        page = evaluation_summary_markdown(
            EvaluationSections(
                corpus=corpus,
                tokenizer=tokenizer,
                loss_curves=curves,
                niah=stages,
                drift=drift_section,
                post_training=post_training,
                notes=(f"preset `{p.name}`", *(f"`{k}` {u.version}" for k, u in sorted(upstream.items()))),
            )
        )
        (staging / "evaluation_summary.md").write_text(page)
        return BuildResult(metadata={"pages": 1, "images": len(list(images.iterdir()))}, markdown={"summary": page})

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=("eval",),
        upstream=upstream,
        build=build,
    )
    return result.materialize_result(
        extra_metadata={
            "report": MetadataValue.path(
                artifact_store.uri(keys.EVALUATION_SUMMARY, result.ref.version, "evaluation_summary.md")
            )
        }
    )


evaluation_assets = [*(niah_report_asset(s) for s in CONTEXT_STAGES), short_context_eval, evaluation_summary]
