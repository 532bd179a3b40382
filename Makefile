# streamscore: `make demo` and `make test` set everything up themselves (venv, pip, Maven jars, broker).
# The venv grows by what a target needs: `demo` installs the runtime only (no torch), `test`/`lint` add the
# dev tools and the training extra (torch: the model tests must run, never skip), `bench` adds the bench extra.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --progress-bar off
STREAMSCORE := $(VENV)/bin/streamscore
export STREAMSCORE_HOME ?= $(CURDIR)/.streamscore
TEST_PORT ?= 19292
DEMO_PORT ?= 9092
BENCH_PORT ?= 19192
VENV_STAMP := $(VENV)/.created
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
# The model server's own venv (MLServer needs protobuf 6; apache-beam pins the job's venv below 6).
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
SERVE_REQUIREMENTS := "mlserver==1.7.1" "onnxruntime>=1.20" "numpy>=1.26,<2.2"

.PHONY: setup setup-runtime venv jars test test-slow demo lint bench bench-micro clean broker-up broker-down serve-venv

setup: $(DEV_STAMP) $(BENCH_STAMP) jars

setup-runtime: $(RUNTIME_STAMP) jars

# pip's HTTP cache stays cold behind proxies that strip caching headers (as on these machines), so the
# runtime's wheels are kept in WHEELHOUSE once downloaded and later installs (a fresh clone's `make demo`) take
# them from there offline; anything missing there is downloaded into it first.
export WHEELHOUSE ?= $(HOME)/.cache/streamscore/wheels
PIP_OFFLINE := $(PIP) --no-index --find-links $(WHEELHOUSE)

$(VENV_STAMP):
	@command -v java >/dev/null || { echo "Java 17 is required (java not on PATH)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (mvn not on PATH)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@touch $(VENV_STAMP)

# The runtime: what `streamscore run/demo/score/...` import (no torch; models ship as ONNX in the registry).
$(RUNTIME_STAMP): pyproject.toml $(VENV_STAMP)
	@mkdir -p $(WHEELHOUSE)
	$(PIP_OFFLINE) --quiet -e . 2>/dev/null || { \
	  echo "downloading the runtime's wheels into $(WHEELHOUSE)"; \
	  $(PY) -m pip download --progress-bar off --quiet -d $(WHEELHOUSE) . setuptools wheel && \
	  $(PIP_OFFLINE) -e .; }
	$(PY) -m pip check
	@touch $(RUNTIME_STAMP)

# Tests and lint: pytest, ruff, mypy, and torch (training, the model tests and the reference GRU test).
$(DEV_STAMP): $(RUNTIME_STAMP)
	$(PIP) -e ".[dev,train]"
	$(PY) -m pip check
	@touch $(DEV_STAMP)

$(BENCH_STAMP): $(RUNTIME_STAMP)
	$(PIP) -e ".[bench]"
	@touch $(BENCH_STAMP)

venv: $(RUNTIME_STAMP)

# `streamscore models serve` runs MLServer from here; the project is on its PYTHONPATH (not installed in it).
$(SERVE_STAMP): Makefile
	@test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV) || python3 -m venv $(SERVE_VENV)
	@mkdir -p $(WHEELHOUSE)
	$(SERVE_VENV)/bin/python -m pip install --progress-bar off --quiet --no-index --find-links $(WHEELHOUSE) \
	  $(SERVE_REQUIREMENTS) 2>/dev/null || { \
	  echo "downloading the model server's wheels into $(WHEELHOUSE)"; \
	  $(SERVE_VENV)/bin/python -m pip download --progress-bar off --quiet -d $(WHEELHOUSE) $(SERVE_REQUIREMENTS) && \
	  $(SERVE_VENV)/bin/python -m pip install --progress-bar off --quiet --no-index --find-links $(WHEELHOUSE) \
	    $(SERVE_REQUIREMENTS); }
	$(SERVE_VENV)/bin/python -m pip check
	@touch $(SERVE_STAMP)

