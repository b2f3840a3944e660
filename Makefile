# Quick start: `make demo` runs the main training job, `make test` runs the whole test suite.
# Each target creates ./.venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NP ?= 2

.PHONY: demo test test-wheel docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,examples]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/distgrad-run -np $(NP) $(PY) examples/train_data_parallel.py

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

bench: $(STAMP)
	$(PY) benchmarks/bench_mlp.py
	$(PY) benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/api
