"""config.toml loading, environment overrides and the no-secrets rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from spine.errors import ConfigError
from spine.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_loads() -> None:
    settings = load_settings(REPO / "config.toml", environ={})
    assert settings.function("chat").verify_jwt is True
    assert settings.function("health").verify_jwt is False
    assert settings.models_path == REPO / "models.yaml"


def test_function_default_is_verify_jwt_true(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    settings = load_settings(tmp_path / "config.toml", environ={})
    assert settings.function("anything").verify_jwt is True


def test_environment_overrides_file_with_typed_values(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('[worker]\nurl = "http://a:1"\n[functions.chat]\nverify_jwt = true\n')
    settings = load_settings(
        file,
        environ={
            "SPINE_WORKER__URL": "http://b:2",
            "SPINE_FUNCTIONS__CHAT__VERIFY_JWT": "false",
            "SPINE_LIMITS__DEFAULT_RPM": "60",
        },
    )
    assert settings.worker.url == "http://b:2"
    assert settings.function("chat").verify_jwt is False
    assert settings.limits.default_rpm == 60


def test_secrets_are_refused_in_the_file(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('[database]\nurl = "postgresql://u:p@h/db"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(file, environ={})
    assert "database.url: secrets never go in config.toml" in caught.value.problems[0]


def test_unknown_setting_names_the_field(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text("[service]\nlog_levle = 'INFO'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(file, environ={})
    assert any("service.log_levle" in p for p in caught.value.problems)


def test_invalid_toml(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text("[service\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(file, environ={})
    assert "invalid TOML" in caught.value.problems[0]


def test_database_url_and_secrets_come_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "config.toml"
    file.write_text("")
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("SPINE_WORKER_TOKEN", "t0k")
    settings = load_settings(file, environ={})
    assert settings.database_url == "postgresql://localhost/x"
    assert settings.worker_token == "t0k"