serve-venv: $(SERVE_STAMP)

jars: $(RUNTIME_STAMP)
	$(PY) -m pipelines.infra.setup_jars

broker-up: setup-runtime
	$(STREAMSCORE) kafka up --port $(TEST_PORT)

broker-down:
	-$(STREAMSCORE) kafka down --port $(TEST_PORT)

# The tests' Flink JVMs compile with C1 only: their jobs are short, and on 2 cores C2's compiler threads compete
# with the job (2026-12-07: 200-event job 16.4 -> 11.7 s, 30k events 25 -> 17 s, three job test files 130 -> 118 s).
# `make demo`, `make bench` and users' runs keep the JVM's default tiered compilation.
TEST_JVM_ARGS ?= -XX:TieredStopAtLevel=1

test: $(DEV_STAMP) $(SERVE_STAMP) jars
	$(STREAMSCORE) kafka up --port $(TEST_PORT)
	STREAMSCORE_TEST_PORT=$(TEST_PORT) JVM_ARGS="$$JVM_ARGS $(TEST_JVM_ARGS)" $(PY) -m pytest; status=$$?; \
	  $(STREAMSCORE) kafka down --port $(TEST_PORT); exit $$status

test-slow: $(DEV_STAMP) $(SERVE_STAMP) jars
	$(STREAMSCORE) kafka up --port $(TEST_PORT)
	STREAMSCORE_TEST_PORT=$(TEST_PORT) JVM_ARGS="$$JVM_ARGS $(TEST_JVM_ARGS)" $(PY) -m pytest -m slow; status=$$?; \
	  $(STREAMSCORE) kafka down --port $(TEST_PORT); exit $$status

demo: setup-runtime
	$(STREAMSCORE) demo --port $(DEMO_PORT)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check pipelines operators state models tests benchmarks
	$(VENV)/bin/mypy

# Peers, limits and streamscore on one broker (benchmarks/bench.py: ~15 min on 2 cores, its whole budget), then
# the tables of README.md and docs/runtimes.md rendered from its JSON (benchmarks/tables.py).
bench: $(BENCH_STAMP) jars
	$(PY) benchmarks/bench.py --port $(BENCH_PORT)
	$(PY) benchmarks/tables.py

# The state-store and model micro-benchmarks (~2 min; not in `make bench`, which uses up its budget).
bench-micro: $(BENCH_STAMP)
	$(PY) benchmarks/state_bench.py --keys 10000
	$(PY) benchmarks/models_bench.py

# Local vs remote model backends (in-process ONNX, a model server over v2 HTTP and gRPC) at batch sizes 1, 64,
# 500 through the risk operator (benchmarks/remote_bench.py, ~1 min): benchmarks/results/remote_bench.{json,png};
# then send->scored through the faust worker and the Flink job with the model in-process, on the server, and on
# the server frozen (benchmarks/remote_runtime_bench.py, ~6 min): benchmarks/results/remote_runtime_bench.{json,png}.
.PHONY: bench-remote
bench-remote: $(BENCH_STAMP) $(SERVE_STAMP)
	$(PY) benchmarks/remote_bench.py
	$(PY) benchmarks/remote_runtime_bench.py

# Scale figures (benchmarks/scale_bench.py, ~15 min on 2 cores): incremental vs full-recompute features at
# history 1..1000, and the risk job's rate, state size and JVM RSS at 10k and 1M distinct keys
# (SCALE_KEYS=10000,1000000,10000000 adds 10M keys: ~10M events through the job, hours on 2 cores).
SCALE_PORT ?= 19592
SCALE_KEYS ?= 10000,1000000
.PHONY: bench-scale
bench-scale: $(BENCH_STAMP) jars
	$(PY) benchmarks/scale_bench.py --port $(SCALE_PORT) --keys $(SCALE_KEYS)

clean:
	-$(STREAMSCORE) kafka down --port $(TEST_PORT)
	rm -rf .streamscore .bench .pytest_cache .mypy_cache .ruff_cache
