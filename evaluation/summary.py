"""The evaluation summary: one markdown page a person reads to see the whole chain (no Dagster).

corpus stats -> tokenizer efficiency -> loss curves -> NIAH heatmaps (pass / fail per stage) ->
short-context perplexity drift -> post-training (held-out pass@1 per checkpoint and mode, rubric score, long
context after post-training). The inputs are small typed records the ``evaluation_summary`` asset fills
from warehouse rows; images are linked by a path relative to the markdown (the asset copies the PNGs next
to it), so the page renders wherever the artifact folder is opened.

``evaluation_summary_markdown(sections)`` renders the page; ``drift_plot_png(rows, path)`` draws the
perplexity-per-domain chart the drift section links.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from evaluation.perplexity import drift

# The checkpoint chain (asset names), in training order: x axis of the drift plot, columns of its table.
CHAIN_ORDER = ("pretrain_stage1", "pretrain_stage2", "pretrain_stage3", "context_ext_stage1", "context_ext_stage2")


@dataclass(frozen=True)
class CorpusStat:
    """One corpus source (raw_corpus_stats, and corpus_partition_stats' docs_out where built)."""

    source: str  # en, ko, es, de, ja, vi, code, stem
    documents: int  # raw documents
    text_bytes: int
    filtered_documents: int | None = None  # filtered_corpus docs_out
    deduplicated_documents: int | None = None  # deduplicated_corpus docs_out


@dataclass(frozen=True)
class TokenizerEfficiency:
    """One tokenizer_efficiency row: held-out bytes per token of one tokenizer on one domain."""

    tokenizer: str  # base | plain_bpe | superbpe
    domain: str
    bytes_per_token: float  # higher is better


@dataclass(frozen=True)
class LossCurve:
    checkpoint: str  # a CHAIN_ORDER name
    image: str  # PNG path relative to the markdown
    final_lm_loss: float | None = None
    steps: int | None = None


@dataclass(frozen=True)
class NiahStage:
    stage: str  # context_ext_stage1 | context_ext_stage2
    image: str  # heatmap PNG path relative to the markdown
    accuracy: float  # mean retrieval accuracy over the length x depth grid
    threshold: float  # eval.niah_threshold
    passed: bool  # the NIAH gate's verdict (the gate decides; the page only reports it)


@dataclass(frozen=True)
class DriftSection:
    """Short-context perplexity per checkpoint and domain, and the drift check against ``baseline``."""

    rows: Sequence[Mapping]  # {"checkpoint": ..., "domain": ..., "perplexity": ...} (warehouse-row shape)
    baseline: str  # the checkpoint drift is measured against, normally pretrain_stage3
    tolerance: float  # eval.short_context_ppl_tolerance (relative)
    image: str | None = None  # the drift_plot_png chart, relative to the markdown


@dataclass(frozen=True)
class PostTrainingSection:
    """``post_training_eval``: its rows (``evaluation.posttrain_eval.EvalRow`` fields), the checkpoints in chain
    order, and the stage-2 NIAH of the final checkpoint (its blocking check's verdict)."""

    rows: Sequence[Mapping]
    checkpoints: Sequence[str]
    niah_accuracy: float
    niah_passed: bool
    threshold: float  # eval.niah_threshold
    image: str | None = None  # pass@1 bars, relative to the markdown


@dataclass(frozen=True)
class EvaluationSections:
    corpus: Sequence[CorpusStat] = ()
    tokenizer: Sequence[TokenizerEfficiency] = ()
    loss_curves: Sequence[LossCurve] = ()
    niah: Sequence[NiahStage] = ()
    drift: DriftSection | None = None
    post_training: PostTrainingSection | None = None
    title: str = "K-EXAONE evaluation summary"
    notes: Sequence[str] = field(default_factory=tuple)  # lines under the title (preset, versions, ...)


NOT_AVAILABLE = "_Not available: the asset that produces it has not been materialized._"


def _relative_image(path: str) -> str:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or "://" in path or ".." in p.parts:
        raise ValueError(f"image path {path!r} must be relative to the summary and stay inside its folder")
    return path


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _checkpoint_order(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in CHAIN_ORDER]
    if unknown:
        raise ValueError(f"unknown checkpoint(s) {', '.join(unknown)} (the chain is {', '.join(CHAIN_ORDER)})")
    return [n for n in CHAIN_ORDER if n in names]


def _perplexity_by_checkpoint(rows: Iterable[Mapping]) -> dict[str, dict[str, float]]:
    """checkpoint -> domain -> perplexity, checkpoints in chain order, domains sorted (row order is arbitrary)."""
    rows = list(rows)
    for r in rows:
        missing = {"checkpoint", "domain", "perplexity"} - set(r)
        if missing:
            raise ValueError(f"perplexity row {dict(r)!r} lacks {', '.join(sorted(missing))}")
    by: dict[str, dict[str, float]] = {c: {} for c in _checkpoint_order(r["checkpoint"] for r in rows)}
    for r in sorted(rows, key=lambda r: r["domain"]):
        by[r["checkpoint"]][r["domain"]] = float(r["perplexity"])
    return by


def _corpus(stats: Sequence[CorpusStat]) -> list[str]:
    if not stats:
        return [NOT_AVAILABLE]
    rows = [
        (
            s.source,
            _count(s.documents),
            _count(s.text_bytes),
            _count(s.filtered_documents),
            _count(s.deduplicated_documents),
        )
        for s in stats
    ]

    def total_of(values: list[int | None]) -> int | None:  # unknown anywhere -> unknown in total
        return None if any(v is None for v in values) else sum(values)

    total = (
        "**total**",
        _count(sum(s.documents for s in stats)),
        _count(sum(s.text_bytes for s in stats)),
        _count(total_of([s.filtered_documents for s in stats])),
        _count(total_of([s.deduplicated_documents for s in stats])),
    )
    return _table(("source", "raw documents", "bytes", "after filters", "after dedup"), [*rows, total])


def _tokenizer(rows: Sequence[TokenizerEfficiency]) -> list[str]:
    if not rows:
        return [NOT_AVAILABLE]
    tokenizers = list(dict.fromkeys(r.tokenizer for r in rows))
    domains = list(dict.fromkeys(r.domain for r in rows))
    by = {(r.tokenizer, r.domain): r.bytes_per_token for r in rows}
    body = [(d, *(f"{by[(t, d)]:.2f}" if (t, d) in by else "-" for t in tokenizers)) for d in domains]
    return ["Held-out bytes per token (higher is better)."] + [""] + _table(("domain", *tokenizers), body)


def _loss_curves(curves: Sequence[LossCurve]) -> list[str]:
    if not curves:
        return [NOT_AVAILABLE]
    by = {c.checkpoint: c for c in curves}
    lines: list[str] = []
    for name in _checkpoint_order(by):
        c = by[name]
        facts = [
            f"{c.steps} steps" if c.steps is not None else "",
            f"final LM loss {c.final_lm_loss:.3f}" if c.final_lm_loss is not None else "",
        ]
        facts = ", ".join(f for f in facts if f)
        lines += [
            f"**{name}**" + (f" ({facts})" if facts else ""),
            "",
            f"![loss curve {name}]({_relative_image(c.image)})",
            "",
        ]
    return lines[:-1]


def _niah(stages: Sequence[NiahStage]) -> list[str]:
    if not stages:
        return [NOT_AVAILABLE]
    table = _table(
        ("stage", "mean accuracy", "threshold", "gate"),
        [(s.stage, f"{s.accuracy:.3f}", f"{s.threshold:.2f}", "PASS" if s.passed else "FAIL") for s in stages],
    )
    images: list[str] = []
    for s in stages:
        images += ["", f"![NIAH heatmap {s.stage}]({_relative_image(s.image)})"]
    return table + images


def _drift(section: DriftSection | None) -> list[str]:
    if section is None or not section.rows:
        return [NOT_AVAILABLE]
    by = _perplexity_by_checkpoint(section.rows)
    if section.baseline not in by:
        raise ValueError(f"drift baseline {section.baseline!r} has no perplexity rows (have: {', '.join(by)})")
    base = by[section.baseline]
    later = [c for c in by if CHAIN_ORDER.index(c) > CHAIN_ORDER.index(section.baseline)]
    flagged = {c: {d.domain: d for d in drift(base, by[c], section.tolerance)} for c in later}

    def cell(checkpoint: str, domain: str) -> str:
        value = by[checkpoint].get(domain)
        if value is None:
            return "-"
        text = f"{value:.2f}"
        if checkpoint in flagged:
            rise = value / base[domain] - 1
            text += f" ({rise:+.1%})" + (" **over**" if domain in flagged[checkpoint] else "")
        return text

    domains = list(dict.fromkeys(d for values in by.values() for d in values))
    lines = [
        f"Held-out perplexity at the pre-training sequence length. Baseline: `{section.baseline}`;"
        f" a rise above {section.tolerance * 100:g}% is flagged.",
        "",
    ]
    lines += _table(("domain", *by), [(d, *(cell(c, d) for c in by)) for d in domains])
    over = [
        f"`{c}` {d.domain} {d.baseline:.2f} -> {d.now:.2f} ({d.relative_rise:+.1%})"
        for c in later
        for d in flagged[c].values()
    ]
    lines += [
        "",
        ("**Drift over tolerance:** " + "; ".join(over))
        if over
        else f"No domain rose more than {section.tolerance * 100:g}% over `{section.baseline}`.",
    ]
    if section.image:
        lines += ["", f"![short-context perplexity per domain]({_relative_image(section.image)})"]
    return lines


def _post_training(section: PostTrainingSection | None) -> list[str]:
    if section is None or not section.rows:
        return [NOT_AVAILABLE]
    from evaluation.posttrain_eval import EvalRow, comparison_markdown

    rows = [EvalRow(**dict(r)) for r in section.rows]
    lines = ["Held-out prompts (never trained on), the report's decoding; pass@1 averaged over k samples.", ""]
    lines += comparison_markdown(rows, section.checkpoints).strip().splitlines()
    rubric = {}
    for c in section.checkpoints:
        mine = [r for r in rows if r.checkpoint == c and r.rubric_score is not None]
        if mine:
            rubric[c] = sum(r.rubric_score * r.samples for r in mine) / sum(r.samples for r in mine)
    if rubric:
        lines += ["", "Mean rubric score (offline judge, [0, 1], over every domain and mode):", ""]
        lines += _table(tuple(rubric), [tuple(f"{v:.3f}" for v in rubric.values())])
    verdict = "PASS" if section.niah_passed else "FAIL"
    lines += [
        "",
        f"Long context after post-training (`{section.checkpoints[-1]}` on the stage-2 NIAH grid): mean accuracy "
        f"{section.niah_accuracy:.3f}, every cell >= {section.threshold:.2f}: **{verdict}**.",
    ]
    if section.image:
        lines += ["", f"![held-out pass@1 per checkpoint]({_relative_image(section.image)})"]
    return lines


SECTION_TITLES = (
    "Corpus",
    "Tokenizer efficiency",
    "Training loss",
    "Needle in a haystack",
    "Short-context drift",
    "Post-training",
)


def evaluation_summary_markdown(sections: EvaluationSections) -> str:
    """The whole chain on one page; a section with no input says so instead of disappearing."""
    bodies = (
        _corpus(sections.corpus),
        _tokenizer(sections.tokenizer),
        _loss_curves(sections.loss_curves),
        _niah(sections.niah),
        _drift(sections.drift),
        _post_training(sections.post_training),
    )
    lines = [f"# {sections.title}", ""]
    if sections.notes:
        lines += [*sections.notes, ""]
    for title, body in zip(SECTION_TITLES, bodies):
        lines += [f"## {title}", "", *body, ""]
    return "\n".join(lines)


def drift_plot_png(
    rows: Iterable[Mapping], path: Path | str, title: str = "Short-context perplexity", dpi: int = 80
) -> None:
    """Perplexity per domain (one line each) over the checkpoints in chain order, as a PNG at ``path``
    (small, dpi 80 by default: the asset also shows it inline in the UI)."""
    by = _perplexity_by_checkpoint(rows)
    if not by:
        raise ValueError("drift_plot_png needs at least one perplexity row")
    bad = [f"{c}/{d}" for c, values in by.items() for d, v in values.items() if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"perplexity must be a finite number > 0 (bad: {', '.join(bad)})")
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    checkpoints = list(by)
    domains = list(dict.fromkeys(d for values in by.values() for d in values))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=dpi)
    for domain in domains:
        xs = [i for i, c in enumerate(checkpoints) if domain in by[c]]  # a domain may be missing somewhere
        ax.plot(xs, [by[checkpoints[i]][domain] for i in xs], marker="o", label=domain)
    ax.set_xticks(range(len(checkpoints)), checkpoints, rotation=20, ha="right")
    ax.set_ylabel("perplexity (lower is better)")
    ax.set_yscale("log")  # domains differ by orders of magnitude on a small model
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})  # no timestamp/version: reproducible bytes
    plt.close(fig)


__all__ = [
    "CHAIN_ORDER",
    "CorpusStat",
    "DriftSection",
    "EvaluationSections",
    "LossCurve",
    "NiahStage",
    "PostTrainingSection",
    "TokenizerEfficiency",
    "drift_plot_png",
    "evaluation_summary_markdown",
]
