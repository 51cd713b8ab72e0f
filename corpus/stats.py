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
