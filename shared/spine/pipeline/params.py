"""Turn a client's request into the request a provider receives.

Order of precedence for sampling parameters: the request, then the profile, then the
model's defaults in models.yaml. Everything here is checked before any provider is
called: capabilities the model lacks, parameters its provider does not honour,
output limits, and a prompt that cannot fit the context window.
"""

from __future__ import annotations

from typing import Any, TypeVar

from spine.errors import ContextWindowExceededError, InvalidRequestError
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    SamplingParams,
)

RequestT = TypeVar("RequestT", bound=SamplingParams)

# Fields that steer Spine itself, never forwarded as provider parameters.
GATEWAY_FIELDS = frozenset({"model", "messages", "prompt", "session_id", "stream", "user"})

# Without the model's tokenizer, a token is at least ~1 byte of UTF-8 in practice
# and ~4 on average for English; only a prompt that cannot fit even at 4 bytes per
# token is refused here. The provider's own check catches the rest (mapped to 400).
_BYTES_PER_TOKEN_CEILING = 4


def apply_defaults(request: RequestT, resolved: ResolvedModel) -> RequestT:
    layered: dict[str, Any] = {}
    layered.update(resolved.entry.defaults.as_params())
    layered.update(resolved.profile_params)
    explicit = request.model_dump(exclude_unset=True)
    merged = {**layered, **explicit}
    if isinstance(request, ChatCompletionRequest) and resolved.system_prompt:
        messages = merged["messages"]
        if not any(m["role"] in ("system", "developer") for m in messages):
            merged["messages"] = [{"role": "system", "content": resolved.system_prompt}, *messages]
    # The provider sees the resolved model, never the alias or profile name.
    merged["model"] = resolved.entry.id
    return type(request).model_validate(merged)


def check_chat_request(
    request: ChatCompletionRequest, resolved: ResolvedModel, supported: frozenset[str]
) -> None:
    entry = resolved.entry
    _require(resolved, Capability.CHAT, "model", "chat completions")
    if request.tools:
        _require(resolved, Capability.TOOLS, "tools", "tools")
    if any(m.has_images() for m in request.messages):
        _require(resolved, Capability.VISION, "messages", "image inputs")
    if request.response_format and request.response_format.type == "json_schema":
        _require(resolved, Capability.JSON_SCHEMA, "response_format", "JSON schema output")
    _check_supported(request, resolved, supported)
    _check_output_limit(request.output_limit(), resolved)
    prompt_bytes = sum(len(_message_bytes(m)) for m in request.messages)
    _check_context(prompt_bytes, request.output_limit(), entry.context_window, entry.id)


def check_completion_request(
    request: CompletionRequest, resolved: ResolvedModel, supported: frozenset[str]
) -> None:
    _check_supported(request, resolved, supported)
    _check_output_limit(request.max_tokens, resolved)
    prompt_bytes = len(request.prompt_text().encode())
    _check_context(
        prompt_bytes, request.max_tokens, resolved.entry.context_window, resolved.entry.id
    )


def _require(resolved: ResolvedModel, capability: Capability, param: str, what: str) -> None:
    if not resolved.entry.supports(capability):
        raise InvalidRequestError(
            f"Model '{resolved.requested}' does not support {what}.",
            param=param,
            code="unsupported_capability",
        )


def _check_supported(
    request: SamplingParams, resolved: ResolvedModel, supported: frozenset[str]
) -> None:
    for name in sorted(request.model_fields_set - GATEWAY_FIELDS):
        if getattr(request, name) is None:
            continue
        if name not in supported:
            raise InvalidRequestError(
                f"Unsupported parameter: '{name}' is not supported by provider "
                f"'{resolved.entry.provider.value}' (model '{resolved.requested}').",
                param=name,
                code="unsupported_parameter",
            )


def _check_output_limit(limit: int | None, resolved: ResolvedModel) -> None:
    ceiling = resolved.entry.max_output_tokens
    if limit is not None and ceiling is not None and limit > ceiling:
        raise InvalidRequestError(
            f"max_tokens is too large: {limit}. Model '{resolved.requested}' supports at "
            f"most {ceiling} completion tokens.",
            param="max_tokens",
            code="invalid_value",
        )


def _check_context(prompt_bytes: int, output: int | None, window: int, model: str) -> None:
    floor_tokens = prompt_bytes // _BYTES_PER_TOKEN_CEILING
    if floor_tokens + (output or 0) > window:
        raise ContextWindowExceededError(
            f"This model's maximum context length is {window} tokens. Your messages are "
            f"at least {floor_tokens} tokens long"
            + (f" and you asked for {output} more" if output else "")
            + f" (model '{model}').",
            param="messages",
        )


def _message_bytes(message: ChatMessage) -> bytes:
    return message.text().encode()
