#!/usr/bin/env bash
# Build llama.cpp's llama-server for the CPU from the pinned source, once, into the
# user's cache. Later runs find the binary and return at once.
#
# The source is the llama.cpp tree vendored in the llama-cpp-python sdist on PyPI
# (the only registry this project may fetch from); LLAMA_CPP_PYTHON_VERSION pins it.
# GGML_NATIVE stays off: on virtual machines that advertise AVX-512 FP16/AMX the
# native build emits instructions the host then refuses (SIGILL).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE_ROOT="${SPINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spine}"
PREFIX="$CACHE_ROOT/llama.cpp-$LLAMA_CPP_PYTHON_VERSION"
BINARY="$PREFIX/bin/llama-server"
PYTHON="${PYTHON:-python3}"

if [[ -x "$BINARY" ]] && "$BINARY" --version >/dev/null 2>&1; then
  echo "$BINARY"
  exit 0
fi

for tool in cmake c++ make; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: '$tool' is required to build llama-server (Debian: apt-get install cmake build-essential)" >&2
    exit 2
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spine-llama-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "fetching llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION source (vendored llama.cpp)" >&2
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
  "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"

JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
echo "building llama-server with $JOBS jobs (a few minutes, once)" >&2
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >&2

mkdir -p "$PREFIX/bin.tmp"
cp "$WORK/build/bin/llama-server" "$PREFIX/bin.tmp/"
rm -rf "$PREFIX/bin"
mv "$PREFIX/bin.tmp" "$PREFIX/bin"
"$BINARY" --version >&2
echo "$BINARY"
