"""`[models] source` in config.toml picks the registry source a function reads."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from spine.aws.appconfig_registry import AppConfigRegistrySource
from spine.aws.live_registry import open_registry_source
from spine.aws.s3_registry import S3RegistrySource
from spine.errors import ConfigError
from spine.registry.source import FileRegistrySource
from spine.settings import Settings, load_settings
from tests.fakes.appconfigdata_api import AppConfigDataFake
from tests.fixtures.aws import models_yaml


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "models.yaml").write_text(models_yaml("packaged"))
    (tmp_path / "config.toml").write_text('[models]\npath = "models.yaml"\n')
    return tmp_path


def settings(config_dir: Path, **env: str) -> Settings:
    return load_settings(config_dir / "config.toml", environ=env)


def test_file_is_the_default(config_dir: Path) -> None:
    source = open_registry_source(settings(config_dir))
    assert isinstance(source, FileRegistrySource)
    assert {m.id for m in source.current().models} == {"packaged"}


def test_s3_source_from_environment_overrides(config_dir: Path, moto_aws: None) -> None:
    boto3.client("s3").create_bucket(Bucket="spine-models")
    boto3.client("s3").put_object(Bucket="spine-models", Key="m.yaml", Body=models_yaml("s3"))
    chosen = settings(
        config_dir,
        SPINE_MODELS__SOURCE="s3",
        SPINE_MODELS__S3__BUCKET="spine-models",
        SPINE_MODELS__S3__KEY="m.yaml",
        SPINE_MODELS__LIVE_TTL_SECONDS="45",
    )
    source = open_registry_source(chosen)
    assert isinstance(source, S3RegistrySource)
    assert source.interval == 45 and source.background
    assert source.fallback == config_dir / "models.yaml"
    assert {m.id for m in source.current().models} == {"s3"}


def test_appconfig_source_from_config_toml(
    config_dir: Path, appconfigdata: AppConfigDataFake
) -> None:
    appconfigdata.deploy("spine", "prod", "models", models_yaml("ac"))
    (config_dir / "config.toml").write_text(
        '[models]\nsource = "appconfig"\nbackground_refresh = false\n'
        '[models.appconfig]\napplication = "spine"\nenvironment = "prod"\nprofile = "models"\n'
    )
    source = open_registry_source(settings(config_dir))
    assert isinstance(source, AppConfigRegistrySource)
    assert not source.background
    assert {m.id for m in source.current().models} == {"ac"}


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"SPINE_MODELS__SOURCE": "s3"}, "models.s3.bucket"),
        (
            {"SPINE_MODELS__SOURCE": "appconfig", "SPINE_MODELS__APPCONFIG__APPLICATION": "a"},
            "models.appconfig.application, environment and profile",
        ),
        ({"SPINE_MODELS__SOURCE": "ftp"}, "models.source"),
    ],
)
def test_live_source_must_be_named(config_dir: Path, env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(config_dir, **env)
    assert missing in "\n".join(caught.value.problems)
