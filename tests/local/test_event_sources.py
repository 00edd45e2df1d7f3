"""The emulator runs a template's SQS event sources and ScheduleV2 schedules against
an embedded S3 + SQS (moto's server mode), as Lambda and EventBridge Scheduler do."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from spine_tools.local.aws import embedded_aws, local_name, provision
from spine_tools.local.event_sources import kept_message_ids, rate_seconds, sqs_event
from spine_tools.local.runtime import Failed, Succeeded
from spine_tools.local.server import Emulator
from spine_tools.local.template import SqsEvent, load_template

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with embedded_aws() as url:
        yield url


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_rate_expressions() -> None:
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(1 hour)") == 3600
    assert rate_seconds("rate(2 days)") == 172800
    assert rate_seconds("cron(0 * * * ? *)") is None


def test_template_reads_sqs_events_schedules_and_resources() -> None:
    template = load_template(FIXTURES / "queues.yaml")
    spec = template.functions["ConsumerFunction"]
    (work,) = spec.sqs_events
    assert (work.queue, work.batch_size, work.report_item_failures, work.max_concurrency) == (
        "WorkQueue",
        5,
        True,
        2,
    )
    assert [(s.name, s.input, s.enabled) for s in spec.schedules] == [
        ("Tick", '{"tick": true}', True),
        ("Paused", None, False),
    ]
    assert set(template.aws_resources) == {"WorkQueue", "DeadLetters", "Files"}
    # Not made yet: their Ref and GetAtt stay unresolved, so the variables are unset.
    assert "QUEUE_URL" not in spec.environment


def test_item_failures_keep_only_the_named_messages() -> None:
    event = SqsEvent("Work", "Q", report_item_failures=True)
    ok = Succeeded({"batchItemFailures": [{"itemIdentifier": "b"}]})
    assert kept_message_ids(ok, event, ["a", "b"]) == {"b"}
    assert kept_message_ids(Succeeded(None), event, ["a", "b"]) == set()
    assert kept_message_ids(Failed("E", "m", []), event, ["a", "b"]) == {"a", "b"}
    unknown = Succeeded({"batchItemFailures": [{"itemIdentifier": "zzz"}]})
    assert kept_message_ids(unknown, event, ["a"]) == {"a"}
    # Without ReportBatchItemFailures a successful invocation deletes the whole batch.
    plain = SqsEvent("Work", "Q")
    assert kept_message_ids(ok, plain, ["a", "b"]) == set()


def test_sqs_event_has_lambdas_record_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MD5OfBody": "x",
    }
    (record,) = sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:q")["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert record["messageId"] == "m1" and record["receiptHandle"] == "r1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"


def test_emulator_polls_queues_honours_item_failures_and_runs_schedules(
    endpoint: str, aws_credentials: None, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    overrides = {"LogPath": str(log)}
    # Given the template's queues and bucket made in the embedded AWS
    template = load_template(FIXTURES / "queues.yaml", overrides)
    resources = provision(template, endpoint)
    template = load_template(FIXTURES / "queues.yaml", overrides, resources)
    env = template.functions["ConsumerFunction"].environment
    assert env["QUEUE_URL"] == resources["WorkQueue"].ref
    assert env["QUEUE_ARN"].endswith(":" + local_name("WorkQueue"))
    assert env["BUCKET"] == local_name("Files")
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    assert local_name("Files") in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    url = resources["WorkQueue"].ref

    with Emulator(
        template, pool_size=2, aws_endpoint=endpoint, aws_resources=resources, time_scale=0.002
    ):
        # When messages arrive, one of them failing its first receive
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 1}))
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": 2, "fail_until": 2}))

        # Then each runs; the failed one comes back after the visibility timeout
        def retried() -> bool:
            return any(e.get("body", {}).get("n") == 2 and e["receives"] == 2 for e in _lines(log))

        _wait(retried)
        entries = [e for e in _lines(log) if "body" in e]
        assert sorted((e["body"]["n"], e["receives"]) for e in entries) == [(1, 1), (2, 1), (2, 2)]
        assert entries[0]["env"] == [url, env["QUEUE_ARN"], env["BUCKET"]]
        # And an invocation that raises keeps its message, which the redrive policy
        # moves to the dead-letter queue after two receives
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"raise": True}))
        dead = resources["DeadLetters"].ref

        def dead_lettered() -> bool:
            got = sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=0).get("Messages")
            return bool(got)

        _wait(dead_lettered)
        # And the enabled schedule ran with its Input, the disabled one never
        scheduled = [e["scheduled"] for e in _lines(log) if "scheduled" in e]
        assert scheduled and all(s == {"tick": True} for s in scheduled)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
