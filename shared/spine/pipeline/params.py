"""Turn a client's request into the request a provider receives.

Order of precedence for sampling parameters: the request, then the profile, then the
model's defaults in models.yaml. Everything here is checked before any provider is
called: capabilities the model lacks, parameters its provider does not honour,
output limits, and a prompt that cannot fit the context window.
"""

from __future__ import annotations

from typing import Any, TypeVar

from spine.errors import ContextWindowExceededError, InvalidRequestError
from spine.pipeline.tokens import TokenCount, count_prompt, encoding_for
from spine.providers.base import ChatProvider
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    FilePart,
    InputAudioPart,
    ModelRequest,
    SamplingParams,
)

RequestT = TypeVar("RequestT", bound=SamplingParams)
FitT = TypeVar("FitT", bound=ModelRequest)

# Fields that steer Spine itself, never forwarded as provider parameters.
GATEWAY_FIELDS = frozenset({"model", "messages", "prompt", "input", "session_id", "stream", "user"})

# The context window is checked here only where the prompt is counted exactly (the
# model's own tokenizer: OpenAI's BPE, offline). An estimate is not a lower bound
# (bytes / 4 refused prompts that llama-server counted well inside the window), so
# for every other model the provider's own overflow error is the word that counts:
# it is a 400 context_length_exceeded too, and the chain moves to a larger window.


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
    request: ChatCompletionRequest, resolved: ResolvedModel, provider: ChatProvider
) -> ChatCompletionRequest:
    """The request as `provider` receives it for `resolved`, or the 400 that refuses
    it: fields the provider does not take are dropped (and named), unless the model
    or profile is `strict`."""
    entry = resolved.entry
    _require(resolved, Capability.CHAT, "model", "chat completions")
    if request.tools:
        _require(resolved, Capability.TOOLS, "tools", "tools")
        if not provider.speaks_openai and any(t.type == "custom" for t in request.tools):
            raise InvalidRequestError(
                f"Custom tools are not supported by provider '{entry.provider.value}' "
                f"(model '{resolved.requested}'): send function tools.",
                param="tools",
                code="unsupported_capability",
            )
    if any(m.has_images() for m in request.messages):
        _require(resolved, Capability.VISION, "messages", "image inputs")
    if any(m.has_parts(InputAudioPart) for m in request.messages):
        _require(resolved, Capability.AUDIO_INPUT, "messages", "audio inputs")
    if any(m.has_parts(FilePart) for m in request.messages):
        _require(resolved, Capability.FILE_INPUT, "messages", "file inputs")
    if request.response_format and request.response_format.type == "json_schema":
        _require(resolved, Capability.JSON_SCHEMA, "response_format", "JSON schema output")
    request = fit_to_provider(request, resolved, provider)
    _check_output_limit(request.output_limit(), resolved)
    if encoding_for(entry) is not None and not _surely_fits(request, entry.context_window):
        count = count_prompt(entry, messages=request.messages, tools=request.tools)
        _check_context(count, request.output_limit(), entry.context_window, entry.id)
    return request


def check_completion_request(
    request: CompletionRequest, resolved: ResolvedModel, provider: ChatProvider
) -> CompletionRequest:
    """As `check_chat_request`, for a text completion. What only a server with its
    own `/v1/completions` can do (echo the prompt, log probabilities, a suffix) is a
    400 elsewhere: answering without it would silently change the answer's shape."""
    if not provider.native_completions:
        for name in ("echo", "logprobs", "suffix"):
            if getattr(request, name) not in (None, False):
                raise InvalidRequestError(
                    f"'{name}' needs a server with its own text completions; provider "
                    f"'{resolved.entry.provider.value}' (model '{resolved.requested}') "
                    "answers them as chat.",
                    param=name,
                    code="unsupported_parameter",
                )
    request = fit_to_provider(request, resolved, provider)
    _check_output_limit(request.max_tokens, resolved)
    entry = resolved.entry
    text = request.prompt_text()
    # As `_surely_fits`: a prompt has at most as many tokens as UTF-8 bytes.
    surely_fits = len(text.encode()) + (request.max_tokens or 0) <= entry.context_window
    if encoding_for(entry) is not None and not surely_fits:
        count = count_prompt(entry, prompt=text)
        _check_context(count, request.max_tokens, entry.context_window, entry.id)
    return request


