"""[pretraining] group: tokenized_mixture_stage{1,2,3} -> pretrain_stage{1,2,3} (report §3.1).

* ``tokenized_mixture_stageN`` tokenizes the stage's sources (``data.stage_mixtures.stageN``: corpus
  partitions, and the synthetic sets where the stage names them) with the SuperBPE tokenizer into Megatron
  indexed datasets, held-out documents excluded (they are the short-context evaluation set). Metadata and
  the ``mixture_composition`` table: tokens per source, requested vs effective share (what Megatron's
  blend draws for the stage's samples).
* ``pretrain_stageN`` launches ``model.train`` through the ``trainer`` resource (Pipes: torchrun locally,
  a GPU pod on k8s). Stage N initialises from stage N-1's checkpoint. The final metrics (a table) and the
  per-step metrics (``metrics`` table; drawn as the inline ``loss_curve`` plot) come back; an interrupted
  stage resumes from its newest periodic checkpoint when it is materialized again with the same inputs.
"""

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from dagster import AssetDep, AssetExecutionContext, AssetsDefinition, MetadataValue, asset

from assets import keys
from assets.corpus_pipeline import deduplicated_documents
from assets.metadata import table, table_value
from assets.tokenizer import eod_and_pad, load_tokenizer
from assets.versioning import (
    BuildResult,
    Upstream,
    UpstreamMissingError,
    artifact_version,
    ensure_plot,
    latest_upstream,
    materialize_versioned,
)
from config import Preset, get_preset
from kexaone_dag.automation import DOWNSTREAM_OF_DATA
from kexaone_dag.config import PresetResource
from kexaone_dag.executors import training_asset_kwargs
from model import data
from model.plots import training_curves_png
from model.stages import METRICS, stage_plan
from resources.artifact_store import ArtifactStore
from resources.lineage import lineage
from resources.trainer import POLICY_MODULE, TRAIN_MODULE, StageLaunch, TrainerLauncher
from resources.warehouse import Warehouse
from tokenizer.recipe import is_held_out

PRETRAINING_GROUP = "pretraining"
PRETRAIN_STAGES = ("stage1", "stage2", "stage3")
# synthetic sets a stage mixture may name -> (asset, file inside its artifact)
SYNTHETIC_SOURCES = {
    "thinking_augmented": (keys.THINKING_AUGMENTED_DATA, "samples.jsonl"),
    "multilingual_synthetic": (keys.MULTILINGUAL_SYNTHETIC_DATA, "documents.jsonl"),
}
STEP_METRICS = {
    "lm_loss": "nats",
    "mtp_loss": "nats",
    "seq_aux_loss": "",
    "loss": "nats",
    "grad_norm": "",
    "lr": "",
    "expert_load_imbalance": "max/mean",
    "tokens_per_s": "tokens/s",
    # policy stages (posttrain.policy_train), per rollout round
    "mean_reward": "reward in [0, 1]",
    "share_filtered": "share of groups",
    "is_truncated_share": "share of tokens",
    "mean_response_length": "tokens",
    "entropy": "nats",
}
LOSS_PLOT = "loss_curves.png"  # losses and learning rate per step, drawn from metrics.jsonl (shown inline)


def _synthetic_deps(preset: Preset, stage: str) -> list[str]:
    return [SYNTHETIC_SOURCES[s][0] for s in sorted(preset.data.stage_mixtures[stage]) if s in SYNTHETIC_SOURCES]


