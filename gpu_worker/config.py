"""Worker settings: one pydantic model, filled from `SPINE_WORKER_*` env, then CLI flags.

This module is what the CLI imports first, so it stays light: pydantic and the stdlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from spine.errors import ConfigError

ENV_PREFIX = "SPINE_WORKER_"
_OFF = ("off", "none", "-")  # audit_log values that turn the file off
# The llama.cpp source the build script pins; its cache folder is named after it.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"


class Mode(StrEnum):
    """How a model's slots and queue trade latency against throughput.

    See `gpu_worker.scheduler.MODE_POLICIES` for the exact numbers.
    """

    LATENCY = "latency"
    BALANCED = "balanced"
    THROUGHPUT = "throughput"


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """`$SPINE_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/spine` (as the scripts use)."""
    env = os.environ if env is None else env
    if env.get("SPINE_CACHE_DIR"):
        return Path(env["SPINE_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "spine"


def default_model_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    return [cache_root(env) / "models", Path("models")]


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8081
    models_path: Path = Path("models.yaml")
    # Model files must live under one of these (after resolving symlinks).
    model_dirs: list[Path] = Field(default_factory=default_model_dirs)
    # A model id or alias from models.yaml; unset = the first `llamacpp` entry.
    default_model: str | None = None
    # Load the default model at start-up, so /ready turns 200 without a first request.
    preload_default: bool = True
    max_loaded_models: Annotated[int, Field(ge=1)] = 2
    # Unload a model this long after its last request ended; 0 keeps models loaded.
    idle_ttl_seconds: Annotated[float, Field(ge=0)] = 900.0
    # Waiting requests per model beyond its slots; more get 429 + Retry-After.
    queue_size: Annotated[int, Field(ge=0, le=100_000)] = 64
    mode: Mode = Mode.BALANCED
    # Overrides the mode's aging interval (seconds a request waits per priority step).
    aging_seconds: Annotated[float, Field(gt=0)] | None = None
    audit_log: Path | None = Field(default_factory=lambda: cache_root() / "worker-audit.jsonl")
    # SIGTERM, then SIGKILL after this many seconds.
    grace_seconds: Annotated[float, Field(gt=0)] = 10.0
    load_timeout_seconds: Annotated[float, Field(gt=0)] = 300.0
    llama_server: Path | None = None
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    token: SecretStr | None = None
    token_secret: str | None = None  # AWS Secrets Manager name or ARN
    insecure_no_auth: bool = False
    log_level: str = "INFO"
    # CloudWatch metrics (queue depth, in flight, slots) for autoscaling and the
    # dashboard; off unless a namespace is set (gpu_worker.cloudwatch).
    metrics_namespace: str | None = None
    metrics_service: str = "spine-worker"
    metrics_interval_seconds: Annotated[float, Field(ge=1)] = 60.0
    # Key tier header value -> priority class, for callers that set a tier, not x-priority.
    tier_priorities: dict[str, str] = Field(
        default_factory=lambda: {
            "premium": "high",
            "standard": "normal",
            "free": "low",
            "batch": "low",
        }
    )

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> WorkerSettings:
        """Env (`SPINE_WORKER_<FIELD>`), then `overrides` (CLI flags) on top."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                data[name] = _from_env(name, raw)
        # The spec'd names for these two predate the worker's prefix.
        if "llama_server" not in data and env.get("SPINE_LLAMA_SERVER"):
            data["llama_server"] = env["SPINE_LLAMA_SERVER"]
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if isinstance(data.get("audit_log"), str) and data["audit_log"].lower() in _OFF:
            data["audit_log"] = None
        if "model_dirs" not in data:
            data["model_dirs"] = default_model_dirs(env)
        if "audit_log" not in data:
            data["audit_log"] = cache_root(env) / "worker-audit.jsonl"
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [
                f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in exc.errors()
            ]
            raise ConfigError(problems) from exc

    def model_dir_roots(self) -> list[Path]:
        """The model dirs as absolute, symlink-free paths (what confinement compares)."""
        return [d.expanduser().resolve() for d in self.model_dirs]


def _from_env(name: str, raw: str) -> Any:
    if name == "model_dirs":
        return [p for p in raw.split(os.pathsep) if p]
    if name == "tier_priorities":
        pairs = (item.split("=", 1) for item in raw.split(",") if "=" in item)
        return {k.strip(): v.strip() for k, v in pairs}
    return raw
