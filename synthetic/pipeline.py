"""Thinking-augmented samples and cross-lingual synthesis: request building, verification, filters and
per-language balancing. Pure functions over (doc id, text) pairs and a ``Teacher``; no Dagster."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from synthetic.stem import Problem, answer_matches, fmt, parse_answer, pick_problem, problems_for
from synthetic.teacher import Teacher, TeacherRequest
from synthetic.templates import crosslingual_messages, render_sample, thinking_messages

Doc = tuple[str, str]  # (id, text)
LanguageOf = Callable[[str], str]  # text -> ISO code (corpus.lid in production)
BATCH = 64  # requests handed to the teacher at once (it runs them with its own concurrency)


@dataclass
class SynthesisResult:
    samples: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # the sample (or document) and its "reason"

    @property
    def rejection_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self.rejected).items()))


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _think_block(text: str, think: tuple[str, str]) -> tuple[str, str] | None:
    """(trajectory, rest after the closing tag) or None when the tags are missing or empty."""
    m = re.search(re.escape(think[0]) + r"(.*?)" + re.escape(think[1]), text, re.S)
    if not m or not m.group(1).strip():
        return None
    return m.group(1).strip(), text[m.end() :].strip()


def thinking_samples(
    sources: Mapping[str, tuple[str, Iterable[Doc]]],
    teacher: Teacher,
    *,
    template_version: str,
    think: tuple[str, str],
    min_chars: int,
    max_chars: int,
    max_docs_per_source: int,
    language_of: LanguageOf,
) -> SynthesisResult:
    """``sources``: partition -> (its language, documents). One sample per selected document: the
    document, a question (a verifiable problem where the document has quantities), the teacher's
    trajectory between the think tags, and the answer. Filters: language of the trajectory = source
    language, length within [min_chars, max_chars], the answer equal to the problem's exact answer."""
    result = SynthesisResult()

    def pending() -> Iterator[tuple[dict, TeacherRequest]]:
        for source, (language, docs) in sources.items():
            for n, (doc_id, text) in enumerate(docs):
                if n >= max_docs_per_source:
                    break
                base = {
                    "source": source,
                    "source_doc_id": doc_id,
                    "language": language,
                    "teacher": teacher.identity,
                    "template_version": template_version,
                }
                problem = pick_problem(doc_id, text)
                if len(text) > max_chars:
                    result.rejected.append({**base, "reason": "too_long", "chars": len(text)})
                    continue
                if problem is None and teacher.needs_verifiable:
                    result.rejected.append({**base, "reason": "no_verifiable_quantity"})
                    continue
                messages = thinking_messages(text, problem, language, think)
                yield (
                    {**base, "document": text, "problem": problem},
                    TeacherRequest(
                        "thinking",
                        tuple((m["role"], m["content"]) for m in messages),
                        template_version,
                        (problem,) if problem else (),
                        language,
                        think,
                    ),
                )

    for batch in _batches(pending(), BATCH):
        completions = teacher.complete_many([req for _, req in batch])
        for (item, _), completion in zip(batch, completions):
            _judge_thinking(
                item,
                completion.text,
                result,
                think=think,
                min_chars=min_chars,
                max_chars=max_chars,
                language_of=language_of,
            )
    return result


def _judge_thinking(
    item: dict,
    text: str,
    result: SynthesisResult,
    *,
    think: tuple[str, str],
    min_chars: int,
    max_chars: int,
    language_of: LanguageOf,
) -> None:
    problem: Problem | None = item.pop("problem")
    document = item.pop("document")
    base = {**item, "problem_kind": problem.kind if problem else "open", "completion": text}
    block = _think_block(text, think)
    if block is None:
        result.rejected.append({**base, "reason": "malformed_trajectory"})
        return
    trajectory, rest = block
    if problem is not None:
        question = problem.question
        got = parse_answer(rest)
        answer = f"{fmt(got)} {problem.unit}".strip() if got is not None else rest
        if not answer_matches(problem.answer, got):
            result.rejected.append(
                {
                    **base,
                    "reason": "answer_mismatch",
                    "expected": fmt(problem.answer),
                    "got": None if got is None else fmt(got),
                }
            )
            return
        verified: bool | None = True
    else:  # an open question the teacher asked itself: grounded, not checkable
        q = re.search(r"Question:\s*(.+)", text[: text.find(think[0])] if think[0] in text else text)
        if not q or not rest:
            result.rejected.append({**base, "reason": "malformed_trajectory"})
            return
        question, answer, verified = q.group(1).strip(), re.sub(r"^Answer:\s*", "", rest), None
    detected = language_of(trajectory)
    if detected != item["language"]:
        result.rejected.append({**base, "reason": "language_mismatch", "detected_language": detected})
        return
    sample = render_sample(document, question, trajectory, answer, think)
    if not min_chars <= len(sample) <= max_chars:
        result.rejected.append(
            {**base, "reason": "too_short" if len(sample) < min_chars else "too_long", "chars": len(sample)}
        )
        return
    result.samples.append(
        {
            "id": f"{item['source_doc_id']}-think",
            "text": sample,
            **item,
            "question": question,
            "answer": answer,
            "verified": verified,
            "problem_kind": base["problem_kind"],
        }
    )


