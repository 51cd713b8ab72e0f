#!/usr/bin/env bash
# Wheels bench/gpu_check.py needs on a GPU machine whose image has torch and triton but not this project's stack
# (this workplace's H200 image: see bench/gpu_check.py's docstring for the command that installs them there).
# Writes .whl/ (ignored through .git/info/exclude): megatron-core, emerging-optimizers (Muon), dill; about 2.5 MB.
# TransformerEngine is not among them: its wheels are hundreds of MB; where it is absent the TE rows are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "megatron-core==$(version megatron-core)" "emerging-optimizers==$(version emerging-optimizers)" \
    "dill==$(version dill)"
ls -l .whl
