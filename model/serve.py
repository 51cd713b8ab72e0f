"""An OpenAI-compatible server over a checkpoint of this project (CPU or GPU, one process): the policy stages'
rollout server (``posttrain.rollouts.OpenAIRollouts`` talks to it as to vLLM) and a chat endpoint.

    python -m model.serve --preset tiny --checkpoint CKPT (--vocab-size V | --tokenizer DIR) [--port 8000]

* ``POST /v1/completions`` as vLLM answers it for token-id prompts: ``prompt`` (a list of token ids), ``n``,
  ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``logprobs`` (the sampled token's log-prob, raw:
  temperature 1 over the tokenizer's vocabulary, vLLM's ``raw_logprobs``), ``return_tokens_as_token_ids``
  (tokens read ``"token_id:<id>"``) and ``stop_token_ids`` (a choice stops after one, included, as with
  ``skip_special_tokens: false``). Sampling is ``model.inference.sample_batch`` seeded with ``seed``: the
  same weights, prompt and seed give the rollouts of ``LocalRollouts`` in the trainer.
* ``POST /v1/load_weights`` ``{"path": DIR}``: the weights of a ``model.checkpoint.save_model`` (or any
  finished) checkpoint replace the served ones; the answer comes once they are loaded. This is the round's
  weight refresh a policy stage asks for (with vLLM the same role falls to its weight-reload hooks).
* ``POST /v1/chat/completions`` (with ``--tokenizer``): OpenAI chat completions over the tokenizer's chat template
  (the one training used); non-reasoning mode unless ``chat_template_kwargs.enable_thinking`` (then the think
  block comes back as ``reasoning_content``, as vLLM's reasoning parser answers); ``temperature`` 0 is greedy,
  on the windowed KV cache, with MTP self-speculative decoding when ``--num-speculative-tokens`` > 0.
  ``synthetic.http_teacher.HttpTeacher`` talks to it, so the judge and evaluation paths can use the project's
  own model. ``kexaone serve ARTIFACT`` starts it over a checkpoint asset of the store.
* ``GET /v1/models``: the served name and the loaded checkpoint (``root``).

Requests are served one at a time (a lock around the model); the HTTP threads never fork. Bad requests get
HTTP 400 with a one-line ``error``. SIGTERM or SIGINT stops the server.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_ID_PREFIX = "token_id:"


class RequestError(ValueError):
    """A request this server cannot answer; one line, sent back as HTTP 400."""


class CheckpointServer:
    """The model, the loaded checkpoint and the lock every request takes."""

    def __init__(
        self,
        preset_name: str,
        checkpoint_dir: Path,
        vocab_size: int | None,
        served_name: str,
        tokenizer_dir: Path | None = None,
        num_speculative_tokens: int = 0,
    ) -> None:
        from config import get_preset
        from model import checkpoint
        from model.architecture import build_model

        self.preset = get_preset(preset_name)
        self.tokenizer = None
        if tokenizer_dir is not None:
            from transformers import PreTrainedTokenizerFast

            if not (Path(tokenizer_dir) / "tokenizer.json").exists():
                raise ValueError(f"{tokenizer_dir} has no tokenizer.json")
            self.tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
            if not self.tokenizer.chat_template:
                raise ValueError(f"the tokenizer in {tokenizer_dir} has no chat template (tokenizer_config.json)")
            vocab_size = vocab_size or len(self.tokenizer)
        if vocab_size is None:
            raise ValueError("give the tokenizer's vocabulary size or the tokenizer itself")
        self.vocab_size = vocab_size
        self.served_name = served_name
        self.num_speculative_tokens = num_speculative_tokens  # greedy chat answers: MTP drafts per step (0: off)
        # the longest context a stage trained: prompt + answer must fit in it
        self.max_context = max(
            [self.preset.pretrain.seq_length] + [s.seq_length for s in self.preset.context.stages.values()]
        )
        self.model = build_model(self.preset, vocab_size=vocab_size)
        if num_speculative_tokens and not self.model.mtp_process:
            raise ValueError(f"num_speculative_tokens={num_speculative_tokens} needs an MTP layer; preset has none")
        self.lock = threading.Lock()
        checkpoint.load_model(checkpoint_dir, self.model)
        self.loaded = str(checkpoint_dir)

    def load_weights(self, body: dict[str, Any]) -> dict[str, Any]:
        from model import checkpoint

        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise RequestError("load_weights needs a checkpoint 'path'")
        with self.lock:
            try:
                checkpoint.load_model(path, self.model)
            except checkpoint.CheckpointError as exc:
                raise RequestError(str(exc)) from None
            self.loaded = path
        return {"loaded": path}

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, list) or not prompt or not all(isinstance(t, int) for t in prompt):
            raise RequestError("prompt must be a non-empty list of token ids (this server does not tokenize)")
        if any(not 0 <= t < self.vocab_size for t in prompt):
            raise RequestError(f"prompt token ids must lie in 0..{self.vocab_size - 1}")
        n, max_tokens = body.get("n", 1), body.get("max_tokens", 16)
        temperature, top_p, seed = body.get("temperature", 1.0), body.get("top_p", 1.0), body.get("seed", 0)
        stop = body.get("stop_token_ids") or []
        if not (isinstance(n, int) and n >= 1 and isinstance(max_tokens, int) and max_tokens >= 1):
            raise RequestError("n and max_tokens must be integers >= 1")
        if not (isinstance(seed, int) and isinstance(stop, list) and len(stop) <= 1):
            raise RequestError("seed must be an integer and stop_token_ids a list of at most one id")
        with self.lock:
            rows = self.sample(prompt, n, max_tokens, temperature, top_p, stop[0] if stop else None, seed)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        choices = []
        for i, row in enumerate(rows):
            choice: dict[str, Any] = {
                "index": i,
                "text": "",
                "finish_reason": "stop" if row.ids[-1:] == stop[:1] and stop else "length",
            }
            if body.get("logprobs") is not None:
                choice["logprobs"] = {
                    "tokens": [f"{TOKEN_ID_PREFIX}{t}" if as_ids else str(t) for t in row.ids],
                    "token_logprobs": row.logprobs,
                }
            choices.append(choice)
        used = sum(len(r.ids) for r in rows)
        return {
            "object": "text_completion",
            "model": self.served_name,
            "choices": choices,
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": used, "total_tokens": len(prompt) + used},
        }

    def chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI chat completions: the messages rendered by the tokenizer's chat template (the one training used),
        answered in non-reasoning mode unless ``chat_template_kwargs.enable_thinking`` is true (the think block
        then comes back as ``reasoning_content``). ``temperature`` 0 decodes greedily; otherwise sampling is
        seeded with ``seed`` (default 0), so an answer is reproducible."""

        if self.tokenizer is None:
            raise RequestError("this server was started without a tokenizer (--tokenizer): no chat completions")
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            raise RequestError("messages must be a non-empty list of {role, content} objects with string content")
        roles = {"system", "user", "assistant", "tool"}
        if bad := [m["role"] for m in messages if m["role"] not in roles]:
            raise RequestError(f"unknown role {bad[0]!r} (known: {', '.join(sorted(roles))})")
        n, max_tokens = body.get("n", 1), body.get("max_tokens", 256)
        temperature, top_p, seed = body.get("temperature", 1.0), body.get("top_p", 1.0), body.get("seed", 0)
        kwargs = body.get("chat_template_kwargs") or {}
        thinking = bool(kwargs.get("enable_thinking", False)) if isinstance(kwargs, dict) else False
        if not (isinstance(n, int) and n >= 1 and isinstance(max_tokens, int) and max_tokens >= 1):
            raise RequestError("n and max_tokens must be integers >= 1")
        if not (isinstance(temperature, (int, float)) and temperature >= 0 and isinstance(top_p, (int, float))):
            raise RequestError("temperature must be a number >= 0 and top_p a number in (0, 1]")
        if not isinstance(seed, int):
            raise RequestError("seed must be an integer")
        prompt = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
        )
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) + max_tokens > self.max_context:
            raise RequestError(
                f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceed the model's context "
                f"({self.max_context} tokens)"
            )
        eos = self.tokenizer.eos_token_id
        with self.lock:
            try:
                if temperature == 0:
                    rows = self.greedy([ids] * n, max_tokens, eos)
                else:
                    rows = [r.ids for r in self.sample(ids, n, max_tokens, temperature, top_p, eos, seed)]
            except ValueError as exc:
                raise RequestError(str(exc)) from None
        choices = []
        for i, row in enumerate(rows):
            finished = bool(row) and row[-1] == eos
            text = self.tokenizer.decode(row[:-1] if finished else row, skip_special_tokens=False)
            reasoning, content = None, text
            if thinking:
                reasoning, _, content = text.partition("</think>")
                reasoning, content = reasoning.strip("\n"), content.lstrip("\n")
            message = {"role": "assistant", "content": content}
            if reasoning is not None:
                message["reasoning_content"] = reasoning
            choices.append({"index": i, "message": message, "finish_reason": "stop" if finished else "length"})
        used = sum(len(r) for r in rows)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_name,
            "choices": choices,
            "usage": {"prompt_tokens": len(ids), "completion_tokens": used, "total_tokens": len(ids) + used},
        }

    def sample(self, prompt: list[int], n: int, max_tokens: int, temperature, top_p, eos: int | None, seed: int):
        """``n`` rows sampled from one prompt (``model.inference.sample_batch``, seeded); bad values -> 400."""
        import torch

        from model.inference import sample_batch

        try:
            return sample_batch(
                self.model,
                [prompt] * n,
                max_tokens,
                temperature=float(temperature),
                top_p=float(top_p),
                eos_token_id=eos,
                vocab_size=self.vocab_size,
                generator=torch.Generator().manual_seed(seed),
            )
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def greedy(self, prompts: list[list[int]], max_tokens: int, eos: int | None) -> list[list[int]]:
        """Greedy answers on the windowed KV cache (``model.decoding``); with ``num_speculative_tokens`` the MTP
        layer drafts and the main model verifies (the same ids as plain greedy, fewer main-model forwards)."""
        from model.decoding import greedy_generate, speculative_generate

        if self.num_speculative_tokens:
            out = [
                speculative_generate(
                    self.model,
                    prompt,
                    max_tokens,
                    num_draft_tokens=self.num_speculative_tokens,
                    vocab_size=self.vocab_size,
                    eos_token_id=eos,
                )[0]
                for prompt in prompts[:1]
            ]
            return out * len(prompts)  # greedy: every choice is the same answer
        return greedy_generate(self.model, prompts, max_tokens, eos_token_id=eos, vocab_size=self.vocab_size)