def fact_problems(doc_id: str, text: str) -> list[Problem]:
    """The facts a cross-lingual document must carry: conversions and sums of the document's quantities."""
    return [p for p in problems_for(doc_id, text) if p.kind in ("convert", "add")][:6]


def fact_values(problems: Sequence[Problem]) -> list[str]:
    values: list[str] = []
    for p in problems:
        numbers = [p.operands[0], fmt(p.answer)] + ([p.operands[1]] if p.kind == "add" else [])
        values.extend(v for v in numbers if v not in values)
    return values


def _has_number(text: str, value: str) -> bool:
    normalized = re.sub(r"(\d),(\d)", r"\1.\2", text)
    return re.search(r"(?<![\d.])" + re.escape(value) + r"(?![\d])", normalized) is not None


@dataclass
class Direction:
    source: str  # corpus partition
    source_language: str
    docs: Sequence[Doc]


def multilingual_documents(
    directions: Mapping[str, Direction],
    targets: Mapping[str, Sequence[str]],
    teacher: Teacher,
    *,
    template_version: str,
    target_chars: Mapping[str, int],
    min_chars: int,
    max_chars: int,
    max_docs_per_source: int,
    language_of: LanguageOf,
    concurrency: int = 4,
) -> tuple[SynthesisResult, list[dict]]:
    """Propagate knowledge documents into target languages until each target language reaches its
    character target (or the sources run out). ``targets``: source partition -> target languages.
    Returns the documents (and rejections) and one balance row per target language."""
    result = SynthesisResult()
    balance = []
    for target in sorted(target_chars):
        achieved, docs_out, rejected_before = 0, 0, len(result.rejected)
        feeding = [directions[s] for s in sorted(directions) if target in targets.get(s, ())]
        candidates = _round_robin([[(d, doc) for doc in d.docs[:max_docs_per_source]] for d in feeding])

        def requests() -> Iterator[tuple[dict, TeacherRequest]]:
            for direction, (doc_id, text) in candidates:
                base = {
                    "id": f"{doc_id}-{target}",
                    "language": target,
                    "source": direction.source,
                    "source_language": direction.source_language,
                    "source_doc_id": doc_id,
                    "teacher": teacher.identity,
                    "template_version": template_version,
                    "rendering": "template" if teacher.needs_verifiable else "llm",
                }
                problems = fact_problems(doc_id, text)
                if not problems and teacher.needs_verifiable:
                    result.rejected.append({**base, "reason": "no_verifiable_fact"})
                    continue
                messages = crosslingual_messages(
                    text[:max_chars], direction.source_language, target, fact_values(problems)
                )
                yield (
                    base,
                    TeacherRequest(
                        "crosslingual",
                        tuple((m["role"], m["content"]) for m in messages),
                        template_version,
                        tuple(problems),
                        target,
                    ),
                )

        stream = requests()
        while achieved < target_chars[target]:
            batch = [x for _, x in zip(range(max(1, concurrency)), stream)]
            if not batch:
                break
            for (base, req), completion in zip(batch, teacher.complete_many([r for _, r in batch])):
                text = completion.text.strip()
                reason = _judge_crosslingual(text, target, req.problems, min_chars, max_chars, language_of)
                if reason:
                    result.rejected.append({**base, "reason": reason, "completion": text})
                    continue
                result.samples.append({**base, "text": text, "facts": fact_values(req.problems)})
                achieved += len(text)
                docs_out += 1
        balance.append(
            {
                "language": target,
                "target_chars": target_chars[target],
                "achieved_chars": achieved,
                "documents": docs_out,
                "rejected": len(result.rejected) - rejected_before,
                "achieved_share": round(achieved / target_chars[target], 4),
            }
        )
    return result, balance


def _judge_crosslingual(
    text: str, target: str, problems: Sequence[Problem], min_chars: int, max_chars: int, language_of: LanguageOf
) -> str | None:
    if not text:
        return "empty_output"
    if language_of(text) != target:
        return "language_mismatch"
    if any(not _has_number(text, v) for v in fact_values(problems)):
        return "numbers_not_preserved"
    if len(text) < min_chars:
        return "too_short"
    if len(text) > max_chars:
        return "too_long"
    return None


def _round_robin(lists: list[list]) -> Iterator:
    iters = [iter(x) for x in lists]
    while iters:
        alive = []
        for it in iters:
            item = next(it, None)
            if item is not None:
                yield item
                alive.append(it)
        iters = alive
