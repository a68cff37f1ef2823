# `make demo`, `make test` (the full suite, what CI runs) and `make test-fast` (the inner loop: no training
# tests). Each sets up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup clean

setup: $(STAMP)

# Both distributions of this repository in one pip command, so that pip takes ssdlite's dependency
# ssdlite-runtime from ./runtime.
$(STAMP): pyproject.toml runtime/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./runtime -e '.[dev,export,formats,tracking]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup tests

# Everything but the tests marked slow (those that train a model or start a training process).
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow" tests

lint: $(STAMP)
	$(PY) -m ruff check ssdlite runtime tools tests detect.py data/download.py

clean:
	rm -rf $(VENV) runs .pytest_cache
