"""``kernels/`` against the torch references under Triton's interpreter, on CPU (``tests/unit/kernels_interpreted.py``).

``TRITON_INTERPRET`` is read when ``@triton.jit`` decorates, including triton's own ``triton.language`` helpers at
``import triton``; once anything in this process imported triton (Megatron does), no module can be switched to the
interpreter. So the checks run in a fresh interpreter started with ``TRITON_INTERPRET=1``; a failure prints its
pytest report here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).resolve().parent / "kernels_interpreted.py"
REPO = CHECKS.parents[2]


@pytest.mark.timeout(300)
def test_the_kernels_equal_their_references_under_the_triton_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "KEXAONE_KERNELS": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(CHECKS), "-q", "-p", "no:cacheprovider", "--timeout", "240"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 40 and "skipped" not in summary and "failed" not in summary, summary
