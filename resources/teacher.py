"""The teacher LLM resource: ``backend`` offline (``synthetic.teacher.OfflineTeacher``, programmatic) or http
(``synthetic.http_teacher.HttpTeacher``: an OpenAI-compatible chat-completions client with a persistent
SQLite cache, retries and backoff; see that module)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from synthetic.http_teacher import HttpTeacher
from synthetic.teacher import OfflineTeacher, TeacherError


class TeacherLLM(ConfigurableResource):
    """``backend``: ``offline`` (programmatic, the embedded default) or ``http`` (an OpenAI-compatible
    endpoint: ``base_url``, ``model``, ``api_key`` through ``EnvVar``)."""

    backend: str = "offline"
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    cache_path: str | None = None  # default: $KEXAONE_HOME/teacher_cache.sqlite
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def problems(self) -> list[str]:
        if self.backend == "offline":
            return []
        if self.backend != "http":
            return [f"teacher backend {self.backend!r} is not offline/http"]
        missing = [
            n for n, v in (("base_url", self.base_url), ("model", self.model), ("API key", self.api_key)) if not v
        ]
        errs = [f"HTTP teacher needs {', '.join(missing)}"] if missing else []
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            errs.append(f"teacher base URL {self.base_url!r} is not http(s)://")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            errs.append("teacher concurrency must be >= 1, max_retries >= 0 and timeout_s > 0")
        return errs

    def cache_file(self) -> Path:
        """The answer cache (``cache_path``, default ``$KEXAONE_HOME/teacher_cache.sqlite``)."""
        from kexaone_dag.resources_by_env import kexaone_home

        return Path(self.cache_path) if self.cache_path else kexaone_home() / "teacher_cache.sqlite"

    def client(self, *, max_tokens: int, temperature: float) -> OfflineTeacher | HttpTeacher:
        """A ready teacher; the HTTP one is checked for reachability first (one line on failure)."""
        errs = self.problems()
        if errs:
            raise TeacherError("; ".join(errs))
        if self.backend == "offline":
            return OfflineTeacher()
        teacher = HttpTeacher(
            base_url=self.base_url or "",
            model=self.model or "",
            api_key=self.api_key or "",
            cache_path=self.cache_file(),
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        teacher.preflight()
        return teacher

    def identity(self) -> str:
        """Goes into the artifact version: switching teacher (or model) re-versions the synthetic assets."""
        return OfflineTeacher.identity if self.backend == "offline" else f"http:{self.model}"
