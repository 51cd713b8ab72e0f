"""Each value with its source beside it.

A preset module writes every value as ``S(value, source)``::

    num_layers=S(48, "report Table 1 / §2.1"),
    padded_vocab_size=S(2048, "tiny: 1536 tokens padded to a multiple of 128"),

``split_sources`` turns that tree into the plain ``Preset`` the code reads and a ``{dotted path: source}``
table. A source starts with ``report`` (the K-EXAONE technical report as summarised in ``k-exaone.md``), a
paper or library default it names, or ``choice:`` / ``tiny:`` (a project decision where the report is silent,
kept visible). ``tests/unit/test_presets.py`` checks that every leaf of every preset has exactly one source.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Sourced:
    value: Any
    source: str


def S(value: Any, source: str) -> Any:
    """``value``, annotated with where it comes from (typed ``Any`` so it fits any schema field)."""
    if not source.strip():
        raise ValueError(f"empty source for {value!r}")
    return Sourced(value, source)


def split_sources(tree: Any, prefix: str = "") -> tuple[Any, dict[str, str]]:
    """(the tree with every ``S(value, source)`` replaced by its value, {dotted path: source})."""
    sources: dict[str, str] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, Sourced):
            inner, nested = split_sources(node.value, path)
            if nested:
                raise ValueError(f"{path}: a sourced value holds sourced values inside ({sorted(nested)[0]})")
            sources[path] = node.source
            return inner
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            changes = {f.name: walk(getattr(node, f.name), _join(path, f.name)) for f in dataclasses.fields(node)}
            return dataclasses.replace(node, **changes)
        if isinstance(node, dict):
            return {key: walk(value, _join(path, str(key))) for key, value in node.items()}
        return node

    plain = walk(tree, prefix)
    return plain, sources


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
