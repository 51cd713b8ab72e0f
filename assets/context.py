"""[context] group: context_mixture_stage{1,2} -> context_ext_stage{1,2} with a blocking NIAH gate (§3.2).

* ``context_mixture_stageN`` packs the stage's three pools (``context.stages.stageN.mixture``) into samples
  of the stage's length, whole documents only (``model.context_mixture``): rehearsal = the pre-training
  corpus, synthetic reasoning = ``thinking_augmented_data``, long documents = corpus documents longer than
  the previous stage's length plus, at ``retrieval_share``, synthetic key/value retrieval documents
  (``evaluation.niah``'s format, training keys only). Check ``documents_whole`` re-reads every placement.
* ``context_ext_stageN`` continues from ``pretrain_stage3`` / ``context_ext_stage1`` through the same
  Pipes training job at the stage's length, then answers the NIAH grid (lengths from the previous stage's
  length up to this one x depths x trials, filler from held-out corpus text). The blocking check
  ``niah_green_light`` passes only if every cell reaches ``eval.niah_threshold`` (the grid is shown as a
  table and an inline heatmap, ``niah_heatmap.png`` in the artifact); if it fails, the step
  fails after recording the materialization, so nothing downstream runs, and both the check and the step's
  error name the failing cells, their scores and what to try.
"""

import json
import math
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    asset,
)

from assets import keys
from assets.corpus_pipeline import deduplicated_documents
from assets.metadata import table, table_value
from assets.pretraining import PRETRAIN_SHOWS, planned_metadata, train_stage
from assets.tokenizer import TOKENIZER_FILE, eod_and_pad, load_tokenizer
from assets.versioning import BuildResult, Upstream, UpstreamMissingError, latest_upstream, materialize_versioned
from config import Preset, get_preset
from evaluation import niah
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from kexaone_dag.executors import training_asset_kwargs
from model import data
from model.context_mixture import POOLS, context_mixture
from model.stages import CONTEXT_PREFIX, stage_plan
from resources.artifact_store import ArtifactStore
from resources.trainer import TrainerLauncher
from resources.warehouse import Warehouse
from tokenizer.recipe import is_held_out

CONTEXT_GROUP = "context"
CONTEXT_STAGES = ("stage1", "stage2")
NIAH_CHECK = "niah_green_light"


def previous_checkpoint(stage: str) -> str:
    index = CONTEXT_STAGES.index(stage)
    return keys.context_ext(CONTEXT_STAGES[index - 1]) if index else "pretrain_stage3"


def previous_length(p: Preset, stage: str) -> int:
    index = CONTEXT_STAGES.index(stage)
    return p.context.stages[CONTEXT_STAGES[index - 1]].seq_length if index else p.pretrain.seq_length


def corpus_texts(
    context: AssetExecutionContext, store: ArtifactStore, p: Preset, *, held_out: bool
) -> tuple[dict[str, list[str]], dict[str, Upstream]]:
    """Training (or held-out) texts of every deduplicated_corpus partition, and their versions."""
    texts, upstream = {}, {}
    for domain in p.data.domains:
        _, upstream[domain], stream = deduplicated_documents(context, store, domain)
        texts[domain] = [t for doc_id, t in stream() if is_held_out(doc_id, p.tokenizer.held_out_fraction) == held_out]
    return texts, upstream


def niah_filler(p: Preset, held_out_texts: dict[str, list[str]]) -> dict[str, list[str]]:
    """NIAH filler: held-out corpus text of each corpus language that has a needle template."""
    return {lang: held_out_texts[lang] for lang in p.data.languages if lang in niah.TEMPLATES and held_out_texts[lang]}


