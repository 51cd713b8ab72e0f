"""What a checkpoint's asset page shows before its first run: the stage's plan under the preset the code
location was loaded with, and the list of what each materialization will carry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config import get_preset
from model.stages import CONTEXT_PREFIX, stage_plan
from tests.conftest import REPO

CHECKPOINTS = {
    **{f"pretrain_{s}": s for s in ("stage1", "stage2", "stage3")},
    **{f"context_ext_{s}": CONTEXT_PREFIX + s for s in ("stage1", "stage2")},
}
# the asset definitions are built when the code location loads, so each preset loads in its own interpreter
PROBE = """
import json, sys
from dagster import AssetKey
from kexaone_dag.definitions import defs
out = {}
for name in sys.argv[1:]:
    md = defs.get_assets_def(AssetKey(name)).metadata_by_key[AssetKey(name)]
    out[name] = {"plan": [dict(r.data) for r in md["plan"].records], "shows": md["each materialization shows"].value}
print(json.dumps(out))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("preset", ["tiny", "k-exaone-236b"])
def test_a_checkpoint_page_shows_its_plan_before_any_run(preset):
    env = {**os.environ, "KEXAONE_PRESET": preset}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *CHECKPOINTS], cwd=REPO, env=env, capture_output=True, text=True, timeout=110
    )
    assert proc.returncode == 0, proc.stderr
    pages, p = json.loads(proc.stdout), get_preset(preset)
    for name, stage in CHECKPOINTS.items():
        (row,) = pages[name]["plan"]
        plan = stage_plan(p, stage)
        assert row["preset"] == preset and row["steps"] == plan.steps and row["seq_length"] == plan.seq_length
        assert row["tokens"] == plan.steps * plan.seq_length * plan.global_batch_size
        shows = pages[name]["shows"]
        assert "loss_curve" in shows and "lineage" in shows
        assert ("niah_grid" in shows) == name.startswith("context_ext")
