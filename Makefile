# Quick start: `make search` (set-up + a real search + export) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPORT_DIR ?= exported/digits-cnn

.PHONY: search test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The export directory belongs to this target: a new search replaces it.
search: $(STAMP)
	rm -rf $(EXPORT_DIR)
	$(BIN)/hwprune search --model digits-cnn --scheme balanced --hardware accel-kang-16 \
		--metric latency --budget 0.5 --agent ddpg --seed 0 --export $(EXPORT_DIR)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/hwmodels.py
	$(BIN)/python bench/schemes.py
	$(BIN)/python bench/env_speed.py
	$(BIN)/python bench/proxy_fidelity.py
	$(BIN)/python bench/search_quality.py

clean:
	rm -rf $(VENV) mlruns exported .pytest_cache
