# The README's two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
AUTOML := .bench-automl

.PHONY: docs run test test-e2e test-gcp test-slow lint audit bench bench-quality bench-automl bench-peers test-peers soak lock clean emulators

# Creates the virtual environment and installs the project with the locked versions.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

run: $(STAMP) ## the whole pipeline on 127.0.0.1:8080
	$(BIN)/minimlops up

test: $(STAMP) lint ## the default test tier: unit, contract, fuzz and the e2e smoke (about 10 minutes)
	$(BIN)/python -m pytest -m "(not slow and not gcp and not e2e) or smoke" --durations=15

test-e2e: $(STAMP) ## the e2e tier: running servers, kill -9, faults, a browser (about 20 minutes)
	$(BIN)/python -m pytest -m "e2e and not smoke and not slow and not gcp" --durations=15

test-gcp: $(STAMP) ## the Google Cloud path on emulators (builds, starts and stops them)
	scripts/emulators/run.sh $(BIN)/python -m pytest -m gcp

emulators: ## start the emulators for manual use: eval "$$(make -s emulators)"
	@scripts/emulators/setup.sh
	@scripts/emulators/start.sh

test-slow: $(STAMP) ## many-crash trials
	$(BIN)/python -m pytest -m slow

audit: $(STAMP) ## known vulnerabilities with a fix, in requirements.lock (needs PyPI)
	$(BIN)/python bench/audit.py

bench: $(STAMP) ## serving and ingestion benchmarks (needs wrk); writes bench/results/latest.*, appends history.jsonl, refreshes the docs' figures
	$(BIN)/minimlops bench --out bench/results
	$(BIN)/python scripts/reference.py

bench-quality: $(STAMP) $(AUTOML)/.installed-stamp ## model quality against LightGBM, HistGradientBoosting and linear defaults, AutoGluon and FLAML (own venv); writes bench/results/quality.*
	BENCH_AUTOML_PYTHON=$(AUTOML)/bin/python $(BIN)/minimlops bench --quality --out bench/results
	$(BIN)/python scripts/reference.py

# AutoGluon and FLAML, for make bench-quality: a venv of their own, apart from
# the project's and from $(PEERS) (AutoGluon caps pandas and pyarrow below what
# MLflow's venv has); CPU only, no torch (about 1 GB, 2 minutes).
$(AUTOML)/.installed-stamp: bench/peers/requirements-automl.lock
	$(PYTHON) -m venv $(AUTOML)
	$(AUTOML)/bin/python -m pip install --quiet -r bench/peers/requirements-automl.lock
	touch $@

bench-automl: $(AUTOML)/.installed-stamp ## the AutoML peers' venv alone (.bench-automl)

PEERS := .bench-peers
$(PEERS)/.installed-stamp: bench/peers/requirements.lock
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet -r bench/peers/requirements.lock
	touch $@

bench-peers: $(STAMP) $(PEERS)/.installed-stamp ## make bench, plus mlflow models serve and the exercise's function (own venv)
	$(BIN)/minimlops bench --peers $(PEERS)/bin/python --out bench/results

test-peers: $(STAMP) $(PEERS)/.installed-stamp ## smoke of make bench-peers (installs the peers' venv)
	MINIMLOPS_PEERS_PYTHON=$(PEERS)/bin/python $(BIN)/python -m pytest tests/e2e/test_bench_smoke.py -k peers

soak: $(STAMP) ## 10 minutes of mixed traffic; writes bench/results/soak.md
	$(BIN)/python bench/soak.py --minutes 10 --rate 200 --out bench/results/soak.md

docs: $(STAMP) ## regenerate docs/reference/ and the figures in the README and docs/ (the tests check they are current)
	$(BIN)/python scripts/reference.py

lint: $(STAMP) ## ruff (lint and format), the import contracts, mypy
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/lint-imports
	$(BIN)/mypy

lock: $(STAMP) ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --upgrade -o requirements.lock

clean:
	rm -rf $(VENV) $(PEERS) $(AUTOML) .pytest_cache .ruff_cache .emulators build
