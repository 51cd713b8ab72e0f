"""The chat endpoint of ``model.serve`` (what ``kexaone serve`` starts) answers the project's own teacher client
(``synthetic.http_teacher.HttpTeacher``, the judge's and the synthetic data's client) with the tokens local
greedy generation gives (``generate_batch``; the server decodes on the windowed cache with 2 MTP drafts per
step), through the tokenizer's chat template."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.model_support import MEGATRON_QUIET
from tests.posttrain_support import small_chat_tokenizer

pytestmark = [*MEGATRON_QUIET, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
KEXAONE = str(Path(sys.executable).parent / "kexaone")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny model (seeded init) saved as a checkpoint, the small chat tokenizer, and the server over them."""
    from model import checkpoint, parallel
    from model.architecture import build_model
    from tests.posttrain_support import VOCAB

    tmp = tmp_path_factory.mktemp("serve")
    parallel.initialize()
    from config import get_preset

    model = build_model(get_preset("tiny"), vocab_size=VOCAB, seed=3)
    checkpoint.save_model(tmp / "ckpt", model)
    small_chat_tokenizer(tmp / "tok")
    server = subprocess.Popen(
        [sys.executable, "-m", "model.serve", "--preset", "tiny", "--checkpoint", str(tmp / "ckpt"),
         "--tokenizer", str(tmp / "tok"), "--served-model-name", "tiny-chat", "--num-speculative-tokens", "2",
         "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("serving "), line + server.stderr.read()[-2000:]
        url = line.split(" on ")[-1].strip()
        yield {"url": url, "model": model, "tmp": tmp}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            pytest.fail("the server outlived SIGTERM by 30 s")


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_teacher_client_gets_what_local_greedy_generation_says(served, tmp_path):
    from transformers import PreTrainedTokenizerFast

    from model.inference import generate_batch
    from synthetic.http_teacher import HttpTeacher
    from synthetic.teacher import TeacherRequest

    questions = ["What is 37 + 48?", "Which is larger, 41 or 24?"]
    teacher = HttpTeacher(
        base_url=served["url"] + "/v1", model="tiny-chat", api_key="unused", cache_path=tmp_path / "cache.sqlite",
        max_tokens=12, temperature=0.0,
    )  # fmt: skip
    teacher.preflight()
    requests = [TeacherRequest("judge", (("user", q),), "v1") for q in questions]
    answers = teacher.complete_many(requests)
    teacher.close()
    tok = PreTrainedTokenizerFast.from_pretrained(str(served["tmp"] / "tok"))
    for question, answer in zip(questions, answers):
        messages = [{"role": "user", "content": question}]
        ids = tok(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=False),
                  add_special_tokens=False)["input_ids"]  # fmt: skip
        expected = generate_batch(served["model"], [ids], 12, eos_token_id=tok.eos_token_id, vocab_size=len(tok))[0]
        if expected[-1:] == [tok.eos_token_id]:
            expected = expected[:-1]
        assert answer.text == tok.decode(expected, skip_special_tokens=False)
        assert answer.tokens_in == len(ids) and 1 <= answer.tokens_out <= 12


def test_sampling_is_seeded_and_reasoning_mode_splits_the_think_block(served):
    url = served["url"] + "/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "Convert 3.5 miles to kilometres."}], "max_tokens": 10,
            "temperature": 1.0, "top_p": 0.95, "seed": 5, "n": 2}  # fmt: skip
    status, first = post(url, body)
    assert status == 200 and first["object"] == "chat.completion" and first["model"] == "tiny-chat"
    assert post(url, body)[1]["choices"] == first["choices"]  # same seed, same answers
    assert len(first["choices"]) == 2 and first["usage"]["completion_tokens"] >= 2
    status, thought = post(url, {**body, "chat_template_kwargs": {"enable_thinking": True}})
    assert status == 200 and all("reasoning_content" in c["message"] for c in thought["choices"])


def test_bad_requests_get_one_line_400s(served):
    url = served["url"] + "/v1/chat/completions"
    cases = [
        ({"max_tokens": 4}, "messages must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000}, "exceed the model's context"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, "temperature must be a number >= 0"),
    ]
    for body, message in cases:
        status, answer = post(url, body)
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"], answer


def test_kexaone_serve_refuses_what_it_cannot_serve_in_one_line(tmp_path):
    env = {"KEXAONE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster_home"), "PATH": "/usr/bin"}
    proc = subprocess.run([KEXAONE, "serve", "tokenizer_report"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
        and "'tokenizer_report' is not a checkpoint asset" in proc.stderr
    )
    proc = subprocess.run(
        [KEXAONE, "serve", "preference_checkpoint"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2 and "preference_checkpoint has no materialization" in proc.stderr
