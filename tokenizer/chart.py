"""The tokenizer report's bar chart (PNG), rendered headless."""

from __future__ import annotations

from pathlib import Path


def bytes_per_token_chart(rows: list[dict], path: Path, title: str, dpi: int = 80) -> None:
    """Bytes per token per domain, one bar per tokenizer; small (dpi 80 by default: shown inline in the UI)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    tokenizers = list(dict.fromkeys(r["tokenizer"] for r in rows))
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    by = {(r["tokenizer"], r["domain"]): r["bytes_per_token"] for r in rows}
    width = 0.8 / len(tokenizers)
    fig, ax = plt.subplots(figsize=(8, 4), dpi=dpi)
    for i, tok in enumerate(tokenizers):
        xs = [d + (i - (len(tokenizers) - 1) / 2) * width for d in range(len(domains))]
        bars = ax.bar(xs, [by[(tok, d)] for d in domains], width, label=tok)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(domains)), domains)
    ax.set_ylabel("bytes per token (higher is better)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})  # no timestamp/version: reproducible bytes
    plt.close(fig)
