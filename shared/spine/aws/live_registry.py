"""The registry source a function reads, chosen by `[models] source` in config.toml.

- "file": the `models.yaml` next to config.toml (or `$SPINE_MODELS`), re-read on change;
- "s3": an S3 object, checked every `live_ttl_seconds` by ETag;
- "appconfig": an AppConfig configuration profile, polled every `live_ttl_seconds`.

A live source falls back to the packaged file when it cannot be read at start. Its
boto3 client is created by the first load, in the function's init phase, never at
import time.
"""

from __future__ import annotations

from spine.registry.source import FileRegistrySource, RegistrySource
from spine.settings import Settings


def open_registry_source(settings: Settings) -> RegistrySource:
    models = settings.models
    if models.source == "s3":
        from spine.aws.s3_registry import S3RegistrySource  # noqa: PLC0415 - the live source's SDK only where it is configured

        return S3RegistrySource(
            models.s3.bucket,
            models.s3.key,
            ttl=models.live_ttl_seconds,
            fallback=settings.models_path,
            background=models.background_refresh,
        )
    if models.source == "appconfig":
        from spine.aws.appconfig_registry import AppConfigRegistrySource  # noqa: PLC0415 - the live source's SDK only where it is configured

        return AppConfigRegistrySource(
            models.appconfig.application,
            models.appconfig.environment,
            models.appconfig.profile,
            ttl=models.live_ttl_seconds,
            fallback=settings.models_path,
            background=models.background_refresh,
        )
    return FileRegistrySource(settings.models_path, interval=models.reload_interval_seconds)
