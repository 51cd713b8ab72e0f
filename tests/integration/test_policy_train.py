"""The policy-optimization stage process (``posttrain.policy_train``) on a small tiny model, as Dagster
launches it: AGAPO and GROUPER rounds from a checkpoint, the router frozen bit-identically, metrics per
round, resume after SIGKILL without double-counting, bad input refused before compute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posttrain.launch import cli_args
from tests.posttrain_support import VOCAB, small_chat_tokenizer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)
OVERRIDES = {
    "posttrain.rl.steps": 4,
    "posttrain.rl.prompts_per_step": 2,
    "posttrain.rl.group_size": 4,
    "posttrain.rl.max_response_tokens": 6,
    "posttrain.rl.checkpoint_every_steps": 2,
    "posttrain.preference.steps": 2,
    "posttrain.preference.prompts_per_step": 2,
    "posttrain.preference.group_size": 3,
    "posttrain.preference.max_response_tokens": 6,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model checkpoint (random weights, saved as the trainer saves), a tokenizer and prompts."""
    tmp = tmp_path_factory.mktemp("policy")
    tokenizer = small_chat_tokenizer(tmp / "tokenizer")
    script = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from tokenizers import Tokenizer
from config import get_preset
from model import checkpoint, parallel, training
from model.architecture import build_model
from posttrain import prompts
from posttrain.policy_train import ConstantLR
parallel.initialize()
preset = get_preset("tiny")
tok = Tokenizer.from_file({str(tokenizer)!r})
model = build_model(preset, vocab_size=tok.get_vocab_size(with_added_tokens=True))
optimizer = training.adamw(model, preset)
checkpoint.save({str(tmp / "init")!r}, model, optimizer, ConstantLR(), data_position={{"stage": "sft"}})
records = prompts.build_prompts({{"arithmetic": 12}}, seed=0, held_out_fraction=0.2,
    arithmetic=prompts.ArithmeticParams(low=1, high=9, operations=("+",)))
open({str(tmp / "prompts.jsonl")!r}, "w").write("".join(json.dumps(r) + "\\n" for r in records))
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=300, capture_output=True)
    # an untrained model almost never gets a sum right (every group's rewards equal, nothing to learn from):
    # rule-checked prompts whose reward varies with random text make every round update the policy
    rules = [{"rule": "max_chars", "value": v} for v in (8, 11, 14, 17, 20)] + [{"rule": "lowercase"}]
    extra = [
        {"id": f"short-{i}", "domain": "instruction", "split": "train", "reference": None,
         "messages": [{"role": "user", "content": f"Say something short, in lowercase ({i})."}],
         "verifier": {"kind": "instruction", "rules": rules}}
        for i in range(24)
    ]  # fmt: skip
    with open(tmp / "prompts.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in extra))
    return {"tmp": tmp, "tokenizer": tokenizer, "init": tmp / "init", "prompts": tmp / "prompts.jsonl"}


def command(
    setup, algorithm: str, work: Path, out: Path, overrides: dict | None = None, nproc: int = 1, ep: int = 1
) -> list[str]:
    args = cli_args(
        preset="tiny",
        overrides=overrides or OVERRIDES,
        algorithm=algorithm,
        prompts=setup["prompts"],
        tokenizer=setup["tokenizer"],
        init_from=setup["init"],
        work_dir=work,
        output=out,
        expert_parallel=ep,
    )
    if nproc > 1:  # as the trainer resource launches a stage (torchrun, gloo on CPU)
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "posttrain.policy_train", *args]  # fmt: skip
    return [sys.executable, "-m", "posttrain.policy_train", *args]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=500)


