"""OpenAI-compatible request and response shapes (the public wire format).

Requests are strict: a field OpenAI does not define (and Spine does not add) is a 400
naming it, so a typo never silently changes behaviour. Responses are what every
provider adapter must produce, whatever the upstream said.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- request -------------------------------------------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str
    # Anthropic's prompt caching ({"type": "ephemeral"}, optionally a "ttl"): passed to
    # Claude models, dropped for the others (spine.providers).
    cache_control: dict[str, Any] | None = None


class ImageUrl(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: str
    format: str


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(BaseModel):
    # OpenAI's file part: file_id, or file_data (base64) with filename.
    model_config = ConfigDict(extra="allow")

    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(_Strict):
    type: Literal["file"]
    file: FileRef


ContentPart = Annotated[
    TextPart | ImagePart | InputAudioPart | FilePart, Field(discriminator="type")
]


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _content_rules(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if (
            self.role in ("system", "developer")
            and isinstance(self.content, list)
            and any(p.type != "text" for p in self.content)
        ):
            raise ValueError(f"a '{self.role}' message may only contain text parts")
        return self

    def text(self) -> str:
        """The message's text, parts joined; images are not text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def has_images(self) -> bool:
        return self.has_parts(ImagePart)

    def has_parts(self, kind: type[BaseModel]) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, kind) for p in self.content)


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    """A tool the model may call: a function, or one of OpenAI's custom tools (free-form
    input, only OpenAI-speaking providers take them)."""

    type: Literal["function", "custom"]
    function: FunctionDefinition | None = None
    custom: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _definition_present(self) -> Tool:
        if self.type == "function" and self.function is None:
            raise ValueError("a 'function' tool needs 'function'")
        if self.type == "custom" and self.custom is None:
            raise ValueError("a 'custom' tool needs 'custom'")
        return self


class JsonSchemaFormat(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


class StreamOptions(_Strict):
    include_usage: StrictBool | None = None
    include_obfuscation: StrictBool | None = None


class ModelRequest(_Strict):
    """A request that a model answers (chat, completions, embeddings): what the
    pipeline needs of every kind of request."""

    # Fields left out for the provider that serves the request (it does not take
    # them); set by spine.pipeline.params, named in x-spine-dropped-params.
    _dropped: tuple[str, ...] = PrivateAttr(default=())

    model: str = Field(min_length=1, max_length=256)

    @property
    def dropped_params(self) -> tuple[str, ...]:
        return self._dropped

    def without(self, names: tuple[str, ...]) -> Self:
        """This request without the fields `names`, remembering them as dropped."""
        kept = self.model_dump(exclude_unset=True, exclude=set(names))
        copy = type(self).model_validate(kept)
        copy._dropped = names
        return copy


class SamplingParams(ModelRequest):
    """Sampling fields shared by chat and text completions. Numbers and booleans are
    strict, as in OpenAI's API: `"max_tokens": "10"` or `true` is a 400 naming the
    field, never 10 or 1."""

    temperature: Annotated[float, Field(ge=0, le=2, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    max_tokens: Annotated[int, Field(ge=1, strict=True)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    seed: StrictInt | None = None
    stop: str | list[str] | None = None
    # Several choices where the provider gives them (spine.pipeline.params refuses
    # n > 1 for the others).
    n: Annotated[int, Field(ge=1, le=128, strict=True)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100, strict=True)]] | None = None
    user: str | None = Field(default=None, max_length=256)
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    # llama.cpp samplers (provider 'llamacpp' / 'openai_compatible' only).
    top_k: Annotated[int, Field(ge=0, strict=True)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0, strict=True)] | None = None
    mirostat: Literal[0, 1, 2] | None = None
    mirostat_tau: Annotated[float, Field(ge=0, strict=True)] | None = None
    mirostat_eta: Annotated[float, Field(ge=0, strict=True)] | None = None
    grammar: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# Fields that only llama.cpp-style servers understand.
LLAMACPP_ONLY_PARAMS = frozenset(
    {"top_k", "min_p", "repeat_penalty", "mirostat", "mirostat_tau", "mirostat_eta", "grammar"}
)


class ChatCompletionRequest(SamplingParams):
    # Fields Spine does not know (OpenAI adds them often: service_tier, verbosity,
    # prompt_cache_key, ...) are kept: forwarded to OpenAI-speaking providers, dropped
    # for the others and named in x-spine-dropped-params (spine.pipeline.params).
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1, strict=True)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True)] | None = None
    metadata: dict[str, str] | None = None
    store: StrictBool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    # Spine extension: append this exchange to a stored chat session.
    session_id: str | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# Prompts in one text completion request (OpenAI's legacy API takes up to 2,048).
MAX_PROMPTS = 2048


class CompletionRequest(SamplingParams):
    model_config = ConfigDict(extra="allow")  # as ChatCompletionRequest

    model: str = Field(min_length=1, max_length=256)
    prompt: str | list[str] = Field(min_length=1)
    suffix: str | None = None
    echo: StrictBool | None = None
    best_of: Annotated[int, Field(ge=1, le=1, strict=True)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5, strict=True)] | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_count(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts per request")
        return value

    def prompts(self) -> list[str]:
        """Each prompt: one choice is answered per prompt, as OpenAI's legacy API does."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def prompt_text(self) -> str:
        """Every prompt's text (token estimates and counts)."""
        return "\n\n".join(self.prompts())


# --- response ------------------------------------------------------------------------


def _none(value: object) -> bool:
    return value is None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    # Prompt tokens written to the provider's cache (Anthropic bills them above the
    # input price); absent from the JSON when the provider reports none.
    cache_write_tokens: int | None = Field(default=None, exclude_if=_none)


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails = Field(
        default_factory=CompletionTokensDetails
    )

    @classmethod
    def of(
        cls, prompt: int, completion: int, cached: int = 0, reasoning: int = 0, cache_write: int = 0
    ) -> Usage:
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(
                cached_tokens=cached, cache_write_tokens=cache_write or None
            ),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
        )

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens

    @property
    def cache_write_tokens(self) -> int:
        return self.prompt_tokens_details.cache_write_tokens or 0


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _is_none(value: object) -> bool:
    return value is None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ResponseToolCall] | None = None
    # The model's reasoning, as llama.cpp and other reasoning servers send it (not an
    # OpenAI field: left out of the JSON when there is none).
    reasoning_content: str | None = Field(default=None, exclude_if=_is_none)


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason | None = "stop"
    logprobs: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    system_fingerprint: str | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = "stop"
    logprobs: dict[str, Any] | None = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage = Field(default_factory=Usage)
    system_fingerprint: str | None = None
