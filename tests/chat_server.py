"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the teacher tests (stdlib
http.server in a thread; streaming off). Behaviour is scripted per test: a queue of faults served to the
next requests (429 with Retry-After, 500, a stall past the client's timeout, a malformed body), a point
after which every request is refused (an interrupted run), and a responder that writes the answer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class ChatServer:
    def __init__(self, responder: Callable[[list[dict]], str]) -> None:
        self.responder = responder
        self.faults: list[str] = []  # "429", "500", "stall", "malformed", "400"
        self.refuse_after: int | None = None  # answers served before every request gets HTTP 400
        self.stall_s = 1.5
        self.attempts = 0  # every POST received
        self.answered: list[str] = []  # user message of every successful answer
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, b'{"object": "list", "data": []}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization") != "Bearer test-key":
                    return self._send(401, b'{"error": "bad key"}')
                with server.lock:
                    server.attempts += 1
                    fault = server.faults.pop(0) if server.faults else None
                    if (
                        fault is None
                        and server.refuse_after is not None
                        and len(server.answered) >= server.refuse_after
                    ):
                        fault = "400"
                if fault == "429":
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0.2"})
                if fault == "500":
                    return self._send(500, b'{"error": "internal"}')
                if fault == "400":
                    return self._send(400, b'{"error": "refused"}')
                if fault == "stall":
                    time.sleep(server.stall_s)
                    return self._send(200, b"{}")
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"message": {}}]')
                content = server.responder(body["messages"])
                user = next(m["content"] for m in body["messages"] if m["role"] == "user")
                with server.lock:
                    server.answered.append(user)
                payload = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
                self._send(200, json.dumps(payload).encode())

            def _send(self, status, data, headers=None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