def state(checkpoint_dir: Path) -> dict:
    """The checkpoint's tensors, loaded in a fresh process (Megatron's state is process-global)."""
    out = checkpoint_dir.parent / f"{checkpoint_dir.parent.name}_state.pt"
    script = f"""
import sys, torch
sys.path.insert(0, {str(REPO)!r})
from config import get_preset
from model import checkpoint, parallel
from model.architecture import build_model
parallel.initialize()
m = build_model(get_preset("tiny"), vocab_size={VOCAB})
checkpoint.load_model({str(checkpoint_dir)!r}, m)
torch.save({{k: v for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)}}, {str(out)!r})
"""
    if not out.exists():  # loaded once per checkpoint
        subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=300, capture_output=True)
    import torch

    return torch.load(out)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def straight(setup):
    """One uninterrupted AGAPO run (4 rounds, a checkpoint after round 2): its output folder."""
    work, out = setup["tmp"] / "agapo_work", setup["tmp"] / "agapo_out"
    proc = run(command(setup, "agapo", work, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_agapo_rounds_train_everything_but_the_router(setup, straight):
    import torch

    metrics = rows(straight / "metrics.jsonl")
    assert [r["step"] for r in metrics] == [1, 2, 3, 4]
    for r in metrics:
        assert 0 <= r["mean_reward"] <= 1 and 0 <= r["share_filtered"] <= 1 and 0 <= r["is_truncated_share"] <= 1
        assert r["mean_response_length"] > 0 and r["entropy"] >= 0
    assert any(r["updates"] == 2 for r in metrics[2:])  # a round after the checkpoint trains (resume test)
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["router_frozen_tensors"] > 0 and summary["steps"] == 4
    before, after = state(setup["init"]), state(straight / "checkpoint")
    router = [k for k in before if ".router." in k]
    assert any(k.endswith("expert_bias") for k in router) and any(k.endswith("router.weight") for k in router)
    assert all(torch.equal(before[k], after[k]) for k in router)
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in router)


def test_a_killed_stage_resumes_from_its_checkpoint_and_counts_each_round_once(setup, straight):
    work, out = setup["tmp"] / "killed_work", setup["tmp"] / "killed_out"
    proc = subprocess.Popen(command(setup, "agapo", work, out), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while not (work / "checkpoints" / "step_000002").exists():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the process ended"
        time.sleep(0.05)
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "summary.json").exists() and (work / "metrics.jsonl").exists()
    resumed = run(command(setup, "agapo", work, out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"].endswith("step_000002")

    def comparable(r: dict) -> dict:
        return {k: v for k, v in r.items() if k != "step_seconds"}

    assert [comparable(r) for r in rows(out / "metrics.jsonl")] == [
        comparable(r) for r in rows(straight / "metrics.jsonl")
    ]
    import torch

    # CPU, one process, the same thread count: the resumed run redoes rounds 3-4 bit for bit
    a, b = state(straight / "checkpoint"), state(out / "checkpoint")  # (cached from the first test)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_with_expert_parallelism_match_one_process(setup, straight):
    """The same 4 AGAPO rounds on 2 processes (EP 2: experts split 4 + 4, data parallel 2, one prompt of each
    round per rank, lockstep rollouts) as on one: same rollouts (rewards, lengths), the same loss and the
    same final weights up to float summation order."""
    import torch

    work, out = setup["tmp"] / "ep2_work", setup["tmp"] / "ep2_out"
    proc = run(command(setup, "agapo", work, out, nproc=2, ep=2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["world_size"], summary["expert_parallel"]) == (2, 2)
    one, two = rows(straight / "metrics.jsonl"), rows(out / "metrics.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    for a, b in zip(one, two, strict=True):
        for key in ("mean_reward", "share_filtered", "mean_response_length", "updates"):
            assert a[key] == b[key], (key, a, b)
        for key in ("loss", "entropy", "is_truncated_share"):
            assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (key, a, b)
    assert any(r["updates"] for r in two)
    a, b = state(straight / "checkpoint"), state(out / "checkpoint")
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-4, worst
    router = [k for k in a if ".router." in k]
    assert all(torch.equal(a[k], b[k]) for k in router)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_rollouts_from_a_server_that_loads_each_rounds_weights(setup, straight):
    """AGAPO with its rollouts from ``model.serve`` (an OpenAI-compatible completions server, where a cluster
    runs vLLM): before each round the stage writes its weights and the server loads them, so the server
    samples what the local engine samples: the same rewards and lengths as the uninterrupted local run, the
    same loss and final weights up to float noise. A dead server is refused in one line before compute."""
    import urllib.error
    import urllib.request

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "model.serve", "--preset", "tiny", "--checkpoint", str(setup["init"]),
         "--vocab-size", str(VOCAB), "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, server.stderr.read()[-2000:]
            assert time.time() < deadline, "model.serve did not come up"
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=5) as answer:
                    assert json.load(answer)["data"][0]["root"] == str(setup["init"])
                break
            except OSError:
                time.sleep(0.5)
        work, out = setup["tmp"] / "served_work", setup["tmp"] / "served_out"
        proc = run(command(setup, "agapo", work, out) + ["--rollout-base-url", url])
        assert proc.returncode == 0, proc.stderr[-3000:]
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as answer:  # the last round's weights
            assert json.load(answer)["data"][0]["root"] == str(work / "rollout_weights" / "step_000003")
        assert [p.name for p in (work / "rollout_weights").iterdir()] == ["step_000003"]  # older rounds dropped
        bad = urllib.request.Request(url + "/v1/completions", data=json.dumps({"prompt": "text"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 400
        assert "prompt must be a non-empty list of token ids" in json.load(refused.value)["error"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
            raise AssertionError("model.serve outlived SIGTERM by 60 s") from None
    one, served = rows(straight / "metrics.jsonl"), rows(out / "metrics.jsonl")
    for a, b in zip(one, served, strict=True):
        for key in ("mean_reward", "share_filtered", "mean_response_length", "updates"):
            assert a[key] == b[key], (key, a, b)
        for key in ("loss", "is_truncated_share"):
            assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (key, a, b)
        assert b["entropy"] > 0  # a server reports no distribution: the sampled tokens' surprisal estimates it
    dead = run(command(setup, "agapo", setup["tmp"] / "dead_w", setup["tmp"] / "dead_o") + ["--rollout-base-url", url])
    assert dead.returncode == 2
    assert f"rollout server {url}/v1/models is unreachable" in dead.stderr.strip().splitlines()[-1]


def test_grouper_scores_with_the_judge_and_trains(setup):
    work, out = setup["tmp"] / "grouper_work", setup["tmp"] / "grouper_out"
    proc = run(command(setup, "grouper", work, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = rows(out / "metrics.jsonl")
    assert [r["stage"] for r in metrics] == ["grouper", "grouper"] and "is_truncated_share" not in metrics[0]
    assert any(r["updates"] for r in metrics) and all(0 <= r["mean_reward"] <= 1 for r in metrics)


def test_grouper_with_an_llm_judge_over_http(setup, tmp_path):
    """GROUPER's rubric from an LLM judge: the stage process asks a real OpenAI-compatible chat server
    (the HTTP teacher client) for each response's rubric scores; a judge that gives every response 5s puts
    every reward at rule_weight x rule + (1 - rule_weight) x 1 >= 0.5. A dead endpoint or a missing key is
    refused in one line before compute."""
    from tests.chat_server import ChatServer

    def judge(messages: list[dict]) -> str:
        system = next(m["content"] for m in messages if m["role"] == "system")
        assert "Rubric:" in system and "Response:" in messages[-1]["content"]
        dims = json.loads(system.rsplit("Answer shape (scores are examples): ", 1)[1])
        return json.dumps({d: 5 for d in dims})

    work, out = tmp_path / "w", tmp_path / "o"
    cmd = command(setup, "grouper", work, out) + [
        "--judge-model", "judge-llm", "--judge-cache", str(tmp_path / "judge.sqlite")]  # fmt: skip
    key = {"KEXAONE_JUDGE_API_KEY": "test-key"}
    with ChatServer(judge) as server:
        proc = subprocess.run(cmd + ["--judge-base-url", server.url], cwd=REPO, capture_output=True, text=True,
                              timeout=500, env={**os.environ, **key})  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        rounds, prompts, group = (
            OVERRIDES[f"posttrain.preference.{k}"] for k in ("steps", "prompts_per_step", "group_size")
        )
        assert len(server.answered) == rounds * prompts * group  # one judge request per response
    metrics = rows(out / "metrics.jsonl")
    assert len(metrics) == rounds and all(0.5 <= r["mean_reward"] <= 1 for r in metrics)
    dead = subprocess.run(cmd + ["--judge-base-url", "http://127.0.0.1:9"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **key})  # fmt: skip
    assert dead.returncode == 2 and "judge endpoint http://127.0.0.1:9 is unreachable" in dead.stderr.splitlines()[-1]
    keyless = {k: v for k, v in os.environ.items() if k != "KEXAONE_JUDGE_API_KEY"}
    nokey = subprocess.run(cmd + ["--judge-base-url", "http://127.0.0.1:9"], cwd=REPO, capture_output=True,
                           text=True, timeout=300, env=keyless)  # fmt: skip
    assert nokey.returncode == 2 and "the LLM judge needs $KEXAONE_JUDGE_API_KEY" in nokey.stderr.splitlines()[-1]


def test_bad_input_is_refused_in_one_line_before_compute(setup, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("finished artifact")
    proc = run(command(setup, "ppo", tmp_path / "w", taken))
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --algorithm must be one of agapo, grouper")
    assert "is not empty" in line and (taken / "x").read_text() == "finished artifact"
    proc = run(command(setup, "agapo", tmp_path / "w", tmp_path / "o", {"posttrain.rl.group_size": 1}))
    assert proc.returncode == 2 and "posttrain.rl.group_size must be >= 2" in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "p1", "split": "train", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    proc = run(command({**setup, "prompts": bad}, "agapo", tmp_path / "w", tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith("the record lacks verifier")
    assert not (tmp_path / "w").exists()  # refused before any work
