"""bench/gpu_check.py on a machine without a GPU: its CPU-possible parts run for real, every GPU part says in one
line why it was skipped, and its comparisons flag what they should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import Check, compare_curves, kernel_matches, token_stream

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_the_script_runs_its_cpu_parts_and_explains_every_skip(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--steps", "10", "--no-write", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    checks = {c["name"]: c for c in json.loads((tmp_path / "gpu_check.json").read_text())}
    assert list(checks) == [
        "environment",
        "cpu reference",
        "tiny on CUDA, local modules",
        "tiny on TE bf16",
        "FP8 switch",
        "full-width MoE layer",
        "context parallelism",
        "kernels",
    ]
    assert checks["environment"]["status"] == "ok"
    assert checks["environment"]["values"]["matmul_tflops"] > 0
    ref = checks["cpu reference"]
    assert ref["status"] == "ok", ref["detail"]
    assert ref["values"]["steps"] == 10
    assert ref["values"]["last_loss"] < ref["values"]["first_loss"] - 0.3  # the Markov stream is being learned
    for name in list(checks)[2:]:
        assert checks[name]["status"] == "skipped", (name, checks[name])
        assert checks[name]["detail"] == "no CUDA device on this machine"
    assert not (tmp_path / "docs").exists()


def test_curve_comparison_passes_equal_curves_and_fails_a_drift():
    ok = Check("same")
    compare_curves(ok, [8.0, 6.0, 5.0], [8.0, 6.0001, 5.0], rtol=1e-3)
    assert ok.status == "ok"
    drift = Check("drift")
    compare_curves(drift, [8.0, 6.0, 5.5], [8.0, 6.0, 5.0], rtol=1e-3)
    assert drift.status == "FAILED"
    assert drift.values["max_rel_diff_vs_cpu"] == pytest.approx(0.1)
    diverged = Check("nan")
    compare_curves(diverged, [8.0, float("nan")], [8.0, 6.0], rtol=1.0)
    assert diverged.status == "FAILED"


def test_kernel_rows_are_judged_by_their_error_column():
    assert kernel_matches("attention window 128, ring, batch 8", "7.8e-03")
    assert not kernel_matches("attention global 4K, batch 8", "5.0e-02")
    assert not kernel_matches("attention global 4K, batch 8", "ref OOM")
    assert kernel_matches("router T=16384", "0.0e+00")
    assert not kernel_matches("router T=16384", "0.0e+00, CHOICES DIFFER")


def test_the_token_stream_is_a_fixed_two_successor_chain():
    a = token_stream(50, 2, 32, 3, seed=5)
    b = token_stream(50, 2, 32, 3, seed=5)
    assert all(x.equal(y) for x, y in zip(a, b))
    assert a[0].shape == (2, 33)
    pairs: dict[int, set[int]] = {}
    for rows in a:
        for row in rows.tolist():
            for prev, nxt in zip(row, row[1:]):
                pairs.setdefault(prev, set()).add(nxt)
    assert max(len(s) for s in pairs.values()) <= 2
