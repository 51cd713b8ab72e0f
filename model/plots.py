"""Training plots written next to checkpoints (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence


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


def training_curves_png(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str, dpi: int = 80) -> Path:
    """A stage's per-step metrics (``metrics.jsonl`` rows: ``step``, ``lm_loss``, ``mtp_loss``, ``lr``):
    the losses on the left, the learning rate on the right; written to ``path`` (small: shown inline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("training_curves_png needs at least one metrics row")
    steps = [r["step"] for r in rows]
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(8, 3), dpi=dpi, gridspec_kw={"width_ratios": [2, 1]})
    policy = all("mean_reward" in r for r in rows)  # an RL / preference stage: reward per rollout round
    for metric in ("mean_reward", "share_filtered") if policy else ("lm_loss", "mtp_loss"):
        if all(metric in r for r in rows):
            loss_ax.plot(steps, [r[metric] for r in rows], linewidth=1.2, label=metric)
    loss_ax.set_xlabel("rollout round" if policy else "optimizer step (global)")
    loss_ax.set_ylabel("reward / share" if policy else "loss (nats)")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    loss_ax.set_title(title, fontsize=10)
    if all("lr" in r for r in rows):
        lr_ax.plot(steps, [r["lr"] for r in rows], color="tab:green", linewidth=1.2)
    lr_ax.set_xlabel("optimizer step (global)")
    lr_ax.set_ylabel("learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    lr_ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", metadata={"Software": None})  # no timestamp/version: reproducible bytes
    plt.close(fig)
    return path
