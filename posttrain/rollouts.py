"""Where a policy stage's rollouts come from: one interface, a local engine (the live model) and a client
for an OpenAI-compatible inference server (vLLM) for clusters.

A ``RolloutEngine`` turns one prompt's token ids into ``n`` sampled responses, each a
``model.inference.SampledRow``: the generated ids (EOS included when produced) and, per token, the rollout
policy's log-prob of the sampled token, which AGAPO's truncated importance weight
``min(pi_theta / pi_rollout, C)`` divides by. ``refresh`` brings the engine's weights up to the trainer's.

* The rollout log-prob is **log softmax of the raw logits at temperature 1 over the full vocabulary**
  (**choice**): the trainer re-scores responses the same way, so the ratio of the first update after a
  rollout is exactly 1 when the engine holds the trainer's weights; temperature and top-p only decide
  which tokens are drawn. vLLM's V1 sampler returns exactly these (``--logprobs-mode raw_logprobs``, its
  default: log-probs before temperature, penalties and top-k/top-p).
* ``LocalRollouts`` (tiny preset, CI): ``model.inference.sample_batch`` on the live training model, MTP
  off, a fresh ``torch.Generator`` seeded with ``seed`` per call (deterministic). The engine *is* the
  policy, so ``refresh`` has nothing to copy (it may swap in another model object). On several ranks
  (expert / tensor parallel) every rank samples its own prompts in ``lockstep`` (the forwards are
  collectives).
* ``OpenAIRollouts`` (clusters): a stdlib ``urllib`` client of ``POST {base_url}/v1/completions`` with a
  token-id prompt, ``n``, ``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``logprobs: 0`` (only the
  sampled token's log-prob) and vLLM's ``return_tokens_as_token_ids`` (each returned token reads
  ``"token_id:<id>"``, so ids survive without a detokenize/retokenize round trip) and
  ``skip_special_tokens: false``. Per choice it reads ``logprobs.tokens`` (ids) and
  ``logprobs.token_logprobs``. The server cannot report the full-distribution entropy cheaply, so a row's
  ``entropy`` holds each token's surprisal ``-log p`` (**choice**: an unbiased one-sample estimate of the
  entropy when the server samples at temperature 1 without top-p; biased low under top-p).
* ``OpenAIRollouts.refresh(path)``: the server must serve the trainer's newest weights each round. The
  policy stage (``--rollout-base-url``) writes the round's weights (``model.checkpoint.save_model``) to
  ``path`` under its work folder and the ``reload`` hook makes the server load them before the round's
  rollouts. ``load_weights_hook`` is the hook of ``model.serve`` (this project's server, which loads those
  checkpoints: tested, CPU). For vLLM the weights must be in HF format (issue 18's export) and the hook is
  deployment-specific, e.g. vLLM's ``/collective_rpc`` (``VLLM_SERVER_DEV_MODE=1``) calling a worker
  extension's ``reload_weights``, or a restart on the new folder: **not wired here**. Without a hook
  ``refresh`` raises ``RolloutError``: rollouts from stale weights would be silently off-policy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

from model.inference import SampledRow, sample_batch

TOKEN_ID_PREFIX = "token_id:"  # vLLM's return_tokens_as_token_ids rendering of a token


class RolloutError(RuntimeError):
    """A rollout engine failed or answered in an unexpected shape; one line."""


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(
        self, prompt_ids: Sequence[int], n: int, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[SampledRow]:
        """``n`` sampled responses to one prompt (ids, rollout log-probs at temperature 1, entropy)."""
        ...

    def refresh(self, weights: Any) -> None:
        """Make the engine sample from the trainer's current weights (a model object or an exported path)."""
        ...


