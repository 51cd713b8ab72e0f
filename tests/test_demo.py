"""`kexaone demo` (what `make demo` runs) end to end on embedded storage, twice: build, then reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resources.warehouse import Warehouse

pytestmark = pytest.mark.slow
KEXAONE = str(Path(sys.executable).parent / "kexaone")


def run_demo() -> str:
    proc = subprocess.run([KEXAONE, "demo"], capture_output=True, text=True, timeout=1800, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def summary_rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout[stdout.index("kexaone demo finished"):].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("asset"))
    rows = {}
    for line in lines[header + 1:]:
        if not line.strip():
            break
        name, status, version, *where = line.split()
        rows[name] = [status, version, *where]
    return rows


def test_demo_materializes_everything_then_reuses_it(kexaone_env):
    first = summary_rows(run_demo())
    assert first["raw_corpus_stats"][0] == "built"
    assert sum(1 for r in first.values() if r[0] == "observed") == 8
    stats_uri = Path(first["raw_corpus_stats"][2])
    assert stats_uri.parent == kexaone_env["home"] / "artifacts" / "raw_corpus_stats"
    provenance = json.loads((stats_uri / "provenance.json").read_text())
    assert provenance["version"] == first["raw_corpus_stats"][1]
    assert set(provenance["upstream"]) == {f"raw_corpus_{s}" for s in ("en", "ko", "es", "de", "ja", "vi", "code", "stem")}

    out = run_demo()
    second = summary_rows(out)
    assert second["raw_corpus_stats"][:2] == ["reused", first["raw_corpus_stats"][1]]
    assert "make ui" in out and "warehouse:" in out

    wh = Warehouse(path=str(kexaone_env["home"] / "warehouse.duckdb"))
    rows = wh.query("select source, documents from raw_corpus_stats where stats_version = ?",
                    [first["raw_corpus_stats"][1]])
    assert len(rows) == 8 and all(r["documents"] > 0 for r in rows)
    assert wh.query("select count(*) as n from artifacts where asset = 'raw_corpus_stats'") == [{"n": 1}]
