#!/usr/bin/env bash
# Build the shared layer into $1 (what `make build-SpineLayer` runs; see infra/layer.mk).
#
#   $1/python/       the runtime dependencies from uv.lock and the `spine` package
#   $1/config.toml   -> /opt/config.toml
#   $1/models.yaml   -> /opt/models.yaml
#
# Settings, from the environment (infra/layer.mk passes them):
#   LAYER_EXTRAS            extras of the project to ship (every provider SDK)
#   LAYER_PLATFORM          uv's target platform; empty: this machine's interpreter
#   LAYER_PYTHON_VERSION    the target CPython (ignored for a host build)
#   LAYER_CACHE_DIR         installed dependencies, kept per requirements and target
#   UV, PYTHON              the package manager, and the interpreter of a host build
#
# The dependencies are the same for every build of one uv.lock and one target, and pip
# spends most of the build on them: they are installed once into the cache and copied
# from there. Only wheels are used (--only-binary): nothing is compiled for Lambda here.
set -euo pipefail

artifacts=${1:?usage: build_layer.sh ARTIFACTS_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${LAYER_EXTRAS:=gateway anthropic}"
: "${LAYER_PYTHON_VERSION:=3.12}"
: "${PYTHON:=python3}"
: "${UV:=uv}"
: "${LAYER_CACHE_DIR:=${SPINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spine}/layer}"
# arm64, glibc 2.28 or older: Amazon Linux 2023 (python3.12) has glibc 2.34.
if [[ -z ${LAYER_PLATFORM+set} ]]; then LAYER_PLATFORM=aarch64-manylinux_2_28; fi

mkdir -p "$artifacts" "$LAYER_CACHE_DIR"
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
extras=()
for extra in $LAYER_EXTRAS; do extras+=(--extra "$extra"); done
# shellcheck disable=SC2086 # UV may be a command with arguments ("python3 -m uv").
(cd "$root" && $UV export --no-dev --frozen --no-hashes --no-emit-project \
    --format requirements-txt "${extras[@]}" --output-file "$requirements" >/dev/null)

if [[ -n $LAYER_PLATFORM ]]; then
    target=(--python-platform "$LAYER_PLATFORM" --python-version "$LAYER_PYTHON_VERSION")
    tag="cp${LAYER_PYTHON_VERSION/./}-$LAYER_PLATFORM"
else
    target=(--python "$PYTHON")
    tag="host-$("$PYTHON" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')"
fi
key=$( (cat "$requirements"; echo "${target[*]}") | sha256sum | cut -c1-16)
cached="$LAYER_CACHE_DIR/$tag-$key"

if [[ ! -d $cached/python ]]; then
    staging="$cached.partial.$$"
    rm -rf "$staging"
    # The exported requirements are the whole locked closure: --no-deps installs
    # exactly those versions, nothing re-resolved.
    # shellcheck disable=SC2086
    $UV pip install --quiet --no-deps --only-binary :all: --no-config \
        --requirement "$requirements" --target "$staging/python" "${target[@]}"
    # A concurrent build may have finished first; either copy is the same.
    mv -T "$staging" "$cached" 2>/dev/null || rm -rf "$staging"
fi

rm -rf "$artifacts/python"
cp -R "$cached/python" "$artifacts/python"
rm -rf "$artifacts/python/bin"  # console scripts with this machine's interpreter path
# The runtime package alone: the command line and the emulator (spine_tools) stay out.
cp -R "$root/shared/spine" "$artifacts/python/spine"
find "$artifacts/python" -name '__pycache__' -type d -prune -exec rm -rf {} +
cp "$root/config.toml" "$root/models.yaml" "$artifacts/"