class LocalRollouts:
    """Rollouts from the live Megatron model in this process (``sample_batch``: KV cache, MTP off).

    The ``n`` copies of the prompt decode as one batch; ``seed`` seeds a fresh CPU generator, so a call is a
    pure function of (weights, prompt, seed).
    """

    def __init__(
        self, model: torch.nn.Module, *, eos_token_id: int | None, vocab_size: int, lockstep: bool = False
    ) -> None:
        self.model = model
        self.eos_token_id = eos_token_id
        self.vocab_size = vocab_size
        self.lockstep = lockstep  # a model split over ranks: every rank calls generate() together

    def generate(
        self, prompt_ids: Sequence[int], n: int, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[SampledRow]:
        if n < 1:
            raise ValueError(f"n must be >= 1 (got {n})")
        return sample_batch(
            self.model,
            [list(prompt_ids)] * n,
            max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            eos_token_id=self.eos_token_id,
            vocab_size=self.vocab_size,
            generator=torch.Generator().manual_seed(seed),
            lockstep=self.lockstep,
        )

    def refresh(self, weights: Any) -> None:
        """The engine samples from the trained model object itself: nothing to copy. A module passed here
        replaces it (a path is refused: load it into a model first)."""
        if isinstance(weights, torch.nn.Module):
            self.model = weights
        elif weights is not None and weights is not self.model:
            raise RolloutError(f"LocalRollouts.refresh takes the live model, not {type(weights).__name__}")


def parse_token_id(token: Any) -> int:
    """``"token_id:123"`` -> 123 (vLLM's ``return_tokens_as_token_ids``); a bare int passes through."""
    if isinstance(token, int):
        return token
    if isinstance(token, str) and token.startswith(TOKEN_ID_PREFIX):
        try:
            return int(token[len(TOKEN_ID_PREFIX) :])
        except ValueError:
            pass
    raise RolloutError(f"a returned token {token!r} is not a token id (did the server get return_tokens_as_token_ids?)")


def parse_completions(body: Any, n: int) -> list[SampledRow]:
    """The ``n`` rows of a ``/v1/completions`` response with ``logprobs`` and token ids, in choice order."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or len(choices) != n:
        got = len(choices) if isinstance(choices, list) else "no"
        raise RolloutError(f"the completions response has {got} choices, expected n = {n}")
    rows = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0)):
        logprobs = choice.get("logprobs") or {}
        tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
        if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
            raise RolloutError(f"choice {choice.get('index')}: logprobs.tokens / token_logprobs missing or unequal")
        if any(v is None for v in values):
            raise RolloutError(f"choice {choice.get('index')}: a sampled token has no log-prob")
        ids = [parse_token_id(t) for t in tokens]
        lp = [float(v) for v in values]
        rows.append(SampledRow(ids=ids, logprobs=lp, entropy=[-v for v in lp]))
    return rows


class OpenAIRollouts:
    """Rollouts from an OpenAI-compatible completions server (vLLM) that takes token-id prompts.

    ``base_url`` is the server root (``http://host:8000``; a trailing ``/v1`` is accepted), ``model`` the
    served model name. ``reload(path)`` is the deployment's way to make the server load exported weights
    (see the module docstring); ``refresh`` calls it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        reload: Callable[[str], None] | None = None,
        eos_token_id: int | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        self.root = root if root.endswith("/v1") else root + "/v1"
        self.url = self.root + "/completions"
        self.model = model
        self.eos_token_id = eos_token_id  # sent as stop_token_ids: a choice ends after it, as locally
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.reload = reload

    def request_body(
        self, prompt_ids: Sequence[int], n: int, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": [int(t) for t in prompt_ids],  # token ids: the server does not re-tokenize
            "n": n,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "logprobs": 0,  # the sampled token's log-prob only (vLLM: raw, temperature 1, full vocabulary)
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
            **({"stop_token_ids": [self.eos_token_id]} if self.eos_token_id is not None else {}),
        }

    def generate(
        self, prompt_ids: Sequence[int], n: int, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[SampledRow]:
        body = self.request_body(
            prompt_ids, n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
        )
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").replace("\n", " ")[:300]
            raise RolloutError(f"{self.url}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RolloutError(f"{self.url}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise RolloutError(f"{self.url}: the response is not JSON ({exc})") from exc
        return parse_completions(answer, n)

    def refresh(self, weights: Any) -> None:
        """The server reloads the trainer's exported weights each round (``weights``: the export's path)
        through the configured ``reload`` hook; without one this refuses rather than sample stale weights."""
        if self.reload is None:
            raise RolloutError(
                "OpenAIRollouts has no reload hook: the server cannot load the trainer's weights "
                "(configure one, e.g. vLLM's /collective_rpc or a restart on the exported folder)"
            )
        self.reload(str(weights))


def load_weights_hook(base_url: str, *, timeout_s: float = 600.0) -> Callable[[str], None]:
    """The refresh of ``model.serve`` (the project's own rollout server): ``POST /v1/load_weights`` with the
    path of the round's weights on storage both sides reach; returns once the server has loaded them."""
    root = base_url.rstrip("/")
    url = (root if root.endswith("/v1") else root + "/v1") + "/load_weights"

    def reload(path: str) -> None:
        request = urllib.request.Request(
            url, data=json.dumps({"path": path}).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").replace("\n", " ")[:300]
            raise RolloutError(f"{url}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RolloutError(f"{url}: {exc}") from exc

    return reload


__all__ = [
    "LocalRollouts",
    "load_weights_hook",
    "OpenAIRollouts",
    "RolloutEngine",
    "RolloutError",
    "parse_completions",
    "parse_token_id",
]
