"""The one pattern every asset follows: version -> reuse or build in staging -> commit -> DataVersion.

    result = materialize_versioned(context, store=..., warehouse=..., preset=preset,
                                   preset_sections=("data.languages",), upstream={...}, build=build)
    return result.materialize_result(check_results=[...])

``build(staging_dir)`` writes the artifact's files and returns a ``BuildResult`` whose metadata is kept
in provenance.json, so a reused artifact shows the same metadata as when it was built: plain values,
markdown (prose), tables (plain JSON from ``assets.metadata.table``, shown as native Dagster tables) and
plots (PNG files inside the artifact, shown inline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue

from assets.metadata import column_schema, png_value, table_value
from config import Preset
from resources.artifact_store import ArtifactRef, ArtifactStore, base_provenance, compute_version
from resources.warehouse import Warehouse


@dataclass(frozen=True)
class Upstream:
    version: str
    uri: str


@dataclass
class BuildResult:
    metadata: dict[str, Any] = field(default_factory=dict)  # plain JSON values
    markdown: dict[str, str] = field(default_factory=dict)  # prose, shown as markdown in the UI
    tables: dict[str, dict] = field(default_factory=dict)  # assets.metadata.table(...): native tables in the UI
    plots: dict[str, str] = field(default_factory=dict)  # key -> PNG file in the artifact, shown inline
    column_schema: str | None = None  # the name of a table in ``tables`` that is also dagster/column_schema

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metadata": self.metadata,
            "markdown": self.markdown,
            "tables": self.tables,
            "plots": self.plots,
        }
        if self.column_schema is not None:
            out["column_schema"] = self.column_schema
        return out

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> "BuildResult":
        """What ``to_json`` kept in provenance.json; keys written by older code may be missing."""
        return cls(
            metadata=dict(saved.get("metadata", {})),
            markdown=dict(saved.get("markdown", {})),
            tables=dict(saved.get("tables", {})),
            plots=dict(saved.get("plots", {})),
            column_schema=saved.get("column_schema"),
        )


@dataclass
class VersionedResult:
    ref: ArtifactRef
    build: BuildResult
    images: dict[str, bytes] = field(default_factory=dict)  # the bytes of build.plots, read from the artifact

    def metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {k: v for k, v in self.build.metadata.items()}
        md.update({k: MetadataValue.md(v) for k, v in self.build.markdown.items()})
        md.update({k: table_value(v) for k, v in self.build.tables.items()})
        md.update(
            {
                k: png_value(data, k.replace("_", " "), f"{self.ref.uri}/{self.build.plots[k]}")
                for k, data in self.images.items()
            }
        )
        if self.build.column_schema in self.build.tables:
            md["dagster/column_schema"] = MetadataValue.table_schema(
                column_schema(self.build.tables[self.build.column_schema])
            )
        md["dagster/uri"] = self.ref.uri
        md["artifact_version"] = self.ref.version
        md["reused"] = self.ref.reused
        return md

    def materialize_result(self, extra_metadata: dict[str, Any] | None = None, **kwargs: Any) -> MaterializeResult:
        return MaterializeResult(
            data_version=DataVersion(self.ref.version), metadata={**self.metadata(), **(extra_metadata or {})}, **kwargs
        )


def ensure_plot(result: VersionedResult, store: ArtifactStore, key: str, relpath: str) -> VersionedResult:
    """Show ``relpath`` (a PNG in the artifact) inline as ``key`` when the build did not declare a plot
    under that key: artifacts built before ``BuildResult.plots`` existed keep their chart in the UI."""
    if key not in result.images and store.fs.exists(store.path(result.ref.asset, result.ref.version, relpath)):
        with store.open(result.ref.asset, result.ref.version, relpath, "rb") as f:
            result.images[key] = f.read()
        result.build.plots.setdefault(key, relpath)
    return result


class UpstreamMissingError(RuntimeError):
    """An upstream artifact this asset reads has not been materialized (or was not versioned)."""


def latest_upstream(context: AssetExecutionContext, key: AssetKey | str, partition: str | None = None) -> Upstream:
    """The version and URI of the latest materialization of an upstream asset (or one partition)."""
    key = AssetKey(key) if isinstance(key, str) else key
    record = context.instance.get_latest_data_version_record(key, is_source=False, partition_key=partition)
    where = key.to_user_string() + (f" partition {partition!r}" if partition else "")
    if record is None or record.event_log_entry.asset_materialization is None:
        raise UpstreamMissingError(f"{where} has not been materialized yet; materialize it first")
    metadata = record.event_log_entry.asset_materialization.metadata
    if "artifact_version" not in metadata or "dagster/uri" not in metadata:
        raise UpstreamMissingError(f"{where}: latest materialization carries no artifact version/uri")
    return Upstream(version=metadata["artifact_version"].value, uri=metadata["dagster/uri"].value)


def asset_name(context: AssetExecutionContext) -> str:
    return context.asset_key.to_user_string().replace("/", "__")


def partition_artifact_name(asset: str, partition: str) -> str:
    """The artifact store name of one partition of a partitioned asset: ``<asset>__<partition>``."""
    return f"{asset}__{partition}"


def artifact_version(
    context: AssetExecutionContext,
    *,
    preset: Preset,
    preset_sections: Sequence[str],
    upstream: Mapping[str, Upstream],
    partition: str | None = None,
) -> tuple[str, str]:
    """(artifact name, version) this materialization will have: code version + upstream versions + preset
    slice. Known before building, so long builds can keep resumable state under it."""
    name = partition_artifact_name(asset_name(context), partition) if partition else asset_name(context)
    code_version = context.assets_def.code_versions_by_key[context.asset_key]
    version = compute_version(
        name, code_version, {k: u.version for k, u in upstream.items()}, preset.slice(*preset_sections)
    )
    return name, version


def artifact_run_key(context: AssetExecutionContext, **version_args: Any) -> str:
    """``<artifact name>-<version>``: names a build's resumable state (datatrove run folders, Slurm jobs)
    before it runs (``version_args``: those of ``artifact_version``)."""
    return "-".join(artifact_version(context, **version_args))


def materialize_versioned(
    context: AssetExecutionContext,
    *,
    store: ArtifactStore,
    warehouse: Warehouse,
    preset: Preset,
    preset_sections: Sequence[str],
    upstream: Mapping[str, Upstream],
    build: Callable[[Path], BuildResult],
    partition: str | None = None,
) -> VersionedResult:
    """``partition``: a partitioned asset versions each partition as its own artifact, named
    ``<asset>__<partition>`` (e.g. ``filtered_corpus__en``), at ``<root>/<asset>__<partition>/<version>/``."""
    name, version = artifact_version(
        context, preset=preset, preset_sections=preset_sections, upstream=upstream, partition=partition
    )
    code_version = context.assets_def.code_versions_by_key[context.asset_key]
    preset_slice = preset.slice(*preset_sections)

    if store.has(name, version):
        context.log.info(f"{name}: inputs unchanged, reusing {store.uri(name, version)}")
        saved = BuildResult.from_json(store.read_provenance(name, version).get("build", {}))
        images = {}
        for key, relpath in saved.plots.items():
            try:
                with store.open(name, version, relpath, "rb") as f:
                    images[key] = f.read()
            except FileNotFoundError:
                context.log.warning(f"{name}: plot {relpath} is not in {store.uri(name, version)}; not shown")
        return VersionedResult(ArtifactRef(name, version, store.uri(name, version), reused=True), saved, images)

    provenance = base_provenance(
        asset=name,
        version=version,
        code_version=code_version or "",
        preset_name=preset.name,
        preset_slice=preset_slice,
        upstream={k: {"version": u.version, "uri": u.uri} for k, u in upstream.items()},
    )
    with store.stage(name, version) as staging:
        built = build(staging)
        images = {key: (staging / relpath).read_bytes() for key, relpath in built.plots.items()}
        provenance["build"] = built.to_json()
        ref = store.commit(staging, name, version, provenance)
    warehouse.insert(
        "artifacts",
        [
            {
                "asset": name,
                "version": version,
                "uri": ref.uri,
                "code_version": code_version,
                "preset": preset.name,
                "git_commit": provenance["git_commit"],
            }
        ],
        replace_keys=("asset", "version"),
    )
    context.log.info(f"{name}: committed {ref.uri}")
    return VersionedResult(ref, built, images)
