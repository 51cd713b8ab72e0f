"""Training plots written next to checkpoints (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def loss_curve_png(steps: Sequence[int], losses: Sequence[float], path: str | Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(list(steps), list(losses), linewidth=1.2)
    ax.set_xlabel("optimizer step (global)")
    ax.set_ylabel("LM loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
