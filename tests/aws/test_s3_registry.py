"""models.yaml from S3 (moto): TTL, ETag checks, bad edits never served, fallback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Hashable
from pathlib import Path

import boto3
import pytest

from spine.aws.clients import aws_client
from spine.aws.s3_registry import S3RegistrySource
from spine.errors import ConfigError
from spine.registry.source import Fetched
from tests.fixtures.aws import CallLog, FakeClock, log_records, metric_names, models_yaml

BUCKET = "spine-config-test"
KEY = "live/models.yaml"
TTL = 30.0


def put(text: str | bytes) -> str:
    body = text.encode() if isinstance(text, str) else text
    return str(boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=body)["ETag"])


@pytest.fixture
def bucket(moto_aws: None) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)


@pytest.fixture
def packaged(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(models_yaml("packaged"))
    return path


def source(clock: FakeClock, fallback: Path | None = None, **kw: object) -> S3RegistrySource:
    return S3RegistrySource(BUCKET, KEY, ttl=TTL, fallback=fallback, clock=clock, **kw)  # type: ignore[arg-type]


def ids(src: S3RegistrySource) -> set[str]:
    return {m.id for m in src.current().models}


def test_initial_load_serves_the_object_not_the_packaged_file(
    bucket: None, fake_clock: FakeClock, packaged: Path
) -> None:
    put(models_yaml("from-s3"))
    live = source(fake_clock, packaged)
    assert ids(live) == {"from-s3"}
    assert not live.serving_fallback


def test_edit_is_served_after_the_ttl_and_not_before(bucket: None, fake_clock: FakeClock) -> None:
    # Given a running source
    put(models_yaml("first"))
    live = source(fake_clock)
    calls = CallLog(aws_client("s3"))
    # When an operator uploads an edit
    put(models_yaml("second"))
    # Then requests within the TTL are served from memory, without asking S3
    fake_clock.advance(TTL - 1)
    assert ids(live) == {"first"}
    assert calls.calls == []
    # And the first request after the TTL gets the edit
    fake_clock.advance(1)
    assert ids(live) == {"second"}
    assert calls.calls == [("GetObject", 200)]


def test_unchanged_etag_is_a_304_and_nothing_is_parsed_again(
    bucket: None,
    fake_clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    etag = put(models_yaml("first"))
    live = source(fake_clock)
    before = live.current()
    calls = CallLog(aws_client("s3"))
    requests: list[dict[str, object]] = []
    aws_client("s3").meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: requests.append(dict(params["headers"]))
    )
    caplog.clear()
    for _ in range(3):
        fake_clock.advance(TTL)
        # The very same Registry object: no new parse happened.
        assert live.current() is before
    assert calls.calls == [("GetObject", 304)] * 3
    assert all(headers.get("If-None-Match") == etag for headers in requests)
    assert not [r for r in log_records(caplog) if "reloaded" in r["message"]]


def test_bad_edit_is_never_served_and_a_later_good_edit_is(
    bucket: None,
    fake_clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a running source
    put(models_yaml("first"))
    live = source(fake_clock)
    capsys.readouterr()
    caplog.clear()
    # When an operator uploads an edit that fails validation
    put(models_yaml("renamed").replace("context_window: 8000", "context_window: -1"))
    fake_clock.advance(TTL)
    # Then the last good config is still served
    assert ids(live) == {"first"}
    out = capsys.readouterr().out
    # And the rejection is logged with the problems, naming the object and line
    [rejected] = [
        r for r in log_records(caplog) if r["message"].startswith("models config rejected")
    ]
    assert rejected["level"] == "ERROR"
    assert rejected["source"] == "s3"
    assert rejected["problems"] == [
        f"s3://{BUCKET}/{KEY}:6: models[0].context_window: Input should be greater than 0"
    ]
    assert metric_names(out) == ["ConfigRejected"]
    # And the same bad object is not parsed (nor reported) again on later checks
    fake_clock.advance(TTL)
    assert ids(live) == {"first"}
    assert not [r for r in log_records(caplog) if "rejected" in r["message"]]
    assert metric_names(capsys.readouterr().out) == []
    # When the operator fixes it
    put(models_yaml("fixed"))
    fake_clock.advance(TTL)
    # Then the fix is served
    assert ids(live) == {"fixed"}


def test_non_utf8_upload_is_rejected_like_any_bad_edit(
    bucket: None,
    fake_clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put(models_yaml("first"))
    live = source(fake_clock)
    put(b"version: 1\nmodels: \xff\xfe\n")
    fake_clock.advance(TTL)
    assert ids(live) == {"first"}
    [rejected] = [r for r in log_records(caplog) if "rejected" in r["message"]]
    assert "not UTF-8 text" in rejected["problems"][0]


def test_missing_object_at_start_falls_back_to_the_packaged_file_then_picks_up_the_upload(
    bucket: None,
    fake_clock: FakeClock,
    packaged: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given no object yet (or no permission to read it)
    live = source(fake_clock, packaged)
    # Then the packaged file serves, and the outage is logged and counted
    assert ids(live) == {"packaged"}
    assert live.serving_fallback
    out = capsys.readouterr().out
    [warning] = [r for r in log_records(caplog) if "unreadable at start" in r["message"]]
    assert warning["origin"] == f"s3://{BUCKET}/{KEY}"
    assert metric_names(out) == ["ConfigSourceUnavailable"]
    # When the object appears, it is served after the TTL
    put(models_yaml("uploaded"))
    fake_clock.advance(TTL)
    assert ids(live) == {"uploaded"}
    assert not live.serving_fallback


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_s3_at_start_falls_back_to_the_packaged_file(
    aws_credentials: None,
    fake_clock: FakeClock,
    packaged: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given S3 that refuses connections
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    live = source(fake_clock, packaged)
    # Then the function starts promptly on the packaged file
    assert ids(live) == {"packaged"}
    assert time.monotonic() - started < 5


def test_unreachable_s3_without_a_valid_fallback_refuses_to_start(
    bucket: None, fake_clock: FakeClock, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        source(fake_clock)
    assert caught.value.problems[0].startswith(f"s3://{BUCKET}/{KEY}: cannot read:")
    broken = tmp_path / "models.yaml"
    broken.write_text("version: 1\nmodels: []\n")
    with pytest.raises(ConfigError) as caught:
        source(fake_clock, broken)
    assert "models: List should have at least 1 item" in caught.value.problems[0]


def test_invalid_object_at_start_serves_the_packaged_file(
    bucket: None,
    fake_clock: FakeClock,
    packaged: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put("version: 2\nmodels: []\n")
    live = source(fake_clock, packaged)
    assert ids(live) == {"packaged"}
    out = capsys.readouterr().out
    assert [r["message"] for r in log_records(caplog) if "rejected" in r["message"]] == [
        "models config rejected at start"
    ]
    assert metric_names(out) == ["ConfigRejected"]
    # The bad object is not retried until it changes; a good upload replaces the file.
    fake_clock.advance(TTL)
    assert ids(live) == {"packaged"}
    put(models_yaml("good"))
    fake_clock.advance(TTL)
    assert ids(live) == {"good"}


def test_s3_outage_while_running_keeps_the_last_good_config(
    bucket: None,
    fake_clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    put(models_yaml("first"))
    live = source(fake_clock)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=KEY)
    fake_clock.advance(TTL)
    assert ids(live) == {"first"}
    out = capsys.readouterr().out
    assert any("keeping last good config" in r["message"] for r in log_records(caplog))
    assert "ConfigSourceUnavailable" in metric_names(out)


class HeldS3Source(S3RegistrySource):
    """The real S3 source, whose reads wait until the test lets them go: what a
    request does while a slow read is under way is then certain, not a race."""

    def __init__(self, *args: object, **kw: object) -> None:
        self.go = threading.Event()
        self.go.set()  # the first (synchronous) load is not held
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def _fetch(self, seen: Hashable | None) -> Fetched | None:
        self.go.wait(10)
        return super()._fetch(seen)


def test_background_refresh_never_makes_a_request_wait(bucket: None, fake_clock: FakeClock) -> None:
    put(models_yaml("first"))
    live = HeldS3Source(BUCKET, KEY, ttl=TTL, clock=fake_clock, background=True)
    put(models_yaml("second"))
    fake_clock.advance(TTL)
    live.go.clear()  # S3 answers slowly from now on
    # The requests that find the TTL expired are answered from memory at once ...
    assert ids(live) == {"first"}
    assert ids(live) == {"first"}
    # ... and the edit lands once the read in the background completes.
    live.go.set()
    deadline = time.monotonic() + 5
    while ids(live) != {"second"}:
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.01)
