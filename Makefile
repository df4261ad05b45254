# Quick start: `make search` (set-up + a real search + export) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPORT_DIR ?= exported/digits-cnn

FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: search test test-fast lint bench clean data browser ui-check mlflow-server mlflow-server-stop validate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,all]'
	$(BIN)/hwprune list >/dev/null  # writes the name table: later commands start in a second
	touch $(STAMP)

# The export directory belongs to this target: a new search replaces it.
search: $(STAMP)
	rm -rf $(EXPORT_DIR)
	$(BIN)/hwprune search --model digits-cnn --scheme balanced --hardware accel-kang-16 \
		--metric latency --budget 0.5 --agent ddpg --seed 0 --export $(EXPORT_DIR)

# Real data: Debian's Fashion-MNIST, installed where apt-get can (root on Debian/Ubuntu).
# Elsewhere the project still works; --data fashion-mnist then says how to get it.
data:
	@if [ ! -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ] && [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null; then \
		apt-get install -y -q dataset-fashion-mnist >/dev/null \
		|| { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
		|| echo "warning: could not install dataset-fashion-mnist; its tests are skipped"; \
	fi

# A real browser (Debian's chromium) for the UI checks, installed where apt-get can;
# elsewhere the browser test is skipped and says why.
browser:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q chromium >/dev/null \
		|| { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
		|| echo "warning: could not install chromium; the browser test is skipped"; \
	fi

# The MLflow UI as a user sees it: a short search, then screenshots under ui-check/screens/.
ui-check: $(STAMP) browser
	$(BIN)/python -m agents.app.ui_check --out ui-check

test: $(STAMP) data browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The fast tier: tests/unit (pure functions, tiny generated networks; no training, store,
# server, Ray, PostgreSQL or browser), under a minute on 2 cores; tests/integration holds
# the end-to-end rest. `make test` runs both.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP) data
	$(BIN)/python -m bench.hwmodels
	$(BIN)/python -m bench.schemes
	$(BIN)/python -m bench.env_speed
	$(BIN)/python -m bench.proxy_fidelity
	$(BIN)/python -m bench.search_quality

# A shared tracking server: PostgreSQL + mlflow server under .hwprune-server/ (git-ignored),
# on 127.0.0.1:$(MLFLOW_PORT). Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT)
MLFLOW_PORT ?= 5000
mlflow-server: $(STAMP)
	$(BIN)/hwprune server start --port $(MLFLOW_PORT)

mlflow-server-stop: $(STAMP)
	$(BIN)/hwprune server stop

clean:
	rm -rf $(VENV) mlruns exported .pytest_cache

# SCALE-Sim v3 needs numpy < 2: its own venv, used only to (re)simulate the stored reference.
.venv-scalesim/bin/python:
	$(PYTHON) -m venv .venv-scalesim
	.venv-scalesim/bin/pip install -q 'numpy<2' scalesim

# The cost models against their references (the stored ones; see bench/validate_*.py).
validate: $(STAMP) data
	$(BIN)/python -m bench.validate_scalesim
	$(BIN)/python -m bench.validate_mnsim
	$(BIN)/python -m bench.validate_cpu
