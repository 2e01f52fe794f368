# Two commands for a fresh machine:  make book  |  make test
# Both create and reuse .venv with the pinned versions of constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The shared photos beside the checkout, when they are there (see README).
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/animals),)
export TLHELPERS_DATA ?= $(SHARED_DATA)
endif
export PYTHONUNBUFFERED := 1

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

.PHONY: setup test lint unit nbval real-path book check-book notebooks bench clean

setup: $(STAMP)

# pip's own status decides (pipefail); grep having no line to print is no failure.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	set -o pipefail; $(PY) -m pip install --quiet -c constraints.txt -e ".[dev]" 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q tests notebooks $(NBVAL)
	$(MAKE) --no-print-directory real-path
	$(MAKE) --no-print-directory check-book

# ruff's rules and its formatter over the code (pyproject's [tool.ruff]) and the
# chapters' code cells, which must fit the book's 80-character code column.
# `ruff format src tests benchmarks tools` and `ruff format --line-length 80 notebooks` fix the layout.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	$(VENV)/bin/ruff check --line-length 80 notebooks
	$(VENV)/bin/ruff format --check --line-length 80 notebooks

# The quick part of the unit tests (under a minute); make test runs the slow ones too.
unit: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow"

nbval: $(STAMP)
	$(PY) -m pytest -q notebooks $(NBVAL)

# Every chapter again on the real torchvision path (stand-in checkpoints with random
# weights, reduced photos, fallback not forced), outputs not compared; see the script.
# The script builds the kernels' environment itself; env -u keeps the fallback pin out anyway.
# REAL_PATH_ARGS=--help for the options (e.g. "--chapters 03 --budget cpu --keep").
# Then the chapters with an upload button once more with ipywidgets 7.7.1, the series Colab ships.
real-path: $(STAMP)
	env -u TLHELPERS_FORCE_FALLBACK -u TLHELPERS_STRICT_CHECKS $(PY) tools/run_real_path.py $(REAL_PATH_ARGS)
	env -u TLHELPERS_FORCE_FALLBACK -u TLHELPERS_STRICT_CHECKS $(PY) tools/run_real_path.py \
		--chapters 01 04 --budget cpu --ipywidgets 7.7.1

# The pages' JavaScript (widgets, MathJax, onnxruntime-web) from the npm registry, and the
# models and data the pages run (built from the package and the photos); never committed.
BOOK_JS := .widget-js/fetched.txt

book: $(STAMP) $(BOOK_JS)
	$(PY) tools/build_page_assets.py
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

$(BOOK_JS): tools/fetch_book_js.py
	$(PYTHON) tools/fetch_book_js.py

# Every page of the built book in headless Chromium (tests/browser); screenshots in _build/screenshots.
CHROMIUM := /usr/bin/chromium
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
check-book: book $(CHROMIUM)
	TLBOOK_BROWSER=1 $(PY) -m pytest -q tests/browser

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Re-execute the chapters in place, storing outputs and widget state (maintainers).
notebooks: $(STAMP)
	$(PY) tools/execute_notebooks.py $(or $(NB),notebooks/*.ipynb)

# How fast the book runs here (on a quiet machine): benchmarks/results/<machine>.{json,md}.
# BENCH_ARGS=--quick: a tiny run to test the script, written to benchmarks/out/.
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf _build .pytest_cache
