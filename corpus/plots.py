"""The corpus pipeline's chart (PNG), rendered headless: documents kept and dropped at every step."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence


def pipeline_steps_png(steps: Sequence[Mapping[str, Any]], path: str | Path, *, title: str, dpi: int = 80) -> Path:
    """One horizontal bar per pipeline step (``corpus.pipeline`` summary ``steps``: ``step``, ``docs_out``,
    ``docs_dropped``), kept documents and the ones the step dropped stacked; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    names = [s["step"] for s in steps]
    kept = [s["docs_out"] for s in steps]
    dropped = [s["docs_dropped"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.4), dpi=dpi)
    ys = range(len(names))
    ax.barh(ys, kept, color="#4c9f70", label="kept")
    bars = ax.barh(ys, dropped, left=kept, color="#d1495b", label="dropped")
    ax.bar_label(bars, labels=[str(d) if d else "" for d in dropped], fontsize=7, padding=2)
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.invert_yaxis()  # first step on top
    ax.set_xlabel("documents")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.margins(x=0.08)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", metadata={"Software": None})  # no timestamp/version: reproducible bytes
    plt.close(fig)
    return path
