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


class S3ModelsSource(_Section):
    bucket: str = ""
    key: str = "models.yaml"


class AppConfigModelsSource(_Section):
    # Names or ids, as AppConfig's StartConfigurationSession accepts either.
    application: str = ""
    environment: str = ""
    profile: str = ""


class ModelsSettings(_Section):
    # The packaged file: the registry when `source = "file"`, the fallback otherwise.
    path: str = "models.yaml"
    # How often a running function checks models.yaml for edits (seconds).
    reload_interval_seconds: Annotated[float, Field(ge=0)] = 2.0
    # Where a deployed function reads its live registry from.
    source: Literal["file", "s3", "appconfig"] = "file"
    # How long a registry fetched from S3 or AppConfig is served before the source is
    # asked for a newer one (AppConfig enforces at least 15 s between polls).
    live_ttl_seconds: Annotated[float, Field(ge=0)] = 30.0
    # Ask the live source from a background thread, so no request waits on it.
    background_refresh: bool = True
    s3: S3ModelsSource = Field(default_factory=S3ModelsSource)
    appconfig: AppConfigModelsSource = Field(default_factory=AppConfigModelsSource)

    @model_validator(mode="after")
    def _live_source_is_named(self) -> ModelsSettings:
        if self.source == "s3" and not (self.s3.bucket and self.s3.key):
            raise ValueError("models.source = 's3' needs models.s3.bucket and models.s3.key")
        if self.source == "appconfig" and not (
            self.appconfig.application and self.appconfig.environment and self.appconfig.profile
        ):
            raise ValueError(
                "models.source = 'appconfig' needs models.appconfig.application, "
                "environment and profile"
            )
        return self


class SecretsSettings(_Section):
    # How long a warm container reuses a Secrets Manager value (provider keys, the
    # worker token) before reading it again, so a rotation is seen within this time.
    max_age_seconds: Annotated[int, Field(ge=0)] = 300


class DatabaseSettings(_Section):
    # Where the embedded Postgres keeps its data when DATABASE_URL is unset.
    embedded_dir: str = ".spine/pgdata"
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Secrets Manager secret holding the URL (deployed); DATABASE_URL wins locally.
    url_secret: str | None = None


# "none" is not here on purpose: an unsigned token is never accepted.
JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
]  # fmt: skip


def _asymmetric_algorithms() -> list[JwtAlgorithm]:
    return ["RS256", "ES256"]


class AuthSettings(_Section):
    """API keys, JWTs from an identity provider, and the tokens Spine signs itself.

    Claim paths (`jwt_*_claim`) name a top-level claim (`cognito:groups`,
    `https://example.com/tenant`) or, when no such claim exists, a dotted path into
    nested objects (`app_metadata.tenant`). See docs/auth.md for Supabase and Cognito.
    """

    api_key_prefix: str = Field(default="sk-spine-", pattern=r"^[a-z0-9-]{3,16}$")
    # --- tokens from an identity provider (Supabase Auth, Cognito, any OIDC issuer)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # The claim compared with jwt_audience: Cognito access tokens have no `aud` and
    # carry the app client id in `client_id`.
    jwt_audience_claim: str = "aud"
    jwt_jwks_url: str | None = None
    # HS* verify against the JWT secret, the others against the JWKS; a token's key
    # is always chosen by its algorithm's family, so the two can never be confused.
    jwt_algorithms: list[JwtAlgorithm] = Field(default_factory=_asymmetric_algorithms)
    jwt_secret_name: str | None = None  # Secrets Manager name of the HS256 secret
    jwt_leeway_seconds: Annotated[int, Field(ge=0, le=300)] = 30
    # The JWKS is cached per container for this long, and fetched again early when a
    # token names an unknown `kid`, but never more often than jwks_min_refresh_seconds
    # (a flood of made-up kids must not hammer the identity provider).
    jwks_cache_seconds: Annotated[float, Field(gt=0)] = 600.0
    jwks_min_refresh_seconds: Annotated[float, Field(ge=0)] = 30.0
    jwks_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 3.0
    # Claims -> Principal.
    jwt_subject_claim: str = "sub"
    jwt_tenant_claim: str | None = "tenant"
    # Each holds a space-separated string (OAuth `scope`) or a list of strings.
    jwt_scope_claims: list[str] = Field(default_factory=lambda: ["scope"])
    # Stripped from scopes that carry it: Cognito names resource-server scopes
    # "<identifier>/<scope>", so "spine/admin" becomes "admin".
    jwt_scope_prefix: str | None = None
    jwt_tier_claim: str | None = "tier"
    # Claims that must hold exactly these values (Cognito: token_use = "access").
    jwt_required_claims: dict[str, str] = Field(default_factory=dict)
    # --- tokens Spine signs (POST /v1/auth/token): HS256 with the JWT secret
    token_issuer: str = Field(default="spine", min_length=1)
    token_audience: str = Field(default="spine", min_length=1)
    token_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 900

    @model_validator(mode="after")
    def _issuers_differ(self) -> AuthSettings:
        # Spine's own tokens are recognised by their issuer; sharing it with the
        # identity provider would verify the provider's tokens as Spine's.
        if self.jwt_issuer is not None and self.jwt_issuer == self.token_issuer:
            raise ValueError("auth.jwt_issuer must differ from auth.token_issuer")
        return self


