"""Lineage from provenance: the exact artifact versions behind an artifact, back to the raw corpus data versions.

Every artifact's ``provenance.json`` names its inputs (``upstream``: role -> {version, uri}). Following them
from one artifact gives the chain it was built from; the raw corpus sources end it (their data version is
the content hash of the folder or prefix the observation saw). ``kexaone lineage ASSET`` prints it, and the
checkpoint assets show it as a table in their metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resources.artifact_store import ArtifactStore


class LineageError(RuntimeError):
    """An artifact of the chain is missing or its provenance does not name its inputs."""


@dataclass(frozen=True)
class LineageNode:
    artifact: str  # artifact name (``<asset>`` or ``<asset>__<partition>``), or the raw source's asset key
    version: str  # artifact version, or the source's observed data version
    uri: str
    inputs: tuple[tuple[str, str, str], ...]  # (role, artifact, version), sorted by role
    source: bool  # a raw corpus source (no provenance of its own)
    created_at: str | None = None
    code_version: str | None = None
    preset: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "version": self.version,
            "kind": "raw source" if self.source else "artifact",
            "built": self.created_at or "",
            "inputs": ", ".join(f"{a}@{v}" for _, a, v in self.inputs),
        }


def artifact_of_uri(uri: str, version: str) -> str | None:
    """The artifact name in a store URI ``<root>/<artifact>/<version>``; None if it is not one (a source)."""
    parts = uri.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] == version else None


def lineage(store: ArtifactStore, artifact: str, version: str) -> list[LineageNode]:
    """Every artifact and source ``artifact@version`` was built from, each once: itself first, every artifact
    before the inputs it names (newest first, as in a curriculum read backwards), the raw sources last."""
    if not store.has(artifact, version):
        raise LineageError(f"no committed artifact {artifact}/{version} in {store.root}")
    nodes: dict[tuple[str, str], LineageNode] = {}
    stack: list[tuple[str, str, str, bool]] = [(artifact, version, store.uri(artifact, version), False)]
    while stack:
        name, ver, uri, is_source = stack.pop()
        if (name, ver) in nodes:
            continue
        if is_source:
            nodes[(name, ver)] = LineageNode(artifact=name, version=ver, uri=uri, inputs=(), source=True)
            continue
        if not store.has(name, ver):
            raise LineageError(f"{artifact}/{version} was built from {name}/{ver}, which is no longer in the store")
        prov = store.read_provenance(name, ver)
        inputs = []
        for role, up in sorted(prov.get("upstream", {}).items()):
            up_name = artifact_of_uri(up["uri"], up["version"])
            source = up_name is None or not store.has(up_name, up["version"])
            up_name = role if source else up_name
            inputs.append((role, up_name, up["version"]))
            stack.append((up_name, up["version"], up["uri"], source))
        nodes[(name, ver)] = LineageNode(
            artifact=name,
            version=ver,
            uri=uri,
            inputs=tuple(inputs),
            source=False,
            created_at=prov.get("created_at"),
            code_version=prov.get("code_version"),
            preset=prov.get("preset"),
        )
    # consumers before their inputs (Kahn's order on "is an input of"), ties by name; sources at the end
    consumers = {key: 0 for key in nodes}
    for node in nodes.values():
        for _, name, ver in node.inputs:
            consumers[(name, ver)] += 1
    ready = sorted(key for key, n in consumers.items() if n == 0)
    order: list[LineageNode] = []
    while ready:
        key = ready.pop(0)
        order.append(nodes[key])
        for _, name, ver in nodes[key].inputs:
            consumers[(name, ver)] -= 1
            if consumers[(name, ver)] == 0:
                ready = sorted([*ready, (name, ver)])
    return [n for n in order if not n.source] + [n for n in order if n.source]


def format_lineage(nodes: list[LineageNode]) -> str:
    """Each artifact with its version, build time and code version, then its inputs one per line (role,
    artifact@version); the raw sources last with the folder or prefix they were observed at."""
    lines = []
    for n in nodes:
        if n.source:
            lines.append(f"{n.artifact}@{n.version}  raw source: {n.uri}")
            continue
        lines.append(
            f"{n.artifact}@{n.version}  built {n.created_at or '?'}, code v{n.code_version}, preset {n.preset}"
        )
        width = max((len(role) for role, _, _ in n.inputs), default=0)
        lines += [f"    {role:<{width}}  {name}@{ver}" for role, name, ver in n.inputs]
    return "\n".join(lines)