def context_mixture_asset(stage: str) -> AssetsDefinition:
    name = keys.context_mixture(stage)
    gate = previous_checkpoint(stage)

    @asset(
        name=name,
        group_name=CONTEXT_GROUP,
        code_version="2",
        automation_condition=DOWNSTREAM_OF_DATA,
        deps=[
            AssetDep(keys.DEDUPLICATED_CORPUS),
            AssetDep(keys.SUPERBPE_TOKENIZER),
            AssetDep(keys.THINKING_AUGMENTED_DATA),
            AssetDep(gate),
        ],
        check_specs=[
            AssetCheckSpec(
                "documents_whole",
                asset=name,
                description="every packed document is a whole, contiguous copy of its "
                "source document (none split or truncated)",
            )
        ],
        kinds={"megatron"},
        description=f"Context-extension {stage} data: rehearsal / synthetic reasoning / whole long documents "
        f"packed into samples of context.stages.{stage}.seq_length tokens (report §3.2). Waits for "
        f"{gate}" + (" (and its NIAH gate)." if gate.startswith("context") else "."),
    )
    def _mixture(
        context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
    ):
        p = preset.get()
        cs = p.context.stages[stage]
        train_texts, upstream = corpus_texts(context, artifact_store, p, held_out=False)
        upstream["thinking"] = latest_upstream(context, keys.THINKING_AUGMENTED_DATA)
        upstream["tokenizer"] = latest_upstream(context, keys.SUPERBPE_TOKENIZER)
        upstream["gate"] = latest_upstream(context, gate)  # ordering only: the mixture waits for the gate
        plan = stage_plan(p, CONTEXT_PREFIX + stage)
        checks: list[AssetCheckResult] = []

        def build(staging: Path) -> BuildResult:
            tok = load_tokenizer(artifact_store, upstream["tokenizer"].version)
            eod, pad = eod_and_pad(tok, p)

            def encode_docs(texts: list[str]) -> list[list[int]]:
                return [e.ids + [eod] for e in tok.encode_batch(texts)]

            with artifact_store.open(keys.THINKING_AUGMENTED_DATA, upstream["thinking"].version, "samples.jsonl") as f:
                thinking = [json.loads(line)["text"] for line in f if line.strip()]
            rehearsal = encode_docs([t for domain in sorted(train_texts) for t in train_texts[domain]])
            longer = previous_length(p, stage)
            natural_long = [d for d in rehearsal if len(d) > longer + 1]
            long_target = cs.mixture["long_documents"] * plan.tokens
            natural, natural_tokens = [], 0
            for doc in natural_long:  # natural long documents up to their (1 - retrieval_share) part
                if natural_tokens >= (1 - cs.retrieval_share) * long_target:
                    break
                natural.append(doc)
                natural_tokens += len(doc)
            # enough retrieval documents for their share (lengths are drawn, so count by the mean length)
            lo, hi = cs.retrieval_min_length, cs.seq_length
            mean_length = hi if lo == hi else (hi - lo) / math.log(hi / lo)
            n_retrieval = math.ceil(1.1 * cs.retrieval_share * long_target / (mean_length + 1))
            retrieval_docs = (
                niah.retrieval_training_documents(
                    p.pretrain.seed,
                    niah_filler(p, train_texts),
                    n_retrieval,
                    cs.seq_length,
                    lambda text: tok.encode(text).ids,
                    min_length_tokens=lo,
                )
                if n_retrieval
                else []
            )
            retrieval = [d.ids + [eod] for d in retrieval_docs]
            pools = {
                "rehearsal": rehearsal,
                "synthetic_reasoning": encode_docs(thinking),
                "long_documents": natural + retrieval,
            }
            mix = context_mixture(
                pools["rehearsal"],
                pools["synthetic_reasoning"],
                pools["long_documents"],
                mixture=dict(cs.mixture),
                seq_length=cs.seq_length,
                token_budget=plan.tokens,
                pad_id=pad,
                seed=p.pretrain.seed,
            )
            broken = [
                (row, pl)
                for row, placed in enumerate(mix.placements)
                for pl in placed
                if list(mix.samples[row][pl.offset : pl.offset + pl.length]) != pools[pl.pool][pl.document]
            ]
            checks.append(
                AssetCheckResult(
                    check_name="documents_whole",
                    passed=not broken,
                    metadata={"placements": sum(len(x) for x in mix.placements), "broken": len(broken)},
                )
            )
            # answered values weigh answer_loss_weight in the loss (weight i applies to predicting token i)
            weights = None
            if cs.answer_loss_weight != 1:
                weights = (mix.samples != pad).astype("uint8")
                for row, placed in enumerate(mix.placements):
                    for pl in placed:
                        if pl.pool == "long_documents" and pl.document >= len(natural):
                            for start, end in retrieval_docs[pl.document - len(natural)].answer_spans:
                                weights[row, pl.offset + start : pl.offset + end] = cs.answer_loss_weight
            stats = mix.stats()
            manifest = data.MixtureManifest(
                stage=CONTEXT_PREFIX + stage,
                seq_length=cs.seq_length,
                num_samples=mix.num_samples,
                seed=p.pretrain.seed,
                eod_id=eod,
                pad_id=pad,
                vocab_size=tok.get_vocab_size(with_added_tokens=True),
                sources=tuple(
                    data.SourceStats(
                        name=pool,
                        weight=cs.mixture[pool],
                        documents=stats["pools"][pool]["documents_used"],
                        tokens=stats["pools"][pool]["effective_tokens"],
                        max_token_id=max((max(d) for d in pools[pool]), default=0),
                    )
                    for pool in POOLS
                ),
                kind="packed",
                loss_weights=weights is not None,
            )
            data.write_packed_samples(staging, mix.samples, manifest, loss_weights=weights)
            (staging / "stats.json").write_text(json.dumps(stats, indent=2))
            return BuildResult(
                metadata={
                    "seq_length": cs.seq_length,
                    "num_samples": mix.num_samples,
                    "padding_fraction": round(mix.padding_fraction, 4),
                    "effective_mixture": {k: round(v, 4) for k, v in mix.effective_shares().items()},
                    "requested_mixture": dict(cs.mixture),
                    "retrieval_documents": len(retrieval),
                    "answer_tokens_weighted": int((weights > 1).sum()) if weights is not None else 0,
                    "natural_long_documents": len(natural),
                    "longest_document": max((len(d) for pool in pools.values() for d in pool), default=0),
                },
                tables={"composition": composition_table(stats)},
            )

        result = materialize_versioned(
            context,
            store=artifact_store,
            warehouse=warehouse,
            preset=p,
            preset_sections=(
                f"context.stages.{stage}",
                "pretrain",
                "tokenizer.held_out_fraction",
                "tokenizer.special_tokens",
                "data.languages",
            ),
            upstream=upstream,
            build=build,
        )
        if not checks:  # reused: the packing was verified when it was built
            checks.append(
                AssetCheckResult(check_name="documents_whole", passed=True, metadata={"verified_at_build": True})
            )
        return result.materialize_result(check_results=checks)

    return _mixture


