"""Response shapes of the admin function's routes (`spine.api.routes.admin`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from spine.schemas.public import PublicModel


class PrincipalPublic(PublicModel):
    object: Literal["principal"] = "principal"
    subject: str
    credential: str
    api_key_id: str | None
    tenant: str | None
    scopes: list[str]
    tier: str
    admin: bool


class ModelsCheckProblem(PublicModel):
    line: int | None
    field: str | None
    message: str
    text: str


class ModelsCheckPublic(PublicModel):
    object: Literal["models.check"] = "models.check"
    valid: bool
    models: list[str]
    problems: list[ModelsCheckProblem]


class LatencyFigures(PublicModel):
    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class ProviderLatency(LatencyFigures):
    provider: str


class ModelLatency(LatencyFigures):
    model: str


class LatencyReport(PublicModel):
    object: Literal["latency.report"] = "latency.report"
    start: str
    end: str
    totals: LatencyFigures
    by_provider: list[ProviderLatency]
    by_model: list[ModelLatency]


class CooldownPublic(PublicModel):
    cooling: bool
    failures: int
    cooled_until: int | None
    window_started: int | None
    last_error: str | None


class DeploymentPublic(PublicModel):
    name: str
    provider: str
    model: str
    weight: float
    cooldown: CooldownPublic | None


class ModelDeployments(PublicModel):
    model: str
    provider: str
    deployments: list[DeploymentPublic]


class DeploymentsReport(PublicModel):
    object: Literal["list"] = "list"
    data: list[ModelDeployments]


class WorkerAnswer(BaseModel):
    """The llama.cpp worker's own answer to a lifecycle call, passed on as it came
    (docs/worker.md describes it): the worker owns its shape."""

    model_config = ConfigDict(extra="allow")

    object: str | None = None
    data: list[dict[str, Any]] | None = None
