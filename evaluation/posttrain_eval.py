"""Post-training evaluation (report §4.1 settings): checkpoints side by side on the held-out prompts.

For every checkpoint, held-out prompt (at most ``max_prompts`` per domain) and mode (reasoning /
non-reasoning), ``k`` responses are sampled with the report's decoding (temperature 1.0, top-p 0.95, MTP
off) and scored by the prompt's verifier. Per (checkpoint, domain, mode):

* ``pass_at_1``: the mean over prompts of the share of the k samples that pass (score 1.0; a partial
  score such as a share of unit tests does not pass) — pass@1 averaged over k samples;
* ``mean_score``: the mean verifier score (partial credit kept);
* ``think_well_formed``: reasoning mode, the share of responses with exactly one closed, non-empty think
  block (``posttrain.chat.parse_response``); non-reasoning mode: the share without a think tag of its own;
* ``mean_response_tokens``;
* ``rubric_score``: with a judge, its mean rubric score scaled to [0, 1] (what GROUPER optimizes besides the
  rule reward); otherwise empty.

``evaluate_checkpoint`` takes everything model-specific as functions (``sample``, ``decode``, ``score``), so
it is tested without a model; ``evaluate_model`` binds them to a loaded model and tokenizer (what the
``post_training_eval`` asset and ``bench/posttrain_learning.py`` both call).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from posttrain.chat import THINK_CLOSE, THINK_OPEN, parse_response

# (prompt ids, n, seed) -> n responses' token ids (EOS removed)
Sample = Callable[[list[int], int, int], list[list[int]]]


@dataclass(frozen=True)
class EvalRow:
    checkpoint: str
    domain: str
    mode: str  # "reasoning" | "non_reasoning"
    prompts: int
    samples: int
    pass_at_1: float
    mean_score: float
    think_well_formed: float
    mean_response_tokens: float
    rubric_score: float | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


def held_out(records: Sequence[Mapping[str, Any]], max_prompts: int) -> list[Mapping[str, Any]]:
    """The held-out split, at most ``max_prompts`` per domain, in file order (stable)."""
    taken: dict[str, int] = defaultdict(int)
    out = []
    for r in records:
        if r["split"] == "held_out" and taken[r["domain"]] < max_prompts:
            taken[r["domain"]] += 1
            out.append(r)
    return out


def evaluate_checkpoint(
    checkpoint: str,
    records: Sequence[Mapping[str, Any]],
    *,
    prompt_ids: Callable[[Mapping[str, Any], bool], list[int]],
    sample: Sample,
    decode: Callable[[list[int]], str],
    score: Callable[[Mapping[str, Any], str, bool], float],
    k: int,
    modes: Sequence[bool] = (True, False),
    seed: int = 0,
    rubric: Callable[[Mapping[str, Any], str, bool], float] | None = None,
) -> list[EvalRow]:
    """Rows per (domain, mode) for one checkpoint; ``records`` are the held-out prompts to answer.
    ``rubric(record, text, reasoning)``: the judge's mean rubric score in [0, 1], when given."""
    acc: dict[tuple[str, bool], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for i, record in enumerate(records):
        for reasoning in modes:
            responses = sample(prompt_ids(record, reasoning), k, seed + 1000 * i + int(reasoning))
            a = acc[(record["domain"], reasoning)]
            a["prompts"] += 1
            for ids in responses:
                text = decode(ids)
                parsed = parse_response(text, reasoning=reasoning)
                s = float(score(record["verifier"], text, reasoning))
                if not 0.0 <= s <= 1.0:
                    raise ValueError(f"verifier of {record['id']} returned {s}, outside [0, 1]")
                a["samples"] += 1
                a["passed"] += s == 1.0
                a["score"] += s
                if reasoning:
                    a["well_formed"] += parsed.well_formed
                else:  # answered directly: no think tag of its own
                    a["well_formed"] += THINK_OPEN not in text and THINK_CLOSE not in text
                a["tokens"] += len(ids)
                if rubric is not None:
                    a["rubric"] += float(rubric(record, text, reasoning))
    rows = []
    for (domain, reasoning), a in sorted(acc.items()):
        n = max(1.0, a["samples"])
        rows.append(
            EvalRow(
                checkpoint=checkpoint,
                domain=domain,
                mode="reasoning" if reasoning else "non_reasoning",
                prompts=int(a["prompts"]),
                samples=int(a["samples"]),
                pass_at_1=round(a["passed"] / n, 4),
                mean_score=round(a["score"] / n, 4),
                think_well_formed=round(a["well_formed"] / n, 4),
                mean_response_tokens=round(a["tokens"] / n, 2),
                rubric_score=None if rubric is None else round(a["rubric"] / n, 4),
            )
        )
    return rows


def evaluate_model(
    model,
    checkpoint: str,
    records: Sequence[Mapping[str, Any]],
    *,
    tokenizer,
    eos_token_id: int,
    vocab_size: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    k: int,
    seed: int,
    judge=None,
    rubric_dimensions: Sequence[str] = (),
    modes: Sequence[bool] = (True, False),
) -> list[EvalRow]:
    """``evaluate_checkpoint`` for a loaded model: the chat prompt of each record in each mode, ``k`` samples
    with the given decoding (the report's: temperature 1.0, top-p 0.95, MTP off), the record's verifier, and
    the judge's rubric when ``judge`` (``posttrain.verifiers.OfflineJudge`` or an LLM judge) is given."""
    import torch

    from model.inference import sample_batch
    from posttrain import chat, verifiers

    encode = lambda text: tokenizer.encode(text, add_special_tokens=False).ids  # noqa: E731

    def sample(prompt: list[int], n: int, sample_seed: int) -> list[list[int]]:
        out = sample_batch(
            model,
            [prompt] * n,
            max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            eos_token_id=eos_token_id,
            vocab_size=vocab_size,
            generator=torch.Generator().manual_seed(sample_seed),
        )
        return [[i for i in r.ids if i != eos_token_id] for r in out]

    return evaluate_checkpoint(
        checkpoint,
        records,
        prompt_ids=lambda r, reasoning: chat.encode_prompt(encode, r["messages"], reasoning=reasoning),
        sample=sample,
        decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=False),
        score=lambda spec, text, reasoning: verifiers.score(spec, text, reasoning=reasoning),
        k=k,
        modes=modes,
        seed=seed,
        rubric=None
        if judge is None
        else lambda r, text, reasoning: verifiers.rubric_mean(  # any Judge: the offline one or TeacherJudge
            judge.judge_many([verifiers.judge_item(r, text, reasoning=reasoning)], rubric_dimensions)[0]
        ),
    )


