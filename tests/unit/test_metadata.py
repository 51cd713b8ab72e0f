"""assets/metadata.py and BuildResult: native Dagster tables from plain JSON (typed columns, a round trip
through provenance.json, old provenance without the new keys) and inline PNG plots."""

from __future__ import annotations

import base64
import io
import json
import math
import random

import pytest
from dagster import MetadataValue, TableMetadataValue, TableSchema

from assets.metadata import (
    PNG_MAGIC,
    SMALL_PNG_BYTES,
    column_schema,
    inline_png,
    png_value,
    table,
    table_value,
)
from assets.versioning import BuildResult, VersionedResult
from resources.artifact_store import ArtifactRef

INLINE = "data:image/png;base64,"


def decoded_png(value) -> bytes:
    """The PNG bytes behind an inline-plot metadata value (a markdown image with a data: URI)."""
    assert isinstance(value, MetadataValue) and value.value.startswith("![")
    data = base64.b64decode(value.value.split(INLINE, 1)[1].rstrip(")"))
    assert data[:8] == PNG_MAGIC
    return data


def _png(width: int = 40, height: int = 20, noise: bool = False) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height), (200, 30, 30))
    if noise:  # incompressible pixels: a large PNG
        image = Image.frombytes("RGB", (width, height), random.Random(0).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_table_infers_types_fills_missing_values_and_coerces():
    t = table(
        [
            {"name": "a", "n": 1, "x": 1, "ok": True, "extra": {"b": 2, "a": 1}, "ignored": 0},
            {"name": "b", "n": 2, "x": 2.5, "ok": False},
        ],
        ["name", "n", "x", "ok", "extra"],
    )
    assert [(c["name"], c["type"]) for c in t["columns"]] == [
        ("name", "string"),
        ("n", "int"),
        ("x", "float"),  # ints and floats together: float
        ("ok", "bool"),  # bool before int
        ("extra", "string"),
    ]
    assert t["rows"] == [
        {"name": "a", "n": 1, "x": 1.0, "ok": True, "extra": '{"a": 1, "b": 2}'},
        {"name": "b", "n": 2, "x": 2.5, "ok": False, "extra": None},  # missing -> None, "ignored" dropped
    ]


def test_table_with_declared_columns_and_descriptions():
    t = table(
        [{"step": "read", "docs": 3, "share": float("nan")}],
        [("step", "string"), ("docs", "float", "documents"), {"name": "share", "type": "float"}],
    )
    assert t["columns"] == [
        {"name": "step", "type": "string"},
        {"name": "docs", "type": "float", "description": "documents"},
        {"name": "share", "type": "float"},
    ]
    assert t["rows"] == [{"step": "read", "docs": 3.0, "share": None}]  # NaN is not JSON: None
    assert table([{"a": 1, "b": "x"}])["columns"] == [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]
    with pytest.raises(ValueError, match="not one of"):
        table([{"a": 1}], [("a", "decimal")])
    with pytest.raises(ValueError, match="duplicate"):
        table([{"a": 1}], ["a", "a"])


def test_table_value_is_a_native_dagster_table_after_a_json_round_trip():
    t = table(
        [{"domain": "en", "documents": 12, "superbpe": 4.321, "ok": True}],
        [("domain", "string"), ("documents", "int", "held-out documents"), "superbpe", "ok"],
    )
    value = table_value(json.loads(json.dumps(t)))
    assert isinstance(value, TableMetadataValue)
    assert [r.data for r in value.records] == [{"domain": "en", "documents": 12, "superbpe": 4.321, "ok": True}]
    assert [(c.name, c.type, c.description) for c in value.schema.columns] == [
        ("domain", "string", None),
        ("documents", "int", "held-out documents"),
        ("superbpe", "float", None),
        ("ok", "bool", None),
    ]
    assert isinstance(column_schema(t), TableSchema)
    empty = table_value(table([], [("step", "string"), ("documents", "int")]))  # nothing rejected: still a table
    assert empty.records == [] and [c.name for c in empty.schema.columns] == ["step", "documents"]


def test_build_result_round_trips_through_provenance_and_old_provenance_still_loads():
    built = BuildResult(
        metadata={"documents": 3},
        markdown={"note": "*prose*"},
        tables={"sources": table([{"source": "en", "documents": 3}])},
        plots={"chart": "chart.png"},
        column_schema="sources",
    )
    saved = json.loads(json.dumps(built.to_json()))  # what provenance.json keeps
    assert BuildResult.from_json(saved) == built
    old = BuildResult.from_json({"metadata": {"documents": 3}, "markdown": {"sources": "| en | 3 |"}})
    assert old == BuildResult(metadata={"documents": 3}, markdown={"sources": "| en | 3 |"})
    assert BuildResult.from_json({}) == BuildResult()


def test_versioned_result_metadata_renders_tables_plots_and_column_schema():
    png = _png()
    built = BuildResult(
        metadata={"documents": 3},
        markdown={"note": "*prose*"},
        tables={"sources": table([{"source": "en", "documents": 3}])},
        plots={"steps_chart": "steps.png"},
        column_schema="sources",
    )
    ref = ArtifactRef("raw_corpus_stats", "v1", "/store/raw_corpus_stats/v1", reused=True)
    md = VersionedResult(
        ref, BuildResult.from_json(json.loads(json.dumps(built.to_json()))), {"steps_chart": png}
    ).metadata()
    assert md["documents"] == 3 and md["note"] == MetadataValue.md("*prose*")
    assert [r.data for r in md["sources"].records] == [{"source": "en", "documents": 3}]
    assert md["dagster/column_schema"].schema == column_schema(built.tables["sources"])
    assert md["steps_chart"].value.startswith("![steps chart](" + INLINE) and decoded_png(md["steps_chart"]) == png
    assert (md["dagster/uri"], md["artifact_version"], md["reused"]) == (ref.uri, "v1", True)


def test_inline_pngs_are_shrunk_or_linked_when_large(monkeypatch):
    import assets.metadata

    with pytest.raises(ValueError, match="not a PNG"):
        inline_png(b"GIF89a", "x")
    small = _png()
    assert decoded_png(png_value(small, "x")) == small  # small: as is
    big = _png(300, 200, noise=True)
    assert len(big) > SMALL_PNG_BYTES
    shrunk = decoded_png(png_value(big, "x"))  # a 256-colour palette
    assert len(shrunk) < len(big) / 2
    monkeypatch.setattr(assets.metadata, "MAX_INLINE_PNG_BYTES", 1000)  # still too large: linked instead
    assert png_value(big, "x", uri="/store/a/v/x.png") == MetadataValue.path("/store/a/v/x.png")


def test_plots_are_small_pngs(tmp_path):
    from corpus.plots import pipeline_steps_png
    from model.plots import training_curves_png

    steps = [
        {"step": s, "docs_out": 100 - 5 * i, "docs_dropped": 5 if i else 0}
        for i, s in enumerate(["read", "url", "language_id", "gopher_quality", "pii"])
    ]
    rows = [
        {"step": i, "lm_loss": 8 * math.exp(-i / 20) + 2, "mtp_loss": 9 * math.exp(-i / 20) + 2, "lr": 3e-4}
        for i in range(1, 65)
    ]
    for path in (
        pipeline_steps_png(steps, tmp_path / "steps.png", title="filtered_corpus en"),
        training_curves_png(rows, tmp_path / "loss.png", title="pretrain_stage1"),
    ):
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and 1000 < len(data) < 60_000, (path.name, len(data))
    with pytest.raises(ValueError, match="at least one"):
        training_curves_png([], tmp_path / "none.png", title="x")


def test_corpus_partition_metadata_has_steps_and_rejections_tables_and_a_chart(tmp_path):
    from assets.corpus_pipeline import STEPS_PLOT, _build_result

    summary = {
        "partition": "en",
        "totals": {
            "docs_in": 10,
            "docs_out": 7,
            "bytes_in": 1000,
            "bytes_out": 700,
            "docs_excluded": 3,
            "all_accounted_for": True,
        },
        "language_purity": 0.99,
        "steps": [
            {"step": "read", "docs_in": 10, "docs_out": 10, "docs_dropped": 0, "bytes_in": 1000, "bytes_out": 1000},
            {"step": "url", "docs_in": 10, "docs_out": 7, "docs_dropped": 3, "bytes_in": 1000, "bytes_out": 700},
        ],
        "rejections": [{"step": "url", "reason": "blocklist", "documents": 3, "bytes": 300}],
    }
    built = _build_result(tmp_path, "filtered_corpus en", summary)
    assert built.plots == {"steps_chart": STEPS_PLOT} and (tmp_path / STEPS_PLOT).read_bytes()[:8] == PNG_MAGIC
    md = VersionedResult(
        ArtifactRef("filtered_corpus__en", "v", "/s/v", reused=False),
        built,
        {"steps_chart": (tmp_path / STEPS_PLOT).read_bytes()},
    ).metadata()
    assert [r.data["docs_dropped"] for r in md["steps"].records] == [0, 3]
    assert md["rejections"].records[0].data == {"step": "url", "reason": "blocklist", "documents": 3, "bytes": 300}
    assert {c.name: c.type for c in md["steps"].schema.columns}["bytes_out"] == "int"
    decoded_png(md["steps_chart"])
    (tmp_path / "again").mkdir()
    nothing = _build_result(tmp_path / "again", "x", {**summary, "rejections": []})
    assert nothing.tables["rejections"]["rows"] == []  # still a table (its columns), with no rows