class WorkerSettings(_Section):
    url: str = "http://127.0.0.1:8081"
    token_secret: str | None = None  # Secrets Manager name; SPINE_WORKER_TOKEN wins


class LimitsSettings(_Section):
    default_rpm: Annotated[int, Field(ge=0)] = 0  # 0: no per-principal limit
    default_tpm: Annotated[int, Field(ge=0)] = 0
    # USD per principal (API key or JWT subject); 0: no budget. Keys override all
    # four in api_keys (migrations/0002_limits.sql).
    daily_budget_usd: Annotated[float, Field(ge=0)] = 0.0
    monthly_budget_usd: Annotated[float, Field(ge=0)] = 0.0
    max_messages: Annotated[int, Field(ge=1)] = 2048


class RetentionSettings(_Section):
    """What the scheduled maintenance deletes (spine.maintenance)."""

    usage_days: Annotated[int, Field(ge=0)] = 0  # 0: keep every usage row
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000


class UsageSpoolSettings(_Section):
    """Where a usage row goes when Postgres cannot take it (spine.ledger.spool): an SQS
    queue deployed (SPINE_USAGE__SPOOL_QUEUE_URL, set by template.yaml), a folder of
    files locally. With neither, the row is only logged in full (an error)."""

    spool_queue_url: str = ""
    # Relative paths resolve against config.toml's folder.
    spool_dir: str = ""


class BatchSettings(_Section):
    """OpenAI's Files and Batch APIs (spine.batches, docs/batch.md): where file content
    and batch work go (template.yaml sets both deployed; `spine dev` makes them in its
    embedded S3 + SQS), and OpenAI's limits."""

    bucket: str = ""
    queue_url: str = ""
    # OpenAI's limits on a batch input file.
    max_file_bytes: Annotated[int, Field(ge=1)] = 200 * 1024 * 1024
    max_lines: Annotated[int, Field(ge=1)] = 50_000
    # The largest body POST /v1/files and an upload's part take: under Lambda's 6 MB
    # invocation payload. Larger files come through POST /v1/uploads.
    max_upload_body_bytes: Annotated[int, Field(ge=1024)] = 5_500_000
    # File content up to this size is answered inline; larger, through a presigned
    # S3 URL the client is redirected to (a Lambda answer holds 6 MB at most).
    inline_content_bytes: Annotated[int, Field(ge=0)] = 4 * 1024 * 1024
    presigned_url_seconds: Annotated[int, Field(ge=60, le=604800)] = 3600
    # Deliveries of a line that failed with a transient error (429, 5xx, timeout)
    # before it goes to the error file; the wait between them doubles from the first.
    line_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    retry_delay_seconds: Annotated[int, Field(ge=0, le=900)] = 5
    # How long a delivery holds a line it runs before another may take it over.
    line_lease_seconds: Annotated[int, Field(ge=10)] = 300
    # Lines enqueued per invocation of the batch function (the rest continue in the
    # next one), so a 50,000-line batch never meets a function's timeout.
    enqueue_chunk: Annotated[int, Field(ge=10)] = 5000
    # A line's JSON travels in its message up to this size; larger, it is read from
    # the file by its byte range (an SQS message holds 256 KB).
    inline_line_bytes: Annotated[int, Field(ge=0, le=200_000)] = 200_000
    # Lines per queue message (fewer when their requests fill one): the queue's round
    # trips and the line bookkeeping are paid per message. A message runs within one
    # invocation, so a group of slow calls must fit the function's timeout.
    lines_per_message: Annotated[int, Field(ge=1, le=1000)] = 50
    # Model calls one invocation of the batch function makes at once (across the
    # messages it was handed): the event source's MaximumConcurrency times this is
    # what batches send a provider at most.
    line_concurrency: Annotated[int, Field(ge=1, le=1000)] = 16


class CorsSettings(_Section):
    """Which browser origins may call the API (exact origins such as
    "https://app.example.com", or "*"). Empty, the default: no CORS headers, and a
    preflight is refused, so only same-origin pages (the admin app) and servers call it.
    Each path's preflight goes to the function that serves it (template.yaml)."""

    allow_origins: list[str] = Field(default_factory=list)
    # Browsers send the request's headers for approval; the official SDKs add their
    # own (x-stainless-*), so any header is allowed once the origin is.
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    expose_headers: list[str] = Field(
        default_factory=lambda: [
            "x-request-id",
            "x-spine-dropped-params",
            "retry-after",
            *(
                f"x-ratelimit-{part}-{metric}"
                for part in ("limit", "remaining", "reset")
                for metric in ("requests", "tokens")
            ),
        ]
    )
    max_age_seconds: Annotated[int, Field(ge=0, le=86400)] = 600


class WorkflowsSettings(_Section):
    """Where a pipeline run's ready steps are sent: an SQS queue consumed by the
    workflows function (SPINE_WORKFLOWS__QUEUE_URL, set by template.yaml; `spine dev`
    makes it in its embedded SQS). Empty: runs cannot start (503)."""

    queue_url: str = ""


class FunctionSettings(_Section):
    verify_jwt: bool = True


class Settings(_Section):
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    usage: UsageSpoolSettings = Field(default_factory=UsageSpoolSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    workflows: WorkflowsSettings = Field(default_factory=WorkflowsSettings)
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
