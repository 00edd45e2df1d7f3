# The shared layer, built by `sam build` (BuildMethod: makefile): SAM runs
# `make build-SpineLayer` in the repo root with ARTIFACTS_DIR set to the layer's
# staging folder, whose contents Lambda mounts at /opt. Included from the root Makefile.
#
#   $(ARTIFACTS_DIR)/python/       runtime dependencies + the spine package (on sys.path)
#   $(ARTIFACTS_DIR)/config.toml   -> /opt/config.toml   (SPINE_CONFIG)
#   $(ARTIFACTS_DIR)/models.yaml   -> /opt/models.yaml   (SPINE_MODELS)
#
# Wheels are fetched for the Lambda platform, never built here: arm64, CPython 3.12,
# glibc 2.28 or older (manylinux_2_28 and the older tags below).

LAYER_PYTHON_VERSION ?= 3.12
# Several tags: some pip versions do not expand a manylinux tag to the older ones.
LAYER_PLATFORMS ?= manylinux_2_28_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64
# Defaults for `make -f infra/layer.mk`; the root Makefile defines both already.
PYTHON ?= python3
UV ?= uv
LAYER_PIP ?= $(PYTHON) -m pip

.PHONY: build-SpineLayer

build-SpineLayer:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 2; }
	mkdir -p "$(ARTIFACTS_DIR)/python"
	$(UV) export --no-dev --frozen --no-hashes --no-emit-project --format requirements-txt \
		--output-file "$(ARTIFACTS_DIR)/requirements.txt" >/dev/null
	$(LAYER_PIP) install --quiet --disable-pip-version-check --no-compile \
		--requirement "$(ARTIFACTS_DIR)/requirements.txt" \
		--target "$(ARTIFACTS_DIR)/python" \
		$(addprefix --platform ,$(LAYER_PLATFORMS)) --implementation cp \
		--python-version $(LAYER_PYTHON_VERSION) --only-binary=:all:
	rm -f "$(ARTIFACTS_DIR)/requirements.txt"
	# The package itself, without bytecode caches.
	rm -rf "$(ARTIFACTS_DIR)/python/spine"
	cp -R shared/spine "$(ARTIFACTS_DIR)/python/spine"
	find "$(ARTIFACTS_DIR)/python" -name '__pycache__' -type d -prune -exec rm -rf {} +
	cp config.toml models.yaml "$(ARTIFACTS_DIR)/"
