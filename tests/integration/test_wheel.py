"""The code location as it ships: build the wheel, install it with the locked runtime dependencies into a fresh
venv outside the checkout, and load it there the way Dagster does. Catches a package the code imports but the
wheel leaves out (once `evaluation` was missing from `[tool.hatch.build.targets.wheel] packages`)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from kexaone_dag.definitions import build_definitions

REPO = Path(__file__).resolve().parents[2]

# Prints what the installed code location holds and where every first-party module it imported came from.
PROBE = textwrap.dedent(
    """
    import json, sys
    from kexaone_dag.definitions import defs
    packages = set(json.loads(sys.argv[1]))
    print(json.dumps({
        "keys": sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()),
        "modules": {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] in packages},
    }))
    """
)


def find_uv() -> str:
    """uv is a pinned dev dependency, so it sits next to the test interpreter after `uv sync`/`make setup`."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.skip(
            "no `uv` next to the interpreter or on PATH (the dev dependency group was not installed): "
            "cannot build the wheel or install the locked dependencies"
        )
    return found


def run_uv(uv: str, *args: str, cwd: Path, env: dict[str, str]) -> str:
    """Offline from uv's cache first (what `make setup` filled); on a cache miss, the same command online."""
    proc = subprocess.run([uv, *args, "--offline"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        proc = subprocess.run([uv, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, f"uv {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def checkout_packages() -> set[str]:
    return {p.parent.name for p in REPO.glob("*/__init__.py")}


def imported_top_levels(source: str) -> set[str]:
    """Top-level names of every absolute import in a module, function-level (lazy) imports included."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.slow
@pytest.mark.timeout(600)  # seconds offline from a warm uv cache; the limit leaves room for the online fallback
def test_installed_wheel_loads_the_same_code_location(kexaone_env, tmp_path):
    assert not tmp_path.resolve().is_relative_to(REPO)
    uv = find_uv()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    env["UV_LINK_MODE"] = "hardlink"  # uv falls back to copying when the cache is on another filesystem
    env["UV_PYTHON_DOWNLOADS"] = "never"  # every uv call below gets this interpreter (3.12, like the lock)

    # 1. the wheel, exactly as `uv build` makes it from this working tree
    dist = tmp_path / "dist"
    run_uv(uv, "build", "--wheel", "--python", sys.executable, "--out-dir", str(dist), str(REPO), cwd=tmp_path, env=env)
    (wheel,) = dist.glob("kexaone_dag-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped_sources = {n: zf.read(n).decode("utf-8") for n in names if n.endswith(".py")}
    in_wheel = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/__init__.py")}

    # every checkout package that shipped code imports (also inside functions) must ship too
    ours = checkout_packages()
    imported = set().union(*(imported_top_levels(src) for src in shipped_sources.values())) & ours
    assert "kexaone_dag" in in_wheel
    assert imported <= in_wheel, f"imported by the wheel's code but not in the wheel: {sorted(imported - in_wheel)}"

    # 2. a fresh venv with the locked runtime dependencies only (no dev group), then the wheel with its own
    # requirements resolved against them
    venv = tmp_path / "venv"
    run_uv(
        uv,
        "sync",
        "--project",
        str(REPO),
        "--frozen",
        "--no-dev",
        "--no-install-project",
        "--python",
        sys.executable,
        cwd=tmp_path,
        env={**env, "UV_PROJECT_ENVIRONMENT": str(venv)},
    )
    run_uv(uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel), cwd=tmp_path, env=env)

    # 3. load it from an empty folder, so nothing of the checkout can be on sys.path
    workdir = tmp_path / "run"
    workdir.mkdir()
    expected = build_definitions().resolve_asset_graph()

    listed = subprocess.run(
        [str(venv / "bin" / "dagster"), "asset", "list", "-m", "kexaone_dag.definitions"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert set(listed.stdout.split()) == {k.to_user_string() for k in expected.materializable_asset_keys}

    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", PROBE, json.dumps(sorted(ours))],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["keys"] == sorted(k.to_user_string() for k in expected.get_all_asset_keys())
    site_packages = (venv / "lib").resolve()
    assert Path(seen["modules"]["kexaone_dag"]).resolve().is_relative_to(site_packages)
    from_checkout = {
        name: path
        for name, path in seen["modules"].items()
        if path is None or not Path(path).resolve().is_relative_to(site_packages)
    }
    assert not from_checkout, f"loaded from outside the installed wheel: {from_checkout}"
