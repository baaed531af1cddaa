# The two commands of the README: `make demo` (the whole local lifecycle) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt | sha1sum | cut -c1-12)

.PHONY: setup demo test lint images clean

$(STAMP): requirements/runtime.txt requirements/dev.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v[:2] == (3, 11) else f"Python 3.11 is required, found {v.major}.{v.minor} at {sys.executable} (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/python -m lifecycle

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/python -m pytest

clean:
	rm -rf build .pytest_cache
