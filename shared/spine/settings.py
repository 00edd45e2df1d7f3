"""Service settings: `config.toml`, overridden by environment variables.

Lookup order for the file: `$SPINE_CONFIG`, then `./config.toml`. Any setting can be
overridden as `SPINE_<SECTION>__<KEY>` (for example `SPINE_WORKER__URL`). Secrets are
never read from the file: the database URL comes from `DATABASE_URL`, the JWT secret
from `SPINE_JWT_SECRET`, the worker token from `SPINE_WORKER_TOKEN` (or the Secrets
Manager names configured here).
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spine.errors import ConfigError

ENV_PREFIX = "SPINE_"
_SECRET_WORDS = ("password", "secret_value", "api_key_value", "private_key")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceSettings(_Section):
    environment: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Requests larger than this get 413 before any parsing.
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    service_name: str = "spine"


class ModelsSettings(_Section):
    path: str = "models.yaml"
    # How often a running function checks models.yaml for edits (seconds).
    reload_interval_seconds: Annotated[float, Field(ge=0)] = 2.0


class DatabaseSettings(_Section):
    # Where the embedded Postgres keeps its data when DATABASE_URL is unset.
    embedded_dir: str = ".spine/pgdata"
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Secrets Manager secret holding the URL (deployed); DATABASE_URL wins locally.
    url_secret: str | None = None


class AuthSettings(_Section):
    api_key_prefix: str = Field(default="sk-spine-", pattern=r"^[a-z0-9-]{3,16}$")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwt_secret_name: str | None = None  # Secrets Manager name of the HS256 secret
    jwt_leeway_seconds: Annotated[int, Field(ge=0, le=300)] = 30


class WorkerSettings(_Section):
    url: str = "http://127.0.0.1:8081"
    token_secret: str | None = None  # Secrets Manager name; SPINE_WORKER_TOKEN wins


class LimitsSettings(_Section):
    default_rpm: Annotated[int, Field(ge=0)] = 0  # 0: no per-principal limit
    default_tpm: Annotated[int, Field(ge=0)] = 0
    max_messages: Annotated[int, Field(ge=1)] = 2048


class FunctionSettings(_Section):
    verify_jwt: bool = True


class Settings(_Section):
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    functions: dict[str, FunctionSettings] = Field(default_factory=dict)
    # Where the file was read from; relative paths in it resolve against its folder.
    base_dir: str = "."

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.service.environment == "production" and self.worker.url.startswith(
            "http://127.0.0.1"
        ):
            # Deployed functions cannot reach a loopback worker; this is a config slip.
            raise ValueError("worker.url points at loopback in production")
        return self

    def function(self, name: str) -> FunctionSettings:
        return self.functions.get(name, FunctionSettings())

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    @property
    def models_path(self) -> Path:
        override = os.environ.get("SPINE_MODELS")
        return Path(override) if override else self.resolve_path(self.models.path)

    @property
    def database_url(self) -> str | None:
        return os.environ.get("DATABASE_URL") or None

    @property
    def worker_token(self) -> str | None:
        return os.environ.get("SPINE_WORKER_TOKEN") or None

    @property
    def jwt_secret(self) -> str | None:
        return os.environ.get("SPINE_JWT_SECRET") or None


def _find_config_file() -> Path | None:
    explicit = os.environ.get("SPINE_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("config.toml")
    return local if local.exists() else None


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`SPINE_WORKER__URL=x` -> {"worker": {"url": "x"}}; values parsed as TOML scalars
    so `SPINE_FUNCTIONS__CHAT__VERIFY_JWT=false` is a boolean, not the string."""
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _scalar(raw)
    return tree


def _scalar(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    file = path if path is not None else _find_config_file()
    data: dict[str, Any] = {}
    source = "environment"
    if file is not None:
        source = str(file)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{file}: invalid TOML: {exc}"]) from exc
        data["base_dir"] = str(file.parent)
    problems = _secret_problems(data, source)
    data = _merge(data, _env_overrides(env))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += [
            f"{source}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigError(problems) from exc
    if problems:
        raise ConfigError(problems)
    return settings


def _secret_problems(data: dict[str, Any], source: str, prefix: str = "") -> list[str]:
    problems = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            problems += _secret_problems(value, source, f"{name}.")
        elif (key == "url" and prefix == "database.") or any(w in key for w in _SECRET_WORDS):
            problems.append(
                f"{source}: {name}: secrets never go in config.toml; use an environment "
                "variable or a Secrets Manager name"
            )
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once (a Lambda container reuses them)."""
    return load_settings()
