# The two commands of the README: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.eeg2bold-installed
# examples/demo/study.yaml names this folder too
DEMO_DIR := demo_out
# the tests run in random order; the command line shows the seed, `make test SEED=N` repeats it
SEED ?= $(shell date +%s)
# pytest-xdist workers, each taking whole test files (--dist loadfile: a file's module fixtures
# are built once); most of the suite waits on processes (Ray, Slurm, LSL), so two overlap well
# on two cores. `make test WORKERS=0` runs the tests in one process.
WORKERS ?= 2

.PHONY: demo test lint docs bench clean

# torch first, pinned: a bare `torch` requirement would pull several GB of CUDA packages.
# System packages the tests use (Debian's chromium for the report's browser check; Slurm
# with slurmdbd and munge for the live cluster tests) are installed here when we may (root
# with apt-get), never inside a test; without them those tests skip with their reason.
$(STAMP): pyproject.toml
	@missing=""; for c in chromium:chromium slurmctld:slurm-wlm slurmdbd:slurmdbd munged:munge; do \
		command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c#*:}"; done; \
	if [ -n "$$missing" ]; then \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
			&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq $$missing; } >/dev/null 2>&1; } \
		|| echo "note: not installed:$$missing; the tests that need them will skip"; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

# simulate -> sweep (within, LOSO, calibration curve; ridge, beira, twin) -> report.
# Re-running reuses what is done: the simulation is idempotent and --resume skips finished arms.
demo: $(STAMP)
	$(BIN)/eeg2bold simulate $(DEMO_DIR)/demo.zarr --subjects 6 --minutes 20 --channels 16 --sfreq 100 --seed 0
	$(BIN)/eeg2bold sweep examples/demo/study.yaml --resume
	$(BIN)/eeg2bold report $(DEMO_DIR)/sweep -o $(DEMO_DIR)/report.html --json $(DEMO_DIR)/report.json

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p randomly --randomly-seed=$(SEED) -n $(WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# the documentation site, offline, warnings as errors; its reference is generated from the code
docs: $(STAMP)
	$(BIN)/sphinx-build -W -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_windows.py
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_codecs.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_beira.py --steps 60 --eval-every 30
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_arms.py
	$(BIN)/python benchmarks/bench_search.py --subjects 6 --minutes 8 --channels 16 \
		--models ridge beira linker --epochs 12 --num-samples 8
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python benchmarks/bench_parcels_report.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_generalization.py
	$(BIN)/python benchmarks/bench_demo.py
	$(BIN)/python benchmarks/bench_slurm.py
	$(BIN)/python benchmarks/bench_gpu.py || test $$? -eq 2  # 2: no GPU here, nothing measured

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache docs/_build docs/reference