def _require(resolved: ResolvedModel, capability: Capability, param: str, what: str) -> None:
    if not resolved.entry.supports(capability):
        raise InvalidRequestError(
            f"Model '{resolved.requested}' does not support {what}.",
            param=param,
            code="unsupported_capability",
        )


def fit_to_provider(
    request: FitT,
    resolved: ResolvedModel,
    provider: ChatProvider,
    supported: frozenset[str] | None = None,
) -> FitT:
    """Drop what the provider does not take: known fields outside its
    `supported_params`, n > 1 where it gives one choice, and fields Spine does not
    know (forwarded as they came to a provider that speaks OpenAI's API). A `strict`
    model or profile refuses them instead, naming the first. `supported`: the fields
    the provider takes for this kind of request (its chat parameters by default)."""
    supported = provider.supported_params if supported is None else supported
    declared = type(request).model_fields
    unsupported = {
        name
        for name in request.model_fields_set - GATEWAY_FIELDS
        if name in declared and getattr(request, name) is not None and name not in supported
    }
    if (getattr(request, "n", None) or 1) > 1 and not provider.speaks_openai:
        unsupported.add("n")
    unknown = {k for k, v in (request.model_extra or {}).items() if v is not None}
    if resolved.strict:
        if unknown:
            name = min(unknown)
            raise InvalidRequestError(
                f"Unrecognized request argument supplied: {name} (model "
                f"'{resolved.requested}' is strict).",
                param=name,
                code="unknown_parameter",
            )
        if unsupported:
            name = min(unsupported)
            raise InvalidRequestError(
                f"Unsupported parameter: '{name}' is not supported by provider "
                f"'{resolved.entry.provider.value}' (model '{resolved.requested}').",
                param=name,
                code="unsupported_parameter",
            )
    dropped = unsupported if provider.speaks_openai else unsupported | unknown
    return request.without(tuple(sorted(dropped))) if dropped else request


def _check_output_limit(limit: int | None, resolved: ResolvedModel) -> None:
    ceiling = resolved.entry.max_output_tokens
    if limit is not None and ceiling is not None and limit > ceiling:
        raise InvalidRequestError(
            f"max_tokens is too large: {limit}. Model '{resolved.requested}' supports at "
            f"most {ceiling} completion tokens.",
            param="max_tokens",
            code="invalid_value",
        )


# OpenAI's framing: at most this many tokens around each message, and for the reply.
_FRAMING_PER_MESSAGE = 4
_REPLY_PRIMING = 3


def _surely_fits(request: ChatCompletionRequest, window: int) -> bool:
    """Whether the prompt fits without counting it: a byte-level BPE token is at least
    one byte of UTF-8, so the prompt has at most as many tokens as bytes. Counting
    costs time on large prompts; most prompts are far below the window."""
    size = sum(len(m.text().encode()) + len(m.role) for m in request.messages)
    if request.tools:
        size += sum(len(t.model_dump_json(exclude_none=True)) for t in request.tools)
    framing = _FRAMING_PER_MESSAGE * len(request.messages) + _REPLY_PRIMING
    return size + framing + (request.output_limit() or 0) <= window


def _check_context(count: TokenCount, output: int | None, window: int, model: str) -> None:
    if not count.exact or count.tokens + (output or 0) <= window:
        return
    raise ContextWindowExceededError(
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {count.tokens} tokens"
        + (f" and you asked for {output} more" if output else "")
        + f" (model '{model}'). Please reduce the length of the messages.",
        param="messages",
    )
