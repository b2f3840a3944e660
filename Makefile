# Quick start: `make demo` runs the main training job, `make test` runs the whole test suite.
# `make lint` (ruff, mypy) and `make unit` (fast tests, no MPI jobs, warnings as errors) are
# the first two stages of CI (.ci/run). Each target creates ./.venv and installs what it needs
# on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NP ?= 2

.PHONY: demo lint unit test test-wheel docs cupy-api bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,examples,torch]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/distgrad-run -np $(NP) $(PY) examples/train_data_parallel.py

# mypy checks what the [tool.mypy] section of pyproject.toml names (its `files`).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@if grep -q '^\[tool\.mypy\]' pyproject.toml; then \
		echo "$(VENV)/bin/mypy"; $(VENV)/bin/mypy; \
	else \
		echo "lint: mypy skipped: pyproject.toml has no [tool.mypy] section (naming the typed modules) yet"; \
	fi

# Tests that start no processes (not marked multiprocess, slow or gpu), warnings as errors.
# DISTGRAD_TEST_NO_PROCESSES makes tests/mpijob.py fail a test that starts a job unmarked.
unit: $(STAMP)
	DISTGRAD_TEST_NO_PROCESSES=1 $(PY) -m pytest -q -p no:cacheprovider -W error \
		-m "not multiprocess and not slow and not gpu"

# -rs: the reason of every skipped test is listed at the end.
test: $(STAMP)
	$(PY) -m pytest -q -rs

# The suite against the built wheel installed in a fresh venv (not the source tree).
test-wheel: $(STAMP)
	PYTHON=$(PY) bash tests/run_from_wheel.sh

# The API reference, generated from the docstrings (docs/apipages.py); any warning fails.
docs: $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "API reference: docs/_build/html/index.html"

# distgrad's GPU code against the real cupy API, without a GPU (tests/gpu/README.md): the real
# wheels (about 490 MB to download, 760 MB installed) go to .cupy-site/, which is put first on
# PYTHONPATH for this one test file. CUPY_WHEELS: as the cuda12 extra in pyproject.toml.
CUPY_SITE := .cupy-site
CUPY_WHEELS := 'cupy-cuda12x>=13' nvidia-nccl-cu12
$(CUPY_SITE)/.installed:
	$(PY) -m pip install --quiet --target $(CUPY_SITE) $(CUPY_WHEELS)
	touch $@

cupy-api: $(STAMP) $(CUPY_SITE)/.installed
	PYTHONPATH=$(CUPY_SITE) $(PY) -m pytest -q -p no:cacheprovider -rs tests/gpu/test_cupy_api.py

bench: $(STAMP)
	$(PY) benchmarks/bench_mlp.py
	$(PY) benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) $(CUPY_SITE) build *.egg-info docs/_build docs/api
