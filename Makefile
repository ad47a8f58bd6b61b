# `make demo` runs the study in miniature; `make test` runs the tests; `make lint` the linter and
# the formatter's check (ruff, configured in pyproject.toml); `make bench` the benchmarks.
# Each builds .venv first when it is missing or older than pyproject.toml or the lock file
# requirements/lock.txt (the exact versions CI tests); `make compat` tests the ends of the ranges.
PYTHON ?= python3
LOCK := requirements/lock.txt
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1
# Python caches the project's compiled modules: an environment that sets PYTHONDONTWRITEBYTECODE
# (some CI images do) would have each of the ~100 interpreters the tests start compile them again.
unexport PYTHONDONTWRITEBYTECODE

# `make test` runs the tests on every CPU with pytest-xdist: one worker more than the CPUs, at most 4
# (each holds TensorFlow, torch and the interpreters its tests start), so that the CPU a worker leaves
# while its test waits is used (2 CPUs: 13:01 against 14:44 with 2 workers). Tests that share a
# module's fixture run on one worker (tests/parallel.py). `make test PYTEST_XDIST=` runs them in one
# process; TEST_WORKERS sets the count; PYTEST_ARGS adds options.
CPUS = $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")
TEST_WORKERS ?= $(shell echo $$(( $(CPUS) < 3 ? $(CPUS) + 1 : 4 )))
PYTEST_XDIST ?= -n $(TEST_WORKERS) --dist loadgroup

.PHONY: demo test lint bench venv compat clean

venv: $(STAMP)

# .reference-env: the constructors the reference library used for its published models (tf-keras,
# kecam, vit-keras, efficientnet), beside the project's stack; tests run them only in subprocesses.
$(STAMP): pyproject.toml $(LOCK) tests/reference/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
	rm -rf .reference-env
	$(BIN)/pip install --quiet --no-deps --target .reference-env -r tests/reference/requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# throwaway venvs (COMPAT_DIR, default /tmp/compat-venvs) at the lowest and highest ends of the ranges
compat:
	scripts/compat.sh $(COMPAT_ARGS)

clean:
	rm -rf $(VENV) .reference-env demo-output benchmarks/results/*.json
