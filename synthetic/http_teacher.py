"""The HTTP teacher: an OpenAI-compatible chat-completions client with a persistent cache. No Dagster: the
teacher resource (``resources/teacher.py``) builds it for the synthetic and evaluation assets, and a policy
stage process (``posttrain.policy_train``, the LLM judge) builds it from its command line.

HTTP client: the standard library (``urllib.request``) in a ``ThreadPoolExecutor`` of ``concurrency``
threads; streaming off. Each request is retried ``max_retries`` times with exponential backoff on 429,
5xx, timeouts, connection errors and malformed bodies (no ``choices[0].message.content`` string);
``Retry-After`` (seconds) is honoured, capped at ``max_backoff_s``. Other 4xx fail at once. When the
retries are spent the run fails with one line naming the status or the problem: never an empty answer.

Cache: a SQLite file (default ``$KEXAONE_HOME/teacher_cache.sqlite``) in WAL mode, keyed by
sha256(model, template version, messages, sampling parameters). Each answer is committed as soon as it
arrives, from the thread that received it, so an interrupted run keeps everything it paid for and a
rerun sends only the missing requests. SQLite rather than the artifact store: artifacts are immutable,
version-addressed folders committed once at the end of a build, while the cache must grow one row at a
time, be shared by concurrent threads and processes (WAL: readers never block the writer), and outlive
versions (a changed preset slice re-versions the asset but most prompts stay the same).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Sequence

from synthetic.teacher import Completion, TeacherError, TeacherRequest, TeacherStats

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ResponseCache:
    """(key -> completion text and usage) in SQLite/WAL; safe across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, "
            "template_version TEXT, text TEXT NOT NULL, tokens_in INTEGER, tokens_out INTEGER, "
            "created_at REAL)"
        )
        self._con.commit()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._con.execute(
                "SELECT text, tokens_in, tokens_out FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return Completion(row[0], row[1], row[2], cached=True) if row else None

    def put(self, key: str, model: str, template_version: str, completion: Completion) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    template_version,
                    completion.text,
                    completion.tokens_in,
                    completion.tokens_out,
                    time.time(),
                ),
            )
            self._con.commit()

    def count(self) -> int:
        with self._lock:
            return self._con.execute("SELECT count(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._con.close()


class HttpTeacher:
    """OpenAI-compatible ``POST {base_url}/chat/completions`` client (vLLM, SGLang, hosted APIs)."""

    needs_verifiable = False

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str,
        cache_path: str | Path,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_tokens: int = 1024,
        temperature: float = 0.6,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.cache = ResponseCache(cache_path)
        self.concurrency = max(1, concurrency)
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.params = {"max_tokens": max_tokens, "temperature": temperature}
        self.identity = f"http:{model}"
        self.stats = TeacherStats()
        self._stats_lock = threading.Lock()

    def preflight(self) -> None:
        """Fail before any compute when the endpoint cannot be reached (any HTTP answer counts as reachable)."""
        req = urllib.request.Request(f"{self.base_url}/models", headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=min(self.timeout_s, 10)):
                pass
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TeacherError(f"teacher endpoint {self.base_url} is unreachable: {reason}") from None

    def complete_many(self, requests: Sequence[TeacherRequest]) -> list[Completion]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            out = list(pool.map(self.complete, requests))
        return out

    def complete(self, request: TeacherRequest) -> Completion:
        key = request.cache_key(self.model, self.params)
        hit = self.cache.get(key)
        if hit is None:
            hit = self._post(request)
            self.cache.put(key, self.model, request.template_version, hit)  # persisted before it is used
            with self._stats_lock:
                self.stats.sent += 1
        else:
            with self._stats_lock:
                self.stats.cache_hits += 1
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.tokens_in += hit.tokens_in
            self.stats.tokens_out += hit.tokens_out
        return hit

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"}

    def _post(self, request: TeacherRequest) -> Completion:
        body = json.dumps(
            {
                "model": self.model,
                "stream": False,
                **self.params,
                "messages": [{"role": r, "content": c} for r, c in request.messages],
            }
        ).encode()
        url = f"{self.base_url}/chat/completions"
        problem = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
            try:
                req = urllib.request.Request(url, data=body, headers=self._headers(), method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
                completion = _parse(raw)
                if completion is not None:
                    return completion
                problem = f"malformed response body {raw[:120]!r}"
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                problem = f"HTTP {exc.code} {detail!r}"
                if exc.code not in RETRY_STATUS:
                    raise TeacherError(f"teacher {url} refused the request: {problem}") from None
                after = _retry_after(exc.headers.get("Retry-After"))
                if after is not None:
                    wait = min(self.max_backoff_s, after)
            except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.max_retries:
                with self._stats_lock:
                    self.stats.retries += 1
                time.sleep(wait)
        raise TeacherError(f"teacher {url} failed after {self.max_retries + 1} attempts: {problem}")

    def close(self) -> None:
        self.cache.close()


def _parse(raw: bytes) -> Completion | None:
    try:
        data = json.loads(raw)
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(text, str) or not text.strip():
        return None
    usage = data.get("usage") or {}
    return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


__all__ = ["HttpTeacher", "ResponseCache", "RETRY_STATUS"]