def _jsonl_texts(store: ArtifactStore, asset: str, version: str, relpath: str) -> Callable[[], Iterator[str]]:
    def texts() -> Iterator[str]:
        with store.open(asset, version, relpath, "rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["text"]

    return texts


def _kept(stream: Callable[[], Iterable[tuple[str, str]]], held_out_fraction: float) -> Callable[[], Iterator[str]]:
    def texts() -> Iterator[str]:
        for doc_id, text in stream():
            if not is_held_out(doc_id, held_out_fraction):
                yield text

    return texts


def mixture_table(rows: list[dict]) -> dict:
    """One row per source of a stage mixture: requested vs effective share, documents, tokens, epochs."""
    return table(
        [{**r, "effective": round(r["effective"], 4), "epochs": round(r["epochs"], 2)} for r in rows],
        [
            ("source", "string"),
            ("requested", "float", "share of the stage's samples asked for (data.stage_mixtures)"),
            ("effective", "float", "share of the stage's samples Megatron's blend draws from the source"),
            ("documents", "int"),
            ("tokens", "int", "tokens of the source's indexed dataset"),
            ("samples", "int", "samples of the stage drawn from the source"),
            ("epochs", "float", "passes over the source's tokens in the stage"),
        ],
    )


def tokenized_mixture_asset(stage: str) -> AssetsDefinition:
    name = keys.tokenized_mixture(stage)
    synthetic = _synthetic_deps(get_preset(), stage)

    @asset(
        name=name,
        group_name=PRETRAINING_GROUP,
        code_version="1",
        automation_condition=DOWNSTREAM_OF_DATA,
        deps=[AssetDep(keys.DEDUPLICATED_CORPUS), AssetDep(keys.SUPERBPE_TOKENIZER), *[AssetDep(s) for s in synthetic]],
        kinds={"megatron", "duckdb"},
        description=f"Pre-training {stage} mixture: SuperBPE-tokenized sources as Megatron indexed datasets "
        f"(.bin/.idx) with the preset's data.stage_mixtures.{stage} weights.",
    )
    def _mixture(
        context: AssetExecutionContext, preset: PresetResource, artifact_store: ArtifactStore, warehouse: Warehouse
    ):
        p = preset.get()
        weights = dict(p.data.stage_mixtures[stage])
        upstream: dict[str, Upstream] = {}
        texts: dict[str, Callable[[], Iterator[str]]] = {}
        for source in sorted(weights):
            if weights[source] == 0:
                continue
            if source in SYNTHETIC_SOURCES:
                asset_name, relpath = SYNTHETIC_SOURCES[source]
                upstream[source] = latest_upstream(context, asset_name)
                texts[source] = _jsonl_texts(artifact_store, asset_name, upstream[source].version, relpath)
            else:
                artifact, upstream[source], stream = deduplicated_documents(context, artifact_store, source)
                texts[source] = _kept(stream, p.tokenizer.held_out_fraction)
        upstream["tokenizer"] = latest_upstream(context, keys.SUPERBPE_TOKENIZER)
        plan = stage_plan(p, stage)

        def build(staging: Path) -> BuildResult:
            tok = load_tokenizer(artifact_store, upstream["tokenizer"].version)
            eod, pad = eod_and_pad(tok, p)
            manifest = data.build_mixture(
                staging,
                stage=stage,
                weights={k: v for k, v in weights.items() if v > 0},
                texts=texts,
                encode_batch=lambda batch: [e.ids for e in tok.encode_batch(batch)],
                eod_id=eod,
                pad_id=pad,
                vocab_size=tok.get_vocab_size(with_added_tokens=True),
                seq_length=plan.seq_length,
                num_samples=plan.num_samples,
                seed=p.pretrain.seed,
            )
            with tempfile.TemporaryDirectory(prefix="kexaone-mixture-index-") as cache:
                blended = data.open_mixture(staging, cache)  # proves Megatron opens it; index caches discarded
                rows = data.mixture_report(manifest, data.source_of_samples(blended, manifest, plan.num_samples))
            (staging / "composition.json").write_text(json.dumps(rows, indent=2))
            return BuildResult(
                metadata={
                    "num_samples": plan.num_samples,
                    "seq_length": plan.seq_length,
                    "tokens": plan.tokens,
                    "tokens_by_source": {r["source"]: r["tokens"] for r in rows},
                    "effective_mixture": {r["source"]: r["effective"] for r in rows},
                    "requested_mixture": {r["source"]: r["requested"] for r in rows},
                    "vocab_size": manifest.vocab_size,
                },
                tables={"composition": mixture_table(rows)},
            )

        result = materialize_versioned(
            context,
            store=artifact_store,
            warehouse=warehouse,
            preset=p,
            preset_sections=(
                f"data.stage_mixtures.{stage}",
                "pretrain",
                "tokenizer.held_out_fraction",
                "tokenizer.special_tokens",
            ),
            upstream=upstream,
            build=build,
        )
        version = result.ref.version
        rows = artifact_store.read_json(name, version, "composition.json")
        warehouse.insert(
            "mixture_composition",
            [{"asset": name, "version": version, **r} for r in rows],
            replace_keys=("asset", "version"),
        )
        return result.materialize_result()

    return _mixture


def pretrain_asset(stage: str) -> AssetsDefinition:
    name = keys.pretrain(stage)
    index = PRETRAIN_STAGES.index(stage)
    previous = keys.pretrain(PRETRAIN_STAGES[index - 1]) if index else None
    deps = [AssetDep(keys.tokenized_mixture(stage))] + ([AssetDep(previous)] if previous else [])

    @asset(
        name=name,
        group_name=PRETRAINING_GROUP,
        code_version="2",
        automation_condition=DOWNSTREAM_OF_DATA,
        deps=deps,
        **training_asset_kwargs(get_preset()),
        metadata=planned_metadata(get_preset(), stage, PRETRAIN_SHOWS),
        description=f"Pre-training {stage} checkpoint (Megatron dist checkpoint, report §3.1)"
        + (f", initialised from {previous}" if previous else "")
        + ": trained by model.train through Dagster Pipes; loss curve and metrics attached.",
    )
    def _pretrain(
        context: AssetExecutionContext,
        preset: PresetResource,
        artifact_store: ArtifactStore,
        warehouse: Warehouse,
        trainer: TrainerLauncher,
    ):
        p = preset.get()
        upstream = {"mixture": latest_upstream(context, keys.tokenized_mixture(stage))}
        if previous:
            upstream["init"] = latest_upstream(context, previous)
        sections = ("model", "pretrain", "tokenizer.vocab_size")
        with contextlib.ExitStack() as copies:
            mixture_dir = copies.enter_context(
                artifact_store.local_copy(keys.tokenized_mixture(stage), upstream["mixture"].version)
            )
            init_from = None
            if previous:
                if not artifact_store.has(previous, upstream["init"].version):
                    raise UpstreamMissingError(f"{previous}: artifact {upstream['init'].uri} is not in the store")
                init_from = (
                    copies.enter_context(artifact_store.local_copy(previous, upstream["init"].version)) / "checkpoint"
                )
            result, extra = train_stage(
                context,
                p,
                preset,
                artifact_store,
                warehouse,
                trainer,
                stage=stage,
                asset_name=name,
                sections=sections,
                upstream=upstream,
                mixture_dir=mixture_dir,
                init_from=init_from,
            )
        return result.materialize_result(extra_metadata=extra)

    return _pretrain


# what a checkpoint's materialization carries (listed on the asset page before its first run)
PRETRAIN_SHOWS = (
    "loss_curve: inline plot of LM loss, MTP loss and learning rate per step",
    "final_metrics: table of the last step's metrics; trainer/*: what the trainer reported through Pipes",
    "lineage: table of the exact artifact versions behind it, back to the raw corpus (`kexaone lineage`)",
    "checkpoint: the Megatron dist checkpoint's path; the per-step metrics land in the warehouse's `metrics`",
)


def planned_metadata(preset: Preset, stage: str, shows: Iterable[str]) -> dict[str, MetadataValue]:
    """Definition metadata, on the asset page before any run: the stage's plan under the loaded preset
    (``model.stages.stage_plan``) and what each materialization will show."""
    plan = stage_plan(preset, stage)
    row = {
        "preset": preset.name,
        "steps": plan.steps,
        "seq_length": plan.seq_length,
        "global_batch_size": plan.global_batch_size,
        "tokens": plan.steps * plan.seq_length * plan.global_batch_size,
        "first_step": plan.first_step,
        "checkpoint_every_steps": plan.checkpoint_every_steps,
        "peak_lr": plan.peak_lr if plan.peak_lr is not None else preset.pretrain.max_lr,
    }
    return {
        "plan": table_value(table([row])),
        "each materialization shows": MetadataValue.md("\n".join(f"- {line}" for line in shows)),
    }


def train_stage(
    context: AssetExecutionContext,
    p: Preset,
    preset: PresetResource,
    artifact_store: ArtifactStore,
    warehouse: Warehouse,
    trainer: TrainerLauncher,
    *,
    stage: str,
    asset_name: str,
    sections: tuple,
    upstream: dict,
    mixture_dir: Path,
    init_from: Path | None,
    niah_cases: list | None = None,
    tokenizer_file: Path | None = None,
    context_parallel: int = 1,
    finish: Callable[[Path], BuildResult] | None = None,
    module: str = TRAIN_MODULE,
    algorithm: str | None = None,
    prompts_file: Path | None = None,
    judge: Mapping[str, str] | None = None,
    launch_env: Mapping[str, str] | None = None,
):
    """Version -> (reuse | launch ``model.train`` through Pipes into staging -> commit) -> metrics rows.

    ``finish(staging)``, when given, runs after training and adds its tables, plots and markdown to the
    stage's (e.g. the context stages' NIAH grid). Returns the ``VersionedResult`` and the extra metadata
    (checkpoint, what the training process reported through Pipes)."""
    artifact, version = artifact_version(context, preset=p, preset_sections=sections, upstream=upstream)
    work_dir = trainer.work_dir(artifact, version)
    reported: dict = {}  # what the training process itself reported through Pipes

    def build(staging: Path) -> BuildResult:
        nproc, tp, ep = trainer.layout(p, policy=module == POLICY_MODULE)
        cases_file = None
        if niah_cases is not None:
            work_dir.mkdir(parents=True, exist_ok=True)
            cases_file = work_dir / "niah_cases.json"
            cases_file.write_text(json.dumps(niah_cases))
        launch = StageLaunch(
            preset_name=p.name,
            overrides=dict(preset.overrides),
            stage=stage,
            data=mixture_dir,
            work_dir=work_dir,
            output=staging,
            init_from=init_from,
            tensor_parallel=tp,
            expert_parallel=ep,
            niah_cases=cases_file,
            tokenizer=tokenizer_file,
            context_parallel=context_parallel,
            pipeline_parallel=p.compute.pipeline_parallel if module != POLICY_MODULE else 1,
            module=module,
            algorithm=algorithm,
            prompts=prompts_file,
            judge=judge,
            env=launch_env,
            rollout_base_url=trainer.rollout_base_url if module == POLICY_MODULE else None,
            rollout_model=trainer.rollout_model,
        )
        context.log.info(f"{asset_name}: launching {nproc} training process(es); resumable state in {work_dir}")
        invocation = trainer.launch(context, p, launch, extras={"artifact_version": version, "stage": stage})
        for mat in invocation.get_results():
            reported.update({k: getattr(v, "value", v) for k, v in (mat.metadata or {}).items()})
            if getattr(mat, "data_version", None) is not None:
                reported["data_version"] = mat.data_version.value
        summary = json.loads((staging / "summary.json").read_text())
        rows = [json.loads(line) for line in (staging / METRICS).read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("stage", summary.get("stage")) == summary.get("stage")]
        built = BuildResult(
            metadata={k: v for k, v in summary.items() if v is not None},
            tables={"final_metrics": final_metrics_table(summary)},
        )
        if rows:
            training_curves_png(rows, staging / LOSS_PLOT, title=f"{asset_name}: loss per step")
            built.plots["loss_curve"] = LOSS_PLOT
        if finish is not None:
            extra = finish(staging)
            built.metadata.update(extra.metadata)
            built.markdown.update(extra.markdown)
            built.tables.update(extra.tables)
            built.plots.update(extra.plots)
        return built

    result = materialize_versioned(
        context,
        store=artifact_store,
        warehouse=warehouse,
        preset=p,
        preset_sections=sections,
        upstream=upstream,
        build=build,
    )
    if not result.ref.reused:
        shutil.rmtree(work_dir, ignore_errors=True)  # periodic checkpoints are scratch once committed
    _record_metrics(artifact_store, warehouse, asset_name, result.ref.version)
    ensure_plot(result, artifact_store, "loss_curve", "loss_curve.png")  # the trainer's (built before plots)
    extra = {
        "checkpoint": MetadataValue.path(artifact_store.uri(asset_name, result.ref.version, "checkpoint")),
        # the exact artifact versions this checkpoint was built from, back to the raw corpus (`kexaone lineage`)
        "lineage": table_value(table(n.row() for n in lineage(artifact_store, asset_name, result.ref.version))),
        **{f"trainer/{k}": v for k, v in reported.items() if isinstance(v, (int, float, str, bool))},
    }
    return result, extra


FINAL_METRICS = (
    ("steps", "int", "optimizer steps of the stage"),
    ("tokens", "int", "training tokens of the stage"),
    ("loss_first", "float", "mean LM loss over the first 10 % of steps (nats)"),
    ("loss_final", "float", "mean LM loss over the last 10 % of steps (nats)"),
    ("mtp_loss_final", "float", "last MTP loss (nats)"),
    ("lr_final", "float", "last learning rate"),
    ("expert_load_imbalance_final", "float", "last expert load max/mean"),
    ("tokens_per_s", "float", "mean training throughput"),
    ("world_size", "int", "training processes"),
    ("resumed_from", "string", "periodic checkpoint the run resumed from, if any"),
)


def final_metrics_table(summary: dict) -> dict:
    """The stage's ``summary.json`` as a one-row table, one typed column per metric (a policy stage's
    summary, which has no LM loss, keeps its own keys)."""
    if "loss_final" not in summary:
        return table([{k: v for k, v in summary.items() if not isinstance(v, (list, dict))}])
    return table([summary], FINAL_METRICS)


def _record_metrics(store: ArtifactStore, warehouse: Warehouse, asset_name: str, version: str) -> None:
    """Per-step training metrics -> the long-format ``metrics`` table (replacing this version's rows)."""
    rows = []
    with store.open(asset_name, version, METRICS, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            rows += [
                {
                    "asset": asset_name,
                    "version": version,
                    "partition": None,
                    "step": r["step"],
                    "metric": m,
                    "value": float(r[m]),
                    "unit": unit,
                }
                for m, unit in STEP_METRICS.items()
                if m in r  # a pre-training step or a policy round: each row has its own metrics
            ]
    warehouse.insert("metrics", rows, replace_keys=("asset", "version"))


tokenized_mixture_assets = [tokenized_mixture_asset(s) for s in PRETRAIN_STAGES]
pretrain_assets = [pretrain_asset(s) for s in PRETRAIN_STAGES]
pretraining_assets = [*tokenized_mixture_assets, *pretrain_assets]
