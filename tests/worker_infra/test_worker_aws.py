"""The worker's AWS parts, against moto: model files fetched from S3 and verified by
SHA-256 before the worker starts, and its load published as CloudWatch metrics."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from gpu_worker.cloudwatch import ModelLoad, Publisher
from gpu_worker.s3_models import ModelFetchError, fetch_models, main

BUCKET = "spine-models"
MODEL = b"GGUF" + b"\x00" * 1024 + b"weights"
DRAFT = b"GGUF" + b"\x01" * 512


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def s3(moto_aws: None) -> Any:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="models/main.gguf", Body=MODEL)
    client.put_object(Bucket=BUCKET, Key="models/draft.gguf", Body=DRAFT)
    sums = f"{sha(MODEL)}  main.gguf\n{sha(DRAFT)} *draft.gguf\n"
    client.put_object(Bucket=BUCKET, Key="models/SHA256SUMS", Body=sums.encode())
    return client


def test_fetch_installs_every_listed_file_verified(s3: Any, tmp_path: Path) -> None:
    # When the task starts on an empty host
    downloaded = fetch_models(BUCKET, "models/", tmp_path)
    # Then every listed file is there, byte for byte, and nothing else is left over
    assert sorted(downloaded) == ["draft.gguf", "main.gguf"]
    assert (tmp_path / "main.gguf").read_bytes() == MODEL
    assert (tmp_path / "draft.gguf").read_bytes() == DRAFT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["draft.gguf", "main.gguf"]


def test_files_already_present_and_matching_are_not_downloaded(s3: Any, tmp_path: Path) -> None:
    fetch_models(BUCKET, "models", tmp_path)
    assert fetch_models(BUCKET, "models", tmp_path) == []


def test_a_corrupted_local_copy_is_replaced(s3: Any, tmp_path: Path) -> None:
    fetch_models(BUCKET, "models", tmp_path)
    (tmp_path / "main.gguf").write_bytes(b"GGUF truncated")
    assert fetch_models(BUCKET, "models", tmp_path) == ["main.gguf"]
    assert (tmp_path / "main.gguf").read_bytes() == MODEL


def test_an_object_that_does_not_match_its_digest_is_refused(
    s3: boto3.client,
    tmp_path: Path,  # type: ignore[valid-type]
) -> None:
    # Given an object swapped after the sums were written
    s3.put_object(Bucket=BUCKET, Key="models/main.gguf", Body=MODEL + b"tampered")
    # When the task starts, Then it fails, naming the file, and installs nothing
    with pytest.raises(ModelFetchError, match=r"main\.gguf: SHA-256 .* does not match"):
        fetch_models(BUCKET, "models", tmp_path)
    assert not (tmp_path / "main.gguf").exists()
    assert not list(tmp_path.glob(".*partial"))
    # And the command line exits non-zero, so ECS never starts the worker container
    assert main(["--bucket", BUCKET, "--prefix", "models", "--destination", str(tmp_path)]) == 1


def test_missing_sums_or_bad_lines_are_refused(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="cannot read"):
        fetch_models(BUCKET, "elsewhere", tmp_path)
    s3.put_object(Bucket=BUCKET, Key="bad/SHA256SUMS", Body=b"abc  ../../etc/passwd\n")
    with pytest.raises(ModelFetchError, match="SHA256SUMS:1"):
        fetch_models(BUCKET, "bad", tmp_path)


def test_publisher_puts_queue_depth_in_flight_and_slots(moto_aws: None) -> None:
    # Given a worker with two models, one busy
    loads = [ModelLoad("smollm2-135m", queued=3, in_flight=4, slots=4), ModelLoad("qwen", 0, 1, 2)]
    publisher = Publisher("Spine/Worker", "spine-worker", lambda: loads, interval=0.01)
    # When it publishes (its loop, briefly)

    async def briefly() -> None:
        task = asyncio.create_task(publisher.run())
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(briefly())
    # Then CloudWatch holds the per-model and the worker-wide figures
    cloudwatch = boto3.client("cloudwatch")
    now = datetime.now(UTC)

    def maximum(name: str, **dimensions: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="Spine/Worker",
            MetricName=name,
            Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=5),
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
        assert points, (name, dimensions)
        return max(p["Maximum"] for p in points)

    assert maximum("QueueDepth", Service="spine-worker", Model="smollm2-135m") == 3
    assert maximum("QueueDepth", Service="spine-worker") == 3
    assert maximum("InFlight", Service="spine-worker") == 5
    assert maximum("Slots", Service="spine-worker") == 6
    assert maximum("Slots", Service="spine-worker", Model="qwen") == 2