def comparison_markdown(rows: Sequence[EvalRow], checkpoints: Sequence[str]) -> str:
    """One table: pass@1 per (domain, mode), a column per checkpoint in chain order."""
    by = {(r.domain, r.mode, r.checkpoint): r for r in rows}
    keys = sorted({(r.domain, r.mode) for r in rows})
    head = "| domain | mode | " + " | ".join(checkpoints) + " |"
    lines = [head, "|" + "---|" * (2 + len(checkpoints))]
    for domain, mode in keys:
        cells = []
        for c in checkpoints:
            r = by.get((domain, mode, c))
            cells.append("-" if r is None else f"{r.pass_at_1:.1%} ({r.think_well_formed:.0%} wf)")
        lines.append(f"| {domain} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\npass@1 averaged over k samples; (wf): well-formed think blocks.\n"


def pass_at_1_png(rows: Sequence[EvalRow], checkpoints: Sequence[str], path, *, dpi: int = 80):
    """Grouped bars: pass@1 per checkpoint for every (domain, mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r.domain, r.mode) for r in rows})
    by = {(r.domain, r.mode, r.checkpoint): r.pass_at_1 for r in rows}
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(keys) + 2), 3), dpi=dpi)
    width = 0.8 / max(1, len(checkpoints))
    for j, c in enumerate(checkpoints):
        xs = [i + j * width for i in range(len(keys))]
        ax.bar(xs, [by.get((d, m, c), 0.0) for d, m in keys], width=width, label=c)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))])
    ax.set_xticklabels([f"{d}\n{'think' if m == 'reasoning' else 'direct'}" for d, m in keys], fontsize=7)
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


__all__ = ["EvalRow", "comparison_markdown", "evaluate_checkpoint", "evaluate_model", "held_out", "pass_at_1_png"]
