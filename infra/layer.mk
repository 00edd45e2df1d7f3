# What `sam build` runs (BuildMethod: makefile): SAM calls `make build-<LogicalId>` with
# ARTIFACTS_DIR set to that resource's staging folder. Included from the root Makefile.
#
# The layer (mounted at /opt): infra/build_layer.sh installs the runtime dependencies of
# the `gateway` and `anthropic` extras (every provider SDK) from uv.lock and copies the
# `spine` package alone, plus config.toml and models.yaml.
# Wheels are fetched for the Lambda platform, never built here: arm64, CPython 3.12,
# glibc 2.28 or older (manylinux_2_28 and older).
#
# A host build of the same recipe (LAYER_PLATFORM= in the environment of `sam build`)
# installs the wheels of the building machine's interpreter instead, so the built stack
# can be served and tested where it was built (tests/deploy).

LAYER_PYTHON_VERSION ?= 3.12
# uv's --python-platform; empty: the wheels of $(PYTHON) on this machine.
LAYER_PLATFORM ?= aarch64-manylinux_2_28
LAYER_EXTRAS ?= gateway anthropic
# Defaults for `make -f infra/layer.mk`; the root Makefile defines both already.
PYTHON ?= python3
UV ?= uv
ifndef SPINE_ROOT
SPINE_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
endif

.PHONY: build-SpineLayer

build-SpineLayer:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 2; }
	LAYER_PYTHON_VERSION="$(LAYER_PYTHON_VERSION)" LAYER_PLATFORM="$(LAYER_PLATFORM)" \
		LAYER_EXTRAS="$(LAYER_EXTRAS)" PYTHON="$(PYTHON)" UV="$(UV)" \
		bash "$(SPINE_ROOT)/infra/build_layer.sh" "$(ARTIFACTS_DIR)"

# Functions: sam build copies the CodeUri folder and runs this target there. An entry
# module imports only from the layer, so the folder is the whole artifact.
build-%Function:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 2; }
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R ./. "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -name '__pycache__' -type d -prune -exec rm -rf {} +
