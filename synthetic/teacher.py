"""The teacher interface shared by both backends, and the offline programmatic backend.

A ``TeacherRequest`` carries chat messages (what an LLM is sent) plus the structured problem they were
rendered from (what the offline backend computes from). Both backends return one ``Completion`` per
request, in order. The HTTP backend lives in ``synthetic/http_teacher.py`` (it needs the network and a cache).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from synthetic.stem import Problem, fmt
from synthetic.templates import offline_trajectory, render_facts

OFFLINE_TEACHER = "offline-programmatic-v1"


class TeacherError(RuntimeError):
    """The teacher could not answer (after retries); the message is one line naming the cause."""


@dataclass(frozen=True)
class TeacherRequest:
    kind: str  # thinking | crosslingual
    messages: tuple[tuple[str, str], ...]  # (role, content)
    template_version: str
    problems: tuple[Problem, ...] = ()  # the verifiable content the messages were rendered from
    target_language: str = ""
    think: tuple[str, str] = ("<think>", "</think>")

    def cache_key(self, model: str, params: dict[str, Any]) -> str:
        """Keyed by (model, template version, input, sampling parameters)."""
        body = json.dumps(
            {"model": model, "template_version": self.template_version, "messages": self.messages, "params": params},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass
class Completion:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False


@dataclass
class TeacherStats:
    requests: int = 0  # completions returned
    sent: int = 0  # HTTP requests that got an answer (not from the cache)
    cache_hits: int = 0
    retries: int = 0
    tokens_in: int = 0  # from the API's usage, over every completion of this build (cached ones included)
    tokens_out: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, int]:
        return {
            "teacher_requests": self.requests,
            "teacher_requests_sent": self.sent,
            "teacher_cache_hits": self.cache_hits,
            "teacher_retries": self.retries,
            "teacher_tokens_in": self.tokens_in,
            "teacher_tokens_out": self.tokens_out,
        }


class Teacher(Protocol):
    identity: str  # written into every sample's provenance and into the artifact version
    needs_verifiable: bool  # True: only requests with problems can be answered (offline backend)
    stats: TeacherStats

    def complete_many(self, requests: Sequence[TeacherRequest]) -> list[Completion]: ...

    def close(self) -> None: ...


class OfflineTeacher:
    """Programmatic answers without an LLM: exact derivations for verifiable STEM problems and
    per-language template renderings of verifiable facts. It is never presented as an LLM: its identity
    ``offline-programmatic-v1`` is in every sample's provenance, and it uses no tokens."""

    identity = OFFLINE_TEACHER
    needs_verifiable = True

    def __init__(self) -> None:
        self.stats = TeacherStats()

    def complete_many(self, requests: Sequence[TeacherRequest]) -> list[Completion]:
        out = [Completion(self._answer(r)) for r in requests]
        self.stats.requests += len(out)
        return out

    def close(self) -> None:
        """Nothing to release (the HTTP teacher closes its cache here)."""

    def _answer(self, request: TeacherRequest) -> str:
        if not request.problems:
            raise TeacherError(
                f"{OFFLINE_TEACHER} answers only verifiable requests (got a {request.kind} request without a problem)"
            )
        if request.kind == "thinking":
            problem = request.problems[0]
            unit = f" {problem.unit}" if problem.unit else ""
            return (
                f"{request.think[0]}\n{offline_trajectory(problem)}\n{request.think[1]}\n"
                f"Answer: {fmt(problem.answer)}{unit}"
            )
        if request.kind == "crosslingual":
            return render_facts(request.target_language, list(request.problems))
        raise TeacherError(f"{OFFLINE_TEACHER}: unknown request kind {request.kind!r}")
