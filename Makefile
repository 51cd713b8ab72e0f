# The two commands a newcomer runs: `make demo` and `make test`. Both set up .venv/ themselves.
.PHONY: setup demo lint test test-unit test-fast ui validate clean

export DAGSTER_HOME ?= $(CURDIR)/.kexaone/dagster_home

setup:
	@scripts/bootstrap.sh

demo: setup  ## materialize the whole tiny DAG on embedded storage and print a summary
	KEXAONE_PRESET=$${KEXAONE_PRESET:-tiny} .venv/bin/kexaone demo

lint: setup  ## ruff: lint and format check (configured in pyproject.toml; `make test` runs it first)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: setup lint  ## lint, then the full test suite tier by tier (what CI runs)
	@scripts/install_slurm.sh
	@scripts/install_chromium.sh
	.venv/bin/python -m pytest tests/unit tests/integration tests/e2e -q

test-unit: setup  ## the inner loop: no Dagster instance, no servers, no chain (under 3 min on 2 cores)
	.venv/bin/python -m pytest tests/unit -q

test-fast: setup  ## everything but the slow end-to-end tests
	@scripts/install_slurm.sh
	@scripts/install_chromium.sh
	.venv/bin/python -m pytest tests -q -m "not slow"

ui: setup  ## Dagster UI + daemon on http://127.0.0.1:3000 over the same embedded instance
	@mkdir -p $(DAGSTER_HOME)
	@[ -f $(DAGSTER_HOME)/dagster.yaml ] || cp deploy/local/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

validate: setup  ## check preset, stores and corpus folders without computing anything
	.venv/bin/kexaone validate

clean:  ## remove local state (artifacts, warehouse, Dagster instance); keeps .venv
	rm -rf .kexaone
