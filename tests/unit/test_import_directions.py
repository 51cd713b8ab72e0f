"""Import directions: the science packages and the configuration know nothing of the orchestration.

``config`` (every number) imports only the standard library. The science packages (model, corpus, tokenizer,
synthetic, evaluation, kernels, posttrain) import ``config`` and each other, never ``kexaone_dag``, ``assets``,
``resources`` or ``dagster`` itself; the one exception is the trainer's side of the Pipes protocol
(``dagster_pipes``, a small standalone package, in ``model/train.py``). Checked on the source (every import
statement, also inside functions) and at run time (what a fresh interpreter has loaded)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCIENCE = ("model", "corpus", "tokenizer", "synthetic", "evaluation", "kernels", "posttrain")
ORCHESTRATION = ("kexaone_dag", "assets", "resources", "dagster")
ALLOWED = {("model/train.py", "dagster_pipes")}  # the trainer reports through Pipes when Dagster launched it


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in forbidden and (rel, top) not in ALLOWED:
                out.append(f"{rel} imports {module}")
    return out


@pytest.mark.parametrize("package", SCIENCE)
def test_science_packages_never_import_the_orchestration(package):
    assert violations(package, ORCHESTRATION) == []


def test_config_imports_only_the_standard_library_and_itself():
    allowed = set(sys.stdlib_module_names) | {"config", "__future__"}
    used = {m.split(".")[0] for p in (REPO / "config").rglob("*.py") for m in imported_modules(p)}
    assert used <= allowed, sorted(used - allowed)


def test_loading_the_science_and_the_code_location_pulls_in_what_it_should():
    """At run time: the science packages load without Dagster; the code location loads without torch or
    Megatron (the trainer runs in its own process)."""
    probe = (
        "import sys, importlib\n"
        "for m in ('config', 'model.stages', 'model.plan', 'corpus.pipeline', 'tokenizer.recipe', "
        "'synthetic', 'evaluation.niah'):\n"
        "    importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'kexaone_dag', 'assets', 'resources'}))\n"
        "import kexaone_dag.definitions\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'megatron'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    science, location = out.stdout.strip().splitlines()[-2:]
    assert science == "[]", f"the science packages loaded {science}"
    assert location == "[]", f"the code location loaded {location}"
