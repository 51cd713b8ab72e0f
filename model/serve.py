"""An OpenAI-compatible completions server over a checkpoint of this project (CPU or GPU, one process), the
policy stages' rollout server: ``posttrain.rollouts.OpenAIRollouts`` talks to it as to vLLM.

    python -m model.serve --preset tiny --checkpoint CKPT --vocab-size V [--host 127.0.0.1 --port 8000]

* ``POST /v1/completions`` as vLLM answers it for token-id prompts: ``prompt`` (a list of token ids), ``n``,
  ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``logprobs`` (the sampled token's log-prob, raw:
  temperature 1 over the tokenizer's vocabulary, vLLM's ``raw_logprobs``), ``return_tokens_as_token_ids``
  (tokens read ``"token_id:<id>"``) and ``stop_token_ids`` (a choice stops after one, included, as with
  ``skip_special_tokens: false``). Sampling is ``model.inference.sample_batch`` seeded with ``seed``: the
  same weights, prompt and seed give the rollouts of ``LocalRollouts`` in the trainer.
* ``POST /v1/load_weights`` ``{"path": DIR}``: the weights of a ``model.checkpoint.save_model`` (or any
  finished) checkpoint replace the served ones; the answer comes once they are loaded. This is the round's
  weight refresh a policy stage asks for (with vLLM the same role falls to its weight-reload hooks).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_ID_PREFIX = "token_id:"


class RequestError(ValueError):
    """A request this server cannot answer; one line, sent back as HTTP 400."""


class CheckpointServer:
    """The model, the loaded checkpoint and the lock every request takes."""

    def __init__(self, preset_name: str, checkpoint_dir: Path, vocab_size: int, served_name: str) -> None:
        from config import get_preset
        from model import checkpoint
        from model.architecture import build_model

        self.preset = get_preset(preset_name)
        self.vocab_size = vocab_size
        self.served_name = served_name
        self.model = build_model(self.preset, vocab_size=vocab_size)
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
        import torch

        from model.inference import sample_batch

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
            try:
                rows = sample_batch(
                    self.model,
                    [prompt] * n,
                    max_tokens,
                    temperature=float(temperature),
                    top_p=float(top_p),
                    eos_token_id=stop[0] if stop else None,
                    vocab_size=self.vocab_size,
                    generator=torch.Generator().manual_seed(seed),
                )
            except ValueError as exc:
                raise RequestError(str(exc)) from None
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
            routes = {"/v1/completions": state.completions, "/v1/load_weights": state.load_weights}
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


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import CheckpointError

    ap = argparse.ArgumentParser(prog="python -m model.serve", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--checkpoint", required=True, type=Path, help="a finished checkpoint folder")
    ap.add_argument("--vocab-size", required=True, type=int, help="the tokenizer's vocabulary size")
    ap.add_argument("--served-model-name", default="policy")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0: any free port (printed on the first line)")
    args = ap.parse_args(argv)
    try:
        state = CheckpointServer(args.preset, args.checkpoint, args.vocab_size, args.served_model_name)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
        return 2

    def stop(signum: int, frame: Any) -> None:  # an explicit handler: SIGTERM stops the server even when the
        raise KeyboardInterrupt  # parent left it ignored (an ignored disposition survives exec)

    signal.signal(signal.SIGTERM, stop)
    httpd = make_http_server(state, args.host, args.port)
    print(
        f"serving {args.checkpoint} as {args.served_model_name} on http://{args.host}:{httpd.server_address[1]}",
        flush=True,
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
