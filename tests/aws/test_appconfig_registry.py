"""models.yaml from AWS AppConfig, through the real boto3 `appconfigdata` client
against a wire fake of the AppConfig Data API (moto does not implement it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine.aws.appconfig_registry import AppConfigRegistrySource
from spine.errors import ConfigError
from tests.fakes.appconfigdata_api import AppConfigDataFake
from tests.fixtures.aws import FakeClock, log_records, metric_names, models_yaml

APP, ENV, PROFILE = "spine", "prod", "models"
TTL = 20.0


def source(clock: FakeClock, fallback: Path | None = None) -> AppConfigRegistrySource:
    return AppConfigRegistrySource(APP, ENV, PROFILE, ttl=TTL, fallback=fallback, clock=clock)


def ids(src: AppConfigRegistrySource) -> set[str]:
    return {m.id for m in src.current().models}


@pytest.fixture
def packaged(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(models_yaml("packaged"))
    return path


def test_initial_load_starts_one_session_with_the_minimum_poll_interval(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock, packaged: Path
) -> None:
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("from-appconfig"))
    live = source(fake_clock, packaged)
    assert ids(live) == {"from-appconfig"}
    assert not live.serving_fallback
    [(op, params), (op2, _)] = appconfigdata.calls
    assert (op, op2) == ("StartConfigurationSession", "GetLatestConfiguration")
    assert params == {
        "ApplicationIdentifier": APP,
        "EnvironmentIdentifier": ENV,
        "ConfigurationProfileIdentifier": PROFILE,
        # AppConfig refuses less than 15 s
        "RequiredMinimumPollIntervalInSeconds": 20,
    }


def test_deployment_is_served_after_the_ttl_with_one_call_per_check(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock
) -> None:
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("first"))
    live = source(fake_clock)
    appconfigdata.calls.clear()
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("second"))
    fake_clock.advance(TTL - 1)
    assert ids(live) == {"first"}
    assert appconfigdata.operations() == []
    fake_clock.advance(1)
    assert ids(live) == {"second"}
    # The session goes on: each check uses the token the previous answer gave (the
    # fake refuses a token used twice), no new session is started.
    assert appconfigdata.operations() == ["GetLatestConfiguration"]


def test_unchanged_config_is_an_empty_answer_and_nothing_is_parsed_again(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock
) -> None:
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("first"))
    live = source(fake_clock)
    before = live.current()
    for _ in range(3):
        fake_clock.advance(TTL)
        assert live.current() is before
    assert appconfigdata.operations()[-3:] == ["GetLatestConfiguration"] * 3
    assert "StartConfigurationSession" not in appconfigdata.operations()[2:]


def test_bad_deployment_is_never_served_and_a_later_good_one_is(
    appconfigdata: AppConfigDataFake,
    fake_clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("first"))
    live = source(fake_clock)
    capsys.readouterr()
    caplog.clear()
    # When a deployment fails validation
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("first").replace("openai", "openia"))
    fake_clock.advance(TTL)
    # Then the last good config stays, with the problem logged and counted
    assert ids(live) == {"first"}
    [rejected] = [r for r in log_records(caplog) if "rejected" in r["message"]]
    assert rejected["source"] == "appconfig"
    assert rejected["problems"][0].startswith(
        f"appconfig://{APP}/{ENV}/{PROFILE}:4: models[0].provider: must be one of"
    )
    assert metric_names(capsys.readouterr().out) == ["ConfigRejected"]
    # And the next checks (empty answers) report nothing more
    fake_clock.advance(TTL)
    assert ids(live) == {"first"}
    assert log_records(caplog) == []
    # When the operator deploys a fix, it is served
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("fixed"))
    fake_clock.advance(TTL)
    assert ids(live) == {"fixed"}


def test_next_poll_interval_from_appconfig_is_honoured(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock
) -> None:
    appconfigdata.next_poll_seconds = 60
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("first"))
    live = source(fake_clock)
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("second"))
    fake_clock.advance(TTL)
    assert ids(live) == {"first"}  # AppConfig asked for 60 s: no early poll
    assert appconfigdata.operations().count("GetLatestConfiguration") == 1
    fake_clock.advance(60 - TTL)
    assert ids(live) == {"second"}


def test_failed_poll_keeps_the_config_and_the_next_one_starts_a_new_session(
    appconfigdata: AppConfigDataFake,
    fake_clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("first"))
    live = source(fake_clock)
    before = live.current()
    capsys.readouterr()
    caplog.clear()
    # When AppConfig fails (every retry too)
    appconfigdata.failures = 10
    fake_clock.advance(TTL)
    assert live.current() is before
    assert any("keeping last good config" in r["message"] for r in log_records(caplog))
    assert "ConfigSourceUnavailable" in metric_names(capsys.readouterr().out)
    # When it is back: a new session, whose full answer is recognized as already seen
    appconfigdata.failures = 0
    appconfigdata.calls.clear()
    fake_clock.advance(TTL)
    assert live.current() is before
    assert appconfigdata.operations() == ["StartConfigurationSession", "GetLatestConfiguration"]
    assert not [r for r in log_records(caplog) if "reloaded" in r["message"]]


def test_nothing_deployed_at_start_falls_back_to_the_packaged_file(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock, packaged: Path
) -> None:
    live = source(fake_clock, packaged)
    assert ids(live) == {"packaged"}
    assert live.serving_fallback
    appconfigdata.deploy(APP, ENV, PROFILE, models_yaml("deployed"))
    fake_clock.advance(TTL)
    assert ids(live) == {"deployed"}


def test_unreachable_appconfig_at_start_falls_back_to_the_packaged_file(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock, packaged: Path
) -> None:
    appconfigdata.stop()  # connections refused
    assert ids(source(fake_clock, packaged)) == {"packaged"}


def test_unreachable_appconfig_without_fallback_refuses_to_start(
    appconfigdata: AppConfigDataFake, fake_clock: FakeClock
) -> None:
    with pytest.raises(ConfigError) as caught:
        source(fake_clock)
    assert caught.value.problems[0].startswith(f"appconfig://{APP}/{ENV}/{PROFILE}: cannot read:")
