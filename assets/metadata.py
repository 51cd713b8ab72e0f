"""Native Dagster metadata from plain JSON: tables and inline PNG plots.

A table is built as plain JSON with ``table(rows, columns)``::

    {"columns": [{"name": "step", "type": "string", "description": "..."}, ...], "rows": [{"step": "read", ...}]}

so it can be kept in an artifact's provenance.json (``BuildResult.tables``) and turned back into a
``MetadataValue.table`` (``table_value``) or a ``dagster/column_schema`` (``column_schema``) when the
artifact is reused. Plots are PNG files inside the artifact, shown inline in the UI as a markdown image
with a ``data:`` URI (``inline_png``); they live in the event log, so keep them small (dpi ~80).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Iterable, Mapping, Sequence, Union

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

COLUMN_TYPES = ("string", "int", "float", "bool")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The event log keeps every byte: larger images are reduced to a 256-colour palette before they are
# inlined, and any still above MAX_INLINE_PNG_BYTES are linked (MetadataValue.path) instead.
SMALL_PNG_BYTES = 60_000
MAX_INLINE_PNG_BYTES = 256_000

# a column: "name" (type inferred from the values), (name, type), (name, type, description) or a dict
ColumnSpec = Union[str, Sequence[str], Mapping[str, str]]


def _infer_type(values: Iterable[Any]) -> str:
    types = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            types.add("bool")
        elif isinstance(v, int):
            types.add("int")
        elif isinstance(v, float):
            types.add("float")
        else:
            types.add("string")
    if not types:
        return "string"
    if types == {"int", "float"}:
        return "float"
    return types.pop() if len(types) == 1 else "string"


def _column(spec: ColumnSpec, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    if isinstance(spec, str):
        spec = {"name": spec}
    elif not isinstance(spec, Mapping):
        spec = dict(zip(("name", "type", "description"), spec))
    column = {"name": str(spec["name"]), "type": spec.get("type") or _infer_type(r.get(spec["name"]) for r in rows)}
    if column["type"] not in COLUMN_TYPES:
        raise ValueError(f"column {column['name']!r}: type {column['type']!r} is not one of {COLUMN_TYPES}")
    if spec.get("description"):
        column["description"] = str(spec["description"])
    return column


def _cell(value: Any, type_: str) -> str | int | float | bool | None:
    if value is None:
        return None
    if type_ == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        return str(value)
    if type_ == "bool":
        return bool(value)
    if type_ == "int":
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None  # JSON (provenance) has no NaN / inf


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[ColumnSpec] | None = None) -> dict[str, Any]:
    """A table as plain JSON: ``{"columns": [{"name", "type", "description"?}], "rows": [{...}]}``.

    ``columns`` fixes the columns and their order: a name (type inferred from the values: bool, int, float,
    else string), ``(name, type)``, ``(name, type, description)`` or such a dict; by default, the keys of
    the first row. Every row gets every column (missing values are ``None``, other keys are dropped) and
    each value is coerced to its column's type (dicts and lists become JSON strings)."""
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    cols = [_column(c, rows) for c in columns]
    names = [c["name"] for c in cols]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names in {names}")
    return {"columns": cols, "rows": [{c["name"]: _cell(r.get(c["name"]), c["type"]) for c in cols} for r in rows]}


def column_schema(spec: Mapping[str, Any]) -> TableSchema:
    """The ``TableSchema`` of a ``table(...)`` (e.g. for ``dagster/column_schema``)."""
    return TableSchema(
        columns=[TableColumn(c["name"], c["type"], description=c.get("description")) for c in spec["columns"]]
    )


def table_value(spec: Mapping[str, Any]) -> MetadataValue:
    """A ``table(...)`` (or its JSON round trip) as a native ``MetadataValue.table``."""
    return MetadataValue.table(
        records=[TableRecord(dict(r)) for r in spec["rows"]],
        schema=column_schema(spec),
    )


def inline_png(data: bytes, alt: str = "plot") -> str:
    """Markdown that shows PNG ``data`` inline (a ``data:`` URI): Dagster's UI renders it in the metadata."""
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"{alt}: not a PNG")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})"


def shrink_png(data: bytes) -> bytes:
    """``data`` itself when it is small (< ``SMALL_PNG_BYTES``), else the image with a 256-colour palette
    (about a third of the bytes for a matplotlib chart), whichever is smaller."""
    if len(data) < SMALL_PNG_BYTES:
        return data
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").quantize(256).save(out, "PNG", optimize=True)
    return min(data, out.getvalue(), key=len)


def png_value(data: bytes, alt: str, uri: str | None = None) -> MetadataValue:
    """An inline PNG (``MetadataValue.md``, shrunk if large), or a link to ``uri`` when it is still too large."""
    data = shrink_png(data)
    if len(data) > MAX_INLINE_PNG_BYTES and uri is not None:
        return MetadataValue.path(uri)
    return MetadataValue.md(inline_png(data, alt))