def make_http_server(state: CheckpointServer, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._send(404, {"error": f"no route {self.path}"})
            self._send(
                200, {"object": "list", "data": [{"id": state.served_name, "object": "model", "root": state.loaded}]}
            )

        def do_POST(self) -> None:
            routes = {
                "/v1/completions": state.completions,
                "/v1/chat/completions": state.chat_completions,
                "/v1/load_weights": state.load_weights,
            }
            handler = routes.get(self.path.rstrip("/"))
            if handler is None:
                return self._send(404, {"error": f"no route {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not isinstance(body, dict):
                    raise RequestError("the body must be a JSON object")
                self._send(200, handler(body))
            except (RequestError, json.JSONDecodeError) as exc:
                self._send(400, {"error": str(exc).splitlines()[0]})

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


def serve(state: CheckpointServer, host: str, port: int) -> int:
    """Answer requests until SIGTERM / SIGINT; prints the address first (``--port 0``: the port chosen)."""

    def stop(signum: int, frame: Any) -> None:  # an explicit handler: SIGTERM stops the server even when the
        raise KeyboardInterrupt  # parent left it ignored (an ignored disposition survives exec)

    signal.signal(signal.SIGTERM, stop)
    httpd = make_http_server(state, host, port)
    print(f"serving {state.loaded} as {state.served_name} on http://{host}:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import CheckpointError

    ap = argparse.ArgumentParser(prog="python -m model.serve", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--checkpoint", required=True, type=Path, help="a finished checkpoint folder")
    ap.add_argument("--vocab-size", type=int, help="the tokenizer's vocabulary size (default: --tokenizer's)")
    ap.add_argument("--tokenizer", type=Path, help="folder with tokenizer.json + tokenizer_config.json (chat)")
    ap.add_argument("--served-model-name", default="policy")
    ap.add_argument(
        "--num-speculative-tokens", type=int, default=0, help="greedy chat answers: MTP drafts per step (0: off)"
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0: any free port (printed on the first line)")
    args = ap.parse_args(argv)
    try:
        state = CheckpointServer(
            args.preset,
            args.checkpoint,
            args.vocab_size,
            args.served_model_name,
            tokenizer_dir=args.tokenizer,
            num_speculative_tokens=args.num_speculative_tokens,
        )
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
        return 2
    return serve(state, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
