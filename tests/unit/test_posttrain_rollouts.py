"""Rollout engines (``posttrain.rollouts``): the local engine on the tiny model (determinism, greedy limit,
EOS per row, rollout log-probs equal to the trainer's own scoring so the first importance ratio is 1) and
the OpenAI-compatible client against a small real HTTP server serving vLLM-shaped answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from model.inference import generate_batch, top_p_filter
from posttrain.rollouts import LocalRollouts, OpenAIRollouts, RolloutEngine, RolloutError, parse_token_id

VOCAB = 300
PROMPT = [5, 6, 7, 8, 9]


def _engine(model, eos=None) -> LocalRollouts:
    return LocalRollouts(model, eos_token_id=eos, vocab_size=VOCAB)


def _gen(engine, seed=0, n=4, **kw):
    args = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 0.95}
    args.update(kw)
    return engine.generate(PROMPT, n, seed=seed, **args)


def test_top_p_masks_the_tail_and_keeps_the_crossing_token():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    for p in (0.3, 0.9):
        kept = torch.isfinite(top_p_filter(logits, p))
        probs = torch.softmax(logits, dim=-1)
        for row in range(3):
            mass = probs[row][kept[row]].sum()
            smallest = probs[row][kept[row]].min()
            assert mass >= p - 1e-6 and mass - smallest < p  # the smallest set reaching p, nothing more
            assert (probs[row][~kept[row]] <= smallest).all()  # only the least likely tokens are masked


def test_local_rollouts_are_deterministic_per_seed_and_greedy_in_the_limit(tiny):
    _, model = tiny
    engine = _engine(model)
    assert isinstance(engine, RolloutEngine)
    a, b, c = _gen(engine, 1), _gen(engine, 1), _gen(engine, 2)
    assert [r.ids for r in a] == [r.ids for r in b] and [r.logprobs for r in a] == [r.logprobs for r in b]
    assert [r.ids for r in a] != [r.ids for r in c]
    greedy = generate_batch(model, [PROMPT] * 2, 6, vocab_size=VOCAB)
    assert [r.ids for r in _gen(engine, 3, n=2, temperature=1e-4, top_p=1.0)] == greedy
    assert [r.ids for r in _gen(engine, 4, n=2, top_p=1e-6)] == greedy


def test_rows_stop_at_eos_independently(tiny):
    _, model = tiny
    free = _gen(_engine(model), 5, max_new_tokens=8)
    eos = free[0].ids[0]
    stopped = _gen(_engine(model, eos), 5, max_new_tokens=8)
    assert stopped[0].ids == [eos] and len(stopped[0].logprobs) == len(stopped[0].entropy) == 1
    for full, row in zip(free, stopped):  # same draws; each row cut right after its own first EOS
        cut = full.ids.index(eos) + 1 if eos in full.ids else len(full.ids)
        assert row.ids == full.ids[:cut] and row.logprobs == full.logprobs[:cut]


def test_rollout_logprobs_are_the_trainers_scoring_so_the_first_ratio_is_one(tiny):
    from posttrain.policy_train import response_logprobs

    _, model = tiny
    rows = _gen(_engine(model), 6, temperature=0.7, top_p=0.9)  # decoding shape differs, the record does not
    model.eval()
    with torch.no_grad():
        length = max(len(r.ids) for r in rows)
        trainer = response_logprobs(model, PROMPT, [r.ids for r in rows], 0, VOCAB)
    assert trainer.shape == (len(rows), length)
    for i, r in enumerate(rows):
        diff = (trainer[i, : len(r.ids)] - torch.tensor(r.logprobs)).abs().max().item()
        assert diff < 1e-5, diff
        assert all(e >= 0 for e in r.entropy)
    with torch.no_grad():  # right-padded as a rank of a split model pads (causal: real positions unchanged)
        padded = response_logprobs(model, PROMPT, [r.ids for r in rows], 0, VOCAB, pad_to=len(PROMPT) + length + 9)
    assert padded.shape == trainer.shape and (padded - trainer).abs().max().item() < 1e-5


# -- the OpenAI-compatible client -----------------------------------------------------------------------


def _vllm_answer(n: int) -> dict:
    choices = []
    for i in reversed(range(n)):  # out of order on purpose: rows follow "index"
        ids = [40 + i, 41, 2]
        choices.append(
            {
                "index": i,
                "text": "...",
                "logprobs": {
                    "tokens": [f"token_id:{t}" for t in ids],
                    "token_logprobs": [-0.5 - i, -1.0, -0.25],
                    "top_logprobs": None,
                    "text_offset": [0, 1, 2],
                },
                "finish_reason": "stop",
            }
        )
    return {"id": "cmpl-1", "object": "text_completion", "model": "policy", "choices": choices}


@pytest.fixture
def server():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if body["model"] == "broken":
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": "engine died"}')
                return
            answer = json.dumps(_vllm_answer(body["n"] if body["model"] != "short" else 1)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_openai_rollouts_send_token_ids_and_parse_vllm_logprobs(server):
    url, seen = server
    engine = OpenAIRollouts(url + "/v1/", "policy", api_key="k")
    assert isinstance(engine, RolloutEngine)
    rows = engine.generate([1, 2, 3], 3, max_new_tokens=16, temperature=1.0, top_p=0.95, seed=7)
    request = seen[-1]
    assert request["path"] == "/v1/completions" and request["auth"] == "Bearer k"
    assert request["body"] == {
        "model": "policy",
        "prompt": [1, 2, 3],
        "n": 3,
        "max_tokens": 16,
        "temperature": 1.0,
        "top_p": 0.95,
        "seed": 7,
        "logprobs": 0,
        "return_tokens_as_token_ids": True,
        "skip_special_tokens": False,
    }
    assert [r.ids for r in rows] == [[40, 41, 2], [41, 41, 2], [42, 41, 2]]
    assert rows[1].logprobs == [-1.5, -1.0, -0.25] and rows[1].entropy == [1.5, 1.0, 0.25]


def test_openai_rollouts_fail_in_one_line(server):
    url, _ = server
    args = {"max_new_tokens": 4, "temperature": 1.0, "top_p": 1.0, "seed": 0}
    with pytest.raises(RolloutError, match="HTTP 500: .*engine died"):
        OpenAIRollouts(url, "broken").generate([1], 2, **args)
    with pytest.raises(RolloutError, match="1 choices, expected n = 2"):
        OpenAIRollouts(url, "short").generate([1], 2, **args)
    with pytest.raises(RolloutError, match="not a token id"):
        parse_token_id("hello")
    with pytest.raises(RolloutError, match="127.0.0.1:9"):
        OpenAIRollouts("http://127.0.0.1:9", "policy", timeout_s=5).generate([1], 1, **args)


def test_refresh_goes_through_the_deployments_reload_hook():
    with pytest.raises(RolloutError, match="no reload hook"):
        OpenAIRollouts("http://x", "policy").refresh("/exports/round_3")
    loaded: list[str] = []
    OpenAIRollouts("http://x", "policy", reload=loaded.append).refresh("/exports/round_3")
    assert loaded == ["/exports/round_3"]
