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
    lines = ["| source | files | documents | text MB | mean chars/doc | formats |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        formats = ", ".join(f"{k}:{v}" for k, v in r["formats"].items())
        lines.append(
            f"| {r['source']} | {r['files']} | {r['documents']} | {r['text_bytes'] / 1e6:.3f} | "
            f"{r['mean_document_chars']:.0f} | {formats} |"
        )
    total_docs = sum(r["documents"] for r in rows)
    total_bytes = sum(r["text_bytes"] for r in rows)
    lines.append(f"| **total** | {sum(r['files'] for r in rows)} | {total_docs} | {total_bytes / 1e6:.3f} | | |")
    return "\n".join(lines)


def pipeline_markdown(summary: Mapping[str, Any]) -> str:
    """Docs and bytes in/out of every step of one corpus partition run (filtered or deduplicated)."""
    lines = ["| step | docs in | docs out | dropped | MB in | MB out |", "|---|---:|---:|---:|---:|---:|"]
    for s in summary["steps"]:
        lines.append(
            f"| {s['step']} | {s['docs_in']} | {s['docs_out']} | {s['docs_dropped']} | "
            f"{s['bytes_in'] / 1e6:.3f} | {s['bytes_out'] / 1e6:.3f} |"
        )
    totals = summary.get("totals", {})
    purity = summary.get("language_purity")
    notes = [
        f"kept {totals.get('docs_out', 0)} of {totals.get('docs_in', 0)} documents",
        f"{totals.get('docs_excluded', 0)} in the exclusion output",
        "all accounted for" if totals.get("all_accounted_for") else "NOT all accounted for",
        f"language purity {purity:.4f}" if purity is not None else "language purity n/a",
    ]
    if "dedup_rate" in summary:
        notes.append(f"dedup rate {summary['dedup_rate']:.4f}")
    return "\n".join(lines) + "\n\n" + "; ".join(notes)


def rejections_markdown(summary: Mapping[str, Any]) -> str:
    rows = summary.get("rejections", [])
    if not rows:
        return "nothing rejected"
    lines = ["| step | reason | documents | bytes |", "|---|---|---:|---:|"]
    lines += [f"| {r['step']} | {r['reason']} | {r['documents']} | {r['bytes']} |" for r in rows]
    return "\n".join(lines)
