# streamscore: `make demo` and `make test` set everything up themselves (venv, pip, Maven jars, broker).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STREAMSCORE := $(VENV)/bin/streamscore
export STREAMSCORE_HOME ?= $(CURDIR)/.streamscore
TEST_PORT ?= 19292
DEMO_PORT ?= 9092
STAMP := $(VENV)/.installed

.PHONY: setup venv jars test test-slow demo lint bench clean broker-up broker-down

setup: $(STAMP) jars

$(STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is required (java not on PATH)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (mvn not on PATH)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel setuptools
	$(PY) -m pip install -e ".[dev,bench,train]"
	$(PY) -m pip check
	@touch $(STAMP)

venv: $(STAMP)

jars: $(STAMP)
	$(PY) -m pipelines.infra.setup_jars

broker-up: setup
	$(STREAMSCORE) kafka up --port $(TEST_PORT)

broker-down:
	-$(STREAMSCORE) kafka down --port $(TEST_PORT)

test: setup
	$(STREAMSCORE) kafka up --port $(TEST_PORT)
	STREAMSCORE_TEST_PORT=$(TEST_PORT) $(PY) -m pytest; status=$$?; \
	  $(STREAMSCORE) kafka down --port $(TEST_PORT); exit $$status

test-slow: setup
	$(STREAMSCORE) kafka up --port $(TEST_PORT)
	STREAMSCORE_TEST_PORT=$(TEST_PORT) $(PY) -m pytest -m slow; status=$$?; \
	  $(STREAMSCORE) kafka down --port $(TEST_PORT); exit $$status

demo: setup
	$(STREAMSCORE) demo --port $(DEMO_PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check pipelines operators state models tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/state_bench.py --keys 10000
	$(PY) benchmarks/models_bench.py

clean:
	-$(STREAMSCORE) kafka down --port $(TEST_PORT)
	rm -rf .streamscore .pytest_cache .mypy_cache .ruff_cache
