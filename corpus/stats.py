"""Inventory statistics of a raw corpus source (pure: no Dagster)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from corpus.sources import Manifest, filesystem, iter_documents


def source_stats(manifest: Manifest, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Files, documents, UTF-8 bytes and characters of one source, reading every document once."""
    fs, _ = filesystem(manifest.uri, storage_options)
    documents = text_bytes = characters = 0
    for file in manifest.files:
        for doc in iter_documents(fs, file):
            documents += 1
            text_bytes += len(doc.text.encode("utf-8"))
            characters += len(doc.text)
    return {
        "source": manifest.source,
        "source_version": manifest.version,
        "uri": manifest.uri,
        "files": len(manifest.files),
        "file_bytes": manifest.total_bytes,
        "documents": documents,
        "text_bytes": text_bytes,
        "characters": characters,
        "mean_document_chars": characters / documents if documents else 0.0,
        "formats": dict(sorted(Counter(f.format for f in manifest.files).items())),
    }


def stats_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| source | files | documents | text MB | mean chars/doc | formats |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        formats = ", ".join(f"{k}:{v}" for k, v in r["formats"].items())
        lines.append(f"| {r['source']} | {r['files']} | {r['documents']} | {r['text_bytes'] / 1e6:.3f} | "
                     f"{r['mean_document_chars']:.0f} | {formats} |")
    total_docs = sum(r["documents"] for r in rows)
    total_bytes = sum(r["text_bytes"] for r in rows)
    lines.append(f"| **total** | {sum(r['files'] for r in rows)} | {total_docs} | {total_bytes / 1e6:.3f} | | |")
    return "\n".join(lines)