CONTEXT_SHOWS = (
    *PRETRAIN_SHOWS,
    "niah_grid: table of exact match per (length, depth) cell; niah_heatmap: the same as an inline plot",
    "niah_green_light: the blocking check (threshold eval.niah_threshold), with its failing cells",
)


def context_ext_asset(stage: str) -> AssetsDefinition:
    name = keys.context_ext(stage)
    previous = previous_checkpoint(stage)

    @asset(
        name=name,
        group_name=CONTEXT_GROUP,
        code_version="1",
        automation_condition=DOWNSTREAM_OF_DATA,
        deps=[
            AssetDep(keys.context_mixture(stage)),
            AssetDep(previous),
            AssetDep(keys.DEDUPLICATED_CORPUS),
            AssetDep(keys.SUPERBPE_TOKENIZER),
        ],
        check_specs=[
            AssetCheckSpec(
                NIAH_CHECK,
                asset=name,
                blocking=True,
                description="green light: every NIAH (length, depth) cell's exact match "
                ">= eval.niah_threshold; blocks everything downstream",
            )
        ],
        **training_asset_kwargs(get_preset()),
        metadata=planned_metadata(get_preset(), CONTEXT_PREFIX + stage, CONTEXT_SHOWS),
        description=f"Context-extension {stage} checkpoint (report §3.2), continued from {previous} through the "
        "Pipes training job, then NIAH over the stage's range; blocking gate niah_green_light.",
    )
    def _ext(
        context: AssetExecutionContext,
        preset: PresetResource,
        artifact_store: ArtifactStore,
        warehouse: Warehouse,
        trainer: TrainerLauncher,
    ):
        p = preset.get()
        cs = p.context.stages[stage]
        upstream = {
            "mixture": latest_upstream(context, keys.context_mixture(stage)),
            "init": latest_upstream(context, previous),
            "tokenizer": latest_upstream(context, keys.SUPERBPE_TOKENIZER),
        }
        held_out, corpus_up = corpus_texts(context, artifact_store, p, held_out=True)
        upstream.update({f"niah_filler_{k}": v for k, v in corpus_up.items()})
        if not artifact_store.has(previous, upstream["init"].version):
            raise UpstreamMissingError(f"{previous}: artifact {upstream['init'].uri} is not in the store")
        tok = load_tokenizer(artifact_store, upstream["tokenizer"].version)
        cases = niah.stage_cases(
            lambda text: tok.encode(text).ids,
            niah_filler(p, held_out),
            seq_length=cs.seq_length,
            previous_length=previous_length(p, stage),
            num_lengths=p.eval.niah_num_lengths,
            num_depths=p.eval.niah_num_depths,
            trials=p.eval.niah_trials,
            seed=p.pretrain.seed,
        )
        with (
            artifact_store.local_copy(keys.SUPERBPE_TOKENIZER, upstream["tokenizer"].version) as tokenizer_dir,
            artifact_store.local_copy(keys.context_mixture(stage), upstream["mixture"].version) as mixture_dir,
            artifact_store.local_copy(previous, upstream["init"].version) as init,
        ):
            result, extra = train_stage(
                context,
                p,
                preset,
                artifact_store,
                warehouse,
                trainer,
                stage=CONTEXT_PREFIX + stage,
                asset_name=name,
                sections=("model", "pretrain", f"context.stages.{stage}", "eval", "tokenizer.vocab_size"),
                upstream=upstream,
                mixture_dir=mixture_dir,
                init_from=init / "checkpoint",
                niah_cases=[_case_json(c) for c in cases],
                tokenizer_file=tokenizer_dir / TOKENIZER_FILE,
                context_parallel=cs.context_parallel,
                finish=lambda staging: niah_build(staging, f"{name} NIAH exact match", p.eval.niah_threshold),
            )
        results = read_niah(artifact_store, name, result.ref.version)
        passed, failing = niah.gate(results, p.eval.niah_threshold)
        check = AssetCheckResult(
            check_name=NIAH_CHECK,
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=niah.gate_message(failing, p.eval.niah_threshold),
            metadata={
                "accuracy": round(results.accuracy, 4),
                "threshold": p.eval.niah_threshold,
                "failing_cells": [c.describe() for c in failing],
                "lengths": results.lengths,
                "grid": table_value(niah_grid_table(results)),
            },
        )
        extra["niah_accuracy"] = round(results.accuracy, 4)
        if "niah_grid" not in result.build.tables:  # (artifacts built before tables)
            extra["niah_grid"] = table_value(niah_grid_table(results))
        yield result.materialize_result(extra_metadata=extra, check_results=[check])
        if not passed:  # the checkpoint is recorded; the step fails with the reason as its error, first line
            raise Failure(
                description=gate_failure(name, stage, failing, p.eval.niah_threshold, result.ref.uri),
                metadata={"failing_cells": [c.describe() for c in failing]},
            )

    return _ext


