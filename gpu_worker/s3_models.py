"""Fetch the worker's model files from S3 and verify each against its SHA-256 before the
worker starts (`python -m gpu_worker.s3_models`, the ECS task's first container).

The prefix holds the GGUF files and a `SHA256SUMS` file in `sha256sum`'s format
(`<hex>  <name>`, one per line), written by the operator next to the files:

    sha256sum *.gguf > SHA256SUMS && aws s3 cp --recursive . s3://bucket/models/

Every listed file ends up in the destination folder with exactly that digest, or the
command exits non-zero and the worker does not start: a truncated download, a swapped
object or a corrupted cache never reaches llama-server. A file already there with the
right digest is not downloaded again (a restarted task on the same host). A download
goes to a temporary name and is renamed only after its digest matched.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("gpu_worker.s3_models")

SUMS_FILE = "SHA256SUMS"
_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>[^/\\]+)$")
_CHUNK = 8 * 1024 * 1024


class ModelFetchError(Exception):
    """A listed file could not be fetched or does not match its digest."""


@dataclass(frozen=True)
class Expected:
    name: str
    sha256: str


def parse_sums(text: str) -> list[Expected]:
    """The entries of a SHA256SUMS file; names are plain file names (no folders)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None or match["name"] in (".", ".."):
            raise ModelFetchError(f"{SUMS_FILE}:{number}: expected '<sha256>  <file name>'")
        entries.append(Expected(match["name"], match["digest"].lower()))
    if not entries:
        raise ModelFetchError(f"{SUMS_FILE} lists no file")
    return entries


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_models(bucket: str, prefix: str, destination: Path, *, client: Any = None) -> list[str]:
    """Make `destination` hold every file `SHA256SUMS` lists, verified; the names
    downloaded (those already present and matching are kept)."""
    if client is None:
        import boto3  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

        client = boto3.client("s3")
    prefix = prefix.strip("/")
    key = f"{prefix}/{SUMS_FILE}" if prefix else SUMS_FILE
    try:
        sums = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except Exception as exc:
        raise ModelFetchError(f"cannot read s3://{bucket}/{key}: {exc}") from exc
    destination.mkdir(parents=True, exist_ok=True)
    downloaded = []
    for expected in parse_sums(sums):
        target = destination / expected.name
        if target.is_file() and sha256_of(target) == expected.sha256:
            logger.info("model file verified", extra={"file": expected.name})
            continue
        object_key = f"{prefix}/{expected.name}" if prefix else expected.name
        partial = target.with_name(f".{expected.name}.partial")
        try:
            client.download_file(bucket, object_key, str(partial))
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise ModelFetchError(f"cannot download s3://{bucket}/{object_key}: {exc}") from exc
        actual = sha256_of(partial)
        if actual != expected.sha256:
            partial.unlink(missing_ok=True)
            raise ModelFetchError(
                f"{expected.name}: SHA-256 {actual} does not match {SUMS_FILE} "
                f"({expected.sha256}); the file was not installed"
            )
        os.replace(partial, target)
        downloaded.append(expected.name)
        logger.info("model file downloaded and verified", extra={"file": expected.name})
    return downloaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", default=os.environ.get("SPINE_WORKER_MODELS_BUCKET"))
    parser.add_argument("--prefix", default=os.environ.get("SPINE_WORKER_MODELS_PREFIX", ""))
    parser.add_argument(
        "--destination",
        type=Path,
        # The first of the worker's model folders (SPINE_WORKER_MODEL_DIRS).
        default=Path(
            (os.environ.get("SPINE_WORKER_MODEL_DIRS") or "/var/lib/spine/models").split(
                os.pathsep
            )[0]
        ),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.bucket:
        parser.error("--bucket (or SPINE_WORKER_MODELS_BUCKET) is required")
    try:
        fetch_models(args.bucket, args.prefix, args.destination)
    except ModelFetchError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
