"""What a training stage shows in the UI, without training: ``assets.pretraining.train_stage`` with a
trainer that writes the files ``model.train`` writes (summary.json, metrics.jsonl, loss_curve.png, and for
a context stage niah.json). The final metrics as a native table, the loss curves and the NIAH heatmap as
inline PNGs, the NIAH grid as a table; a reused artifact shows the same, and an artifact committed before
tables and plots existed (its provenance without them) still loads and shows the trainer's loss curve.
The real trainer is tests/e2e/test_tiny_chain.py."""

import base64
import json
from pathlib import Path

from dagster import AssetExecutionContext, DagsterInstance, asset, materialize

from assets.context import niah_build
from assets.pretraining import LOSS_PLOT, train_stage
from kexaone_dag.config import PresetResource
from model.plots import loss_curve_png
from resources.artifact_store import ArtifactStore
from resources.trainer import StageLaunch, TrainerLauncher
from resources.warehouse import Warehouse

STEPS = 8
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Done:
    def get_results(self):  # nothing reported through Pipes
        return []


class FilesOnlyTrainer(TrainerLauncher):
    """Writes what a finished ``model.train`` leaves in its output folder, and nothing else."""

    def launch(self, context, preset, launch: StageLaunch, *, extras):
        out = launch.output
        rows = [
            {
                "stage": launch.stage,
                "step": i,
                "lm_loss": 8.0 - 0.5 * i,
                "mtp_loss": 8.5 - 0.5 * i,
                "seq_aux_loss": 0.01,
                "loss": 8.2 - 0.5 * i,
                "grad_norm": 1.0,
                "lr": 3e-4,
                "expert_load_imbalance": 1.1,
                "tokens_per_s": 1000.0,
            }
            for i in range(1, STEPS + 1)
        ]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        loss_curve_png([r["step"] for r in rows], [r["lm_loss"] for r in rows], out / "loss_curve.png", title="x")
        summary = {"stage": launch.stage, "steps": STEPS, "tokens": 4096, "loss_first": 7.5, "loss_final": 4.0}
        summary.update({"mtp_loss_final": 4.5, "lr_final": 3e-4, "world_size": 1, "resumed_from": None})
        (out / "summary.json").write_text(json.dumps(summary))
        if launch.niah_cases is not None:
            answers = [
                {"length": n, "depth": d, "trial": t, "language": "en", "key": "Zorvik", "value": "12345"}
                | {"generated": "12345", "correct": not (n == 256 and d == 1.0 and t == 0)}
                for n in (128, 256)
                for d in (0.0, 1.0)
                for t in range(2)
            ]
            (out / "niah.json").write_text(json.dumps(answers))
        return _Done()


def stage_asset(tmp: Path):
    @asset(name="fake_context_stage", code_version="1")
    def _stage(
        context: AssetExecutionContext,
        preset: PresetResource,
        artifact_store: ArtifactStore,
        warehouse: Warehouse,
        trainer: TrainerLauncher,
    ):
        result, extra = train_stage(
            context,
            preset.get(),
            preset,
            artifact_store,
            warehouse,
            trainer,
            stage="context_stage1",
            asset_name="fake_context_stage",
            sections=("pretrain.seed",),
            upstream={},
            mixture_dir=tmp,
            init_from=None,
            niah_cases=[],
            finish=lambda staging: niah_build(staging, "fake NIAH exact match", 0.95),
        )
        return result.materialize_result(extra_metadata=extra)

    return _stage


def inline_png(value) -> bytes:
    prefix, data = value.value.split("(data:image/png;base64,", 1)
    assert prefix.startswith("![") and data.endswith(")")
    png = base64.b64decode(data[:-1])
    assert png[:8] == PNG_MAGIC and len(png) < 60_000
    return png


def test_a_stage_shows_tables_and_inline_plots_also_when_reused(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    resources = {
        "preset": PresetResource(),
        "artifact_store": store,
        "warehouse": Warehouse(path=str(tmp_path / "warehouse.duckdb")),
        "trainer": FilesOnlyTrainer(work_root=str(tmp_path / "training")),
    }
    stage = stage_asset(tmp_path)
    with DagsterInstance.ephemeral() as instance:
        runs = [materialize([stage], instance=instance, resources=resources) for _ in range(2)]
        first, second = (r.asset_materializations_for_node("fake_context_stage")[0].metadata for r in runs)
        folder = Path(first["dagster/uri"].value)
        assert (first["reused"].value, second["reused"].value) == (False, True)

        (final,) = [r.data for r in first["final_metrics"].records]
        assert (final["steps"], final["loss_final"], final["resumed_from"]) == (STEPS, 4.0, None)
        assert {c.name: c.type for c in first["final_metrics"].schema.columns}["steps"] == "int"
        assert inline_png(first["loss_curve"]) == (folder / LOSS_PLOT).read_bytes()
        grid = [r.data for r in first["niah_grid"].records]
        assert grid == [{"depth": 0.0, "len_128": 1.0, "len_256": 1.0}, {"depth": 1.0, "len_128": 1.0, "len_256": 0.5}]
        assert inline_png(first["niah_heatmap"]) == (folder / "niah_heatmap.png").read_bytes()
        for key in ("final_metrics", "loss_curve", "niah_grid", "niah_heatmap"):
            assert second[key] == first[key], key  # kept in provenance.json / read back from the artifact

        # an artifact committed by older code: provenance["build"] without tables and plots
        provenance = json.loads((folder / "provenance.json").read_text())
        provenance["build"] = {"metadata": provenance["build"]["metadata"], "markdown": {}}
        (folder / "provenance.json").write_text(json.dumps(provenance))
        old = materialize([stage], instance=instance, resources=resources)
        md = old.asset_materializations_for_node("fake_context_stage")[0].metadata
        assert md["reused"].value is True and md["steps"].value == STEPS
        assert "final_metrics" not in md and "niah_heatmap" not in md
        assert inline_png(md["loss_curve"]) == (folder / "loss_curve.png").read_bytes()  # the trainer's own