NIAH_HEATMAP = "niah_heatmap.png"


def composition_table(stats: dict) -> dict:
    """One row per pool of a packed context mixture (``model.context_mixture`` stats)."""
    return table(
        [
            {
                "pool": pool,
                "requested": s["share"],
                "effective": round(s["effective_share"], 4),
                "tokens": s["effective_tokens"],
                "documents": s["documents_used"],
                "epochs": s["epochs"],
                "skipped_too_long": len(s["skipped_too_long"]),
            }
            for pool, s in stats["pools"].items()
        ],
        [
            ("pool", "string"),
            ("requested", "float", "share of the stage's tokens asked for (context.stages.*.mixture)"),
            ("effective", "float", "share of the packed tokens"),
            ("tokens", "int", "packed tokens"),
            ("documents", "int", "documents packed"),
            ("epochs", "int", "passes started over the pool (> 1: repeated)"),
            ("skipped_too_long", "int", "documents longer than the stage's length (never cut)"),
        ],
    )


def niah_grid_table(results: niah.NiahResults) -> dict:
    """The NIAH grid as a table: one row per needle depth, one exact-match column per prompt length."""
    trials = sorted({c.trials for c in results.cells})
    per_cell = f"{trials[0]} trials per cell" if len(trials) == 1 else "trials per cell vary"
    rows = [
        {
            "depth": round(depth, 4),
            **{f"len_{n}": round(results.cell(n, depth).accuracy, 4) for n in results.lengths},
        }
        for depth in results.depths
    ]
    return table(
        rows,
        [("depth", "float", "needle depth (0 = start of the haystack, 1 = just before the question)")]
        + [(f"len_{n}", "float", f"exact match at a {n}-token prompt ({per_cell})") for n in results.lengths],
    )


def niah_build(staging: Path, title: str, threshold: float) -> BuildResult:
    """What a context stage adds to its artifact once the trainer answered the grid (``niah.json``): the
    grid as a table and a heatmap (``niah_heatmap.png``), so a reused checkpoint shows them too."""
    rows = json.loads((staging / "niah.json").read_text())
    results = niah.results_from_cases(niah.CaseResult(**r) for r in rows)
    niah.heatmap_png(results, staging / NIAH_HEATMAP, title=title, threshold=threshold)
    return BuildResult(tables={"niah_grid": niah_grid_table(results)}, plots={"niah_heatmap": NIAH_HEATMAP})


def gate_failure(asset: str, stage: str, failing: list[niah.CellResult], threshold: float, uri: str) -> str:
    """The failed gate as the step's error: which cells, their scores, where the answers are, what to try."""
    return (
        f"{asset}: {NIAH_CHECK} failed, {niah.gate_message(failing, threshold)}. The checkpoint and every "
        f"answer are in {uri} (niah.json); nothing downstream runs. To try: more training "
        f"(context.stages.{stage}.tokens), another peak LR (context.stages.{stage}.lr), or more retrieval "
        f"documents (context.stages.{stage}.retrieval_share)."
    )


def _case_json(case: niah.NiahCase) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(case).items()}


def read_niah(store: ArtifactStore, asset_name: str, version: str) -> niah.NiahResults:
    with store.open(asset_name, version, "niah.json", "rb") as f:
        rows = json.loads(f.read())
    return niah.results_from_cases(niah.CaseResult(**r) for r in rows)


context_assets = [*(context_mixture_asset(s) for s in CONTEXT_STAGES), *(context_ext_asset(s) for s in CONTEXT_STAGES)]
