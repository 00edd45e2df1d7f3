"""OpenAI and every OpenAI-compatible server (vLLM, llama-server, our worker) through
the official `openai` SDK.

The request is already OpenAI-shaped, so the work here is deciding what each kind of
server may receive (llama.cpp samplers go only to llama.cpp-style servers, through
`extra_body`) and normalising answers from servers that bend the schema.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

import openai
from openai import AsyncStream, RequestOptions
from openai.types import Completion as SdkCompletion
from openai.types import CompletionUsage
from openai.types import CreateEmbeddingResponse as SdkEmbeddings
from openai.types.chat import ChatCompletion as SdkChatCompletion

from spine.errors import ServiceUnavailableError, SpineError
from spine.providers.base import ChatProvider, Target
from spine.providers.convert import COMMON_PARAMS
from spine.providers.errors import (
    from_upstream_status,
    missing_upstream_key,
    upstream_bad_response,
    upstream_timeout,
    upstream_unreachable,
)
from spine.providers.runtime import ClientCache, guard_stream, within_deadline
from spine.registry.schema import ProviderKind, Timeouts
from spine.schemas.embeddings import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from spine.schemas.openai import (
    LLAMACPP_ONLY_PARAMS,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionChoice,
    CompletionRequest,
    FinishReason,
    FunctionCall,
    ResponseToolCall,
    TextCompletion,
    Usage,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# llama-server and most self-hosted servers ignore the key, but the SDK insists on one.
_NO_KEY = "sk-no-key-required"

# Fields that never go upstream as such: routing, transport and Spine's own extensions.
_NOT_FORWARDED = frozenset(
    {"model", "messages", "prompt", "stream", "stream_options", "session_id"}
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "function_call",
    # What some compatible servers say instead.
    "eos": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
}

# Requests go through the SDK's own `post` (its auth, headers, timeouts and error
# exceptions), not `chat.completions.create` / `completions.create`: the request is
# already a JSON-ready dict, which `create` would walk again against the SDK's
# TypedDicts. Stream events come back as their JSON dicts (`AsyncStream[object]`)
# instead of models the adapter would dump straight back to dicts. Together about
# 0.5 ms per call (tests/benchmarks/bench_ttfc.py, bench_gateway.py).
_EventStream = AsyncStream[object]
T = TypeVar("T")

_CHAT_FIELDS = frozenset(ChatCompletionRequest.model_fields)
_TEXT_COMPLETION_FIELDS = frozenset(CompletionRequest.model_fields)


def _finish_reason(raw: str | None) -> FinishReason:
    return _FINISH_REASONS.get(raw or "stop", "stop")


def normalize_usage(raw: CompletionUsage | None) -> Usage:
    if raw is None:
        return Usage()
    prompt_details = raw.prompt_tokens_details
    completion_details = raw.completion_tokens_details
    usage = Usage.of(
        raw.prompt_tokens or 0,
        raw.completion_tokens or 0,
        cached=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        reasoning=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )
    usage.total_tokens = raw.total_tokens or usage.total_tokens
    return usage


class OpenAIProvider(ChatProvider):
    """`openai` talks to api.openai.com (or `base_url`); `openai_compatible` and
    `llamacpp` talk to a server at the target's `base_url` and may use its samplers."""

    speaks_openai = True

    def __init__(self, kind: ProviderKind = ProviderKind.OPENAI) -> None:
        self.kind = kind
        self.compatible = kind in (ProviderKind.LLAMACPP, ProviderKind.OPENAI_COMPATIBLE)
        self.native_completions = self.compatible
        if kind is ProviderKind.LLAMACPP:
            # The engine embeds a request's inputs in one batch of its context: keep a
            # request's memory bounded; models.yaml may raise it per model.
            self.max_embedding_inputs = 64
        if self.compatible:
            # llama.cpp samplers, and `/v1/completions` fields answered natively.
            self.supported_params = _CHAT_FIELDS | _TEXT_COMPLETION_FIELDS | COMMON_PARAMS
        else:
            self.supported_params = (_CHAT_FIELDS - LLAMACPP_ONLY_PARAMS) | COMMON_PARAMS
        self._clients: ClientCache[openai.AsyncOpenAI] = ClientCache(_new_client, _close_client)

    # --- requests ---------------------------------------------------------------------

    def client(self, target: Target) -> openai.AsyncOpenAI:
        """The SDK client for `target` (shared with the native batch adapter)."""
        base_url = target.base_url
        api_key = target.api_key
        if base_url is None:
            if self.compatible:
                raise ServiceUnavailableError(
                    f"Model '{target.entry.id}' has no server URL configured for its "
                    f"'{self.kind}' deployment '{target.deployment}'"
                )
            base_url = OPENAI_BASE_URL
        if api_key is None:
            if not self.compatible:
                raise missing_upstream_key(self.kind.value, target.entry.id)
            api_key = _NO_KEY
        return self._clients.get(base_url, api_key, target.timeouts)

    def _split_params(self, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(SDK keyword arguments, extra_body): llama.cpp samplers are not SDK arguments,
        and only llama.cpp-style servers receive them at all."""
        params = {k: v for k, v in fields.items() if k not in _NOT_FORWARDED}
        extra = {k: params.pop(k) for k in LLAMACPP_ONLY_PARAMS & params.keys()}
        return params, (extra if extra and self.compatible else None)

    def chat_params(self, target: Target, request: ChatCompletionRequest) -> dict[str, Any]:
        """The request as this adapter sends it (a native batch line is the same)."""
        # by_alias: response_format.json_schema.schema is `schema_` in Python.
        fields = request.model_dump(exclude_none=True, by_alias=True)
        params, extra_body = self._split_params(fields)
        messages = fields["messages"]
        if self.compatible:
            # Chat templates of local models know system/user/assistant/tool only, and
            # older servers know only `max_tokens`.
            for message in messages:
                if message["role"] == "developer":
                    message["role"] = "system"
            if "max_completion_tokens" in params:
                params["max_tokens"] = params.pop("max_completion_tokens")
        else:
            # Anthropic's cache breakpoints mean nothing to OpenAI (compatible servers,
            # OpenRouter among them, get them as sent).
            for message in messages:
                for part in message["content"] if isinstance(message.get("content"), list) else ():
                    part.pop("cache_control", None)
        params.update(model=target.model, messages=messages)
        if extra_body:
            params["extra_body"] = extra_body
        return params

    async def chat(self, target: Target, request: ChatCompletionRequest) -> ChatCompletion:
        params = self.chat_params(target, request)
        raw = await self._call(target, "/chat/completions", params, SdkChatCompletion)
        return self._chat_completion(raw)

    async def chat_stream(
        self, target: Target, request: ChatCompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        params = self.chat_params(target, request)
        async with aclosing(self._stream(target, "/chat/completions", params, self._chunk)) as s:
            async for item in s:
                yield item

    def _completion_params(self, target: Target, request: CompletionRequest) -> dict[str, Any]:
        params, extra_body = self._split_params(request.model_dump(exclude_none=True))
        params.update(model=target.model, prompt=request.prompt)
        if extra_body:
            params["extra_body"] = extra_body
        return params

    async def complete(self, target: Target, request: CompletionRequest) -> TextCompletion:
        """Native `/v1/completions` on compatible servers (llama-server has it); OpenAI's
        current models are chat-only, so there the base class asks as one user turn."""
        if not self.compatible:
            return await super().complete(target, request)
        params = self._completion_params(target, request)
        raw = await self._call(target, "/completions", params, SdkCompletion)
        return self._text_completion(raw)

    async def complete_stream(
        self, target: Target, request: CompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        if not self.compatible:
            async with aclosing(super().complete_stream(target, request)) as inherited:
                async for item in inherited:
                    yield item
            return
        params = self._completion_params(target, request)
        async with aclosing(self._stream(target, "/completions", params, self._text_chunk)) as s:
            async for item in s:
                yield item

    async def embed(self, target: Target, request: EmbeddingRequest) -> EmbeddingResponse:
        """`/v1/embeddings` as OpenAI (and every server speaking its API) serves it;
        fields Spine does not know go as they came."""
        fields = request.model_dump(exclude_none=True)
        fields["model"] = target.model
        raw = await self._call(target, "/embeddings", fields, SdkEmbeddings)
        try:
            return EmbeddingResponse(
                data=[Embedding(index=item.index, embedding=item.embedding) for item in raw.data],
                model=raw.model,
                usage=EmbeddingUsage(
                    prompt_tokens=raw.usage.prompt_tokens if raw.usage else 0,
                    total_tokens=raw.usage.total_tokens if raw.usage else 0,
                ),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise upstream_bad_response(self.kind.value, str(exc)) from None

    async def _call(self, target: Target, path: str, params: dict[str, Any], cast_to: type[T]) -> T:
        """One JSON call within the model's total timeout, SDK errors mapped."""
        client = self.client(target)
        try:
            return await within_deadline(
                self.kind.value,
                target.timeouts.total,
                _post(client, path, params, cast_to=cast_to, headers=target.headers),
            )
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            raise self.map_error(exc) from exc

    async def _stream(
        self,
        target: Target,
        path: str,
        params: dict[str, Any],
        convert: Callable[[object], dict[str, Any]],
    ) -> AsyncGenerator[dict[str, Any], None]:
        """A streamed call: each event converted, SDK errors mapped, the model's
        first-token and total timeouts kept."""
        client = self.client(target)
        # Always ask for usage: the ledger needs it whether or not the client asked.
        params = {**params, "stream": True, "stream_options": {"include_usage": True}}

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            try:
                stream = await _open_stream(client, path, params, target.headers)
                async with stream:
                    async for event in stream:
                        yield convert(event)
            except (openai.OpenAIError, json.JSONDecodeError) as exc:
                raise self.map_error(exc) from exc

        async with aclosing(guard_stream(self.kind.value, target.timeouts, chunks())) as items:
            async for item in items:
                yield item

    async def aclose(self) -> None:
        await self._clients.aclose()

    # --- answers ----------------------------------------------------------------------

    def _chat_completion(self, raw: object) -> ChatCompletion:
        if not isinstance(raw, SdkChatCompletion):
            raise upstream_bad_response(self.kind.value, "expected a JSON chat completion")
        try:
            return ChatCompletion(
                id=raw.id,
                created=raw.created,
                model=raw.model,
                system_fingerprint=raw.system_fingerprint,
                choices=[
                    Choice(
                        index=choice.index,
                        message=AssistantMessage(
                            content=choice.message.content,
                            refusal=choice.message.refusal,
                            # Servers' own field (llama.cpp): kept by the SDK as an extra.
                            reasoning_content=getattr(choice.message, "reasoning_content", None),
                            tool_calls=[
                                ResponseToolCall(
                                    id=call.id,
                                    function=FunctionCall(
                                        name=call.function.name, arguments=call.function.arguments
                                    ),
                                )
                                for call in choice.message.tool_calls or []
                                if call.type == "function"
                            ]
                            or None,
                        ),
                        finish_reason=_finish_reason(choice.finish_reason),
                        logprobs=choice.logprobs.model_dump() if choice.logprobs else None,
                    )
                    for choice in raw.choices
                ],
                usage=normalize_usage(raw.usage),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            # The SDK builds models without validation; a body missing fields shows here.
            raise upstream_bad_response(self.kind.value, str(exc)) from None

    def _text_completion(self, raw: object) -> TextCompletion:
        if not isinstance(raw, SdkCompletion):
            raise upstream_bad_response(self.kind.value, "expected a JSON text completion")
        try:
            return TextCompletion(
                id=raw.id,
                created=raw.created,
                model=raw.model,
                system_fingerprint=raw.system_fingerprint,
                choices=[
                    CompletionChoice(
                        index=choice.index,
                        text=choice.text,
                        finish_reason=_finish_reason(choice.finish_reason),
                    )
                    for choice in raw.choices
                ],
                usage=normalize_usage(raw.usage),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise upstream_bad_response(self.kind.value, str(exc)) from None

    def _chunk(self, event: object) -> dict[str, Any]:
        """A `chat.completion.chunk` event in OpenAI's shape: the delta's message fields
        only, finish reasons normalised, usage in Spine's form."""
        chunk = self._event_object(event)
        choices = []
        for choice in _objects(chunk.get("choices")):
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            logprobs = choice.get("logprobs")
            choices.append(
                {
                    "index": choice.get("index", 0),
                    "delta": _delta(delta),
                    "finish_reason": _chunk_finish_reason(choice.get("finish_reason")),
                    "logprobs": (
                        {"content": logprobs.get("content"), "refusal": logprobs.get("refusal")}
                        if isinstance(logprobs, dict)
                        else None
                    ),
                }
            )
        return {
            "id": chunk.get("id"),
            "object": "chat.completion.chunk",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "system_fingerprint": chunk.get("system_fingerprint"),
            "choices": choices,
            "usage": _chunk_usage(chunk.get("usage")),
        }

    def _text_chunk(self, event: object) -> dict[str, Any]:
        chunk = self._event_object(event)
        choices = _objects(chunk.get("choices"))
        if any("text" not in choice for choice in choices):
            # Another API's chunk (chat's `delta`): read as "" it would stream an empty
            # answer with a 200, where the same JSON answer is refused.
            raise upstream_bad_response(
                self.kind.value, "a streamed text completion chunk without 'text' in its choices"
            )
        return {
            "id": chunk.get("id"),
            "object": "text_completion",
            "created": chunk.get("created"),
            "model": chunk.get("model"),
            "system_fingerprint": chunk.get("system_fingerprint"),
            "choices": [
                {
                    "index": choice.get("index", 0),
                    "text": choice.get("text") or "",
                    "logprobs": None,
                    "finish_reason": _chunk_finish_reason(choice.get("finish_reason")),
                }
                for choice in choices
            ],
            "usage": _chunk_usage(chunk.get("usage")),
        }

    def _event_object(self, event: object) -> dict[str, Any]:
        if not isinstance(event, dict):
            raise upstream_bad_response(self.kind.value, "expected a JSON object per stream event")
        return event

    # --- errors -----------------------------------------------------------------------

    def map_error(self, exc: Exception) -> SpineError:
        """The SDK's error as Spine's (the native batch adapter's too)."""
        provider = self.kind.value
        if isinstance(exc, openai.APITimeoutError):
            return upstream_timeout(provider)
        if isinstance(exc, openai.APIConnectionError):
            return upstream_unreachable(provider, str(exc.__cause__ or exc))
        if isinstance(exc, openai.APIStatusError):
            # The SDK keeps the inner `error` object of OpenAI's body as `exc.body`.
            body = exc.body if isinstance(exc.body, dict) else {}
            message = body.get("message")
            return from_upstream_status(
                provider,
                exc.status_code,
                message if isinstance(message, str) else exc.message,
                code=exc.code,
                headers=exc.response.headers,
            )
        if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
            return upstream_bad_response(provider, str(exc))
        if isinstance(exc, openai.APIError):
            # An `error` event inside a stream: the upstream failed after answering 200.
            return from_upstream_status(provider, 500, exc.message, code=exc.code)
        return upstream_unreachable(provider, str(exc))


def _new_client(base_url: str, api_key: str, timeouts: Timeouts) -> openai.AsyncOpenAI:
    # Spine does retries and fallbacks itself, across deployments; the SDK's own would
    # multiply them and hide the upstream's Retry-After from the client.
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=openai.Timeout(timeouts.total, connect=timeouts.connect),
    )


async def _close_client(client: openai.AsyncOpenAI) -> None:
    await client.close()


# --- streams ----------------------------------------------------------------------------

# What a streamed delta may carry to the client (servers add their own fields).
_DELTA_FIELDS = ("role", "content", "refusal", "tool_calls", "reasoning_content")
_BEARER_AUTH: RequestOptions = {"security": {"bearer_auth": True}}


async def _open_stream(
    client: openai.AsyncOpenAI, path: str, params: dict[str, Any], headers: Mapping[str, str]
) -> _EventStream:
    """POST a streamed request through the SDK; each event comes back as its dict."""
    body, options = _body_and_options(params, headers)
    return await client.post(
        path, body=body, options=options, cast_to=object, stream=True, stream_cls=_EventStream
    )


async def _post(
    client: openai.AsyncOpenAI,
    path: str,
    params: dict[str, Any],
    *,
    cast_to: type[T],
    headers: Mapping[str, str],
) -> T:
    """POST a request through the SDK and build its answer model: what `create` does
    without walking the already JSON-ready `params` against the SDK's TypedDicts
    (about 0.5 ms a call, tests/benchmarks/bench_gateway.py --handler-profile)."""
    body, options = _body_and_options(params, headers)
    return await client.post(path, body=body, options=options, cast_to=cast_to)


def _body_and_options(
    params: dict[str, Any], headers: Mapping[str, str]
) -> tuple[dict[str, Any], RequestOptions]:
    """The JSON body and the SDK request options (its bearer auth; `extra_body` merged
    into the body as `create` merges it; the target's own headers)."""
    body = dict(params)
    options: RequestOptions = dict(_BEARER_AUTH)  # type: ignore[assignment]
    extra_body = body.pop("extra_body", None)
    if extra_body:
        options["extra_json"] = extra_body
    if headers:
        options["headers"] = dict(headers)
    return body, options


def _delta(delta: dict[str, Any]) -> dict[str, Any]:
    """A chunk's delta as OpenAI sends it: the message fields that are set, and in the
    first (role) chunk a `content` of "" (llama-server leaves it out; clients that
    read `delta.content` of every chunk expect it)."""
    out = {
        name: _without_none(delta[name]) for name in _DELTA_FIELDS if delta.get(name) is not None
    }
    if "role" in out and "content" not in out and "tool_calls" not in out:
        out["content"] = ""
    return out


def _objects(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _without_none(value: Any) -> Any:
    """As the SDK's `model_dump(exclude_none=True)` leaves nested tool-call deltas."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def _chunk_finish_reason(raw: object) -> FinishReason | None:
    return _finish_reason(raw) if isinstance(raw, str) and raw else None


def _chunk_usage(raw: object) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    # The SDK's unvalidated model, as its `create` streams built it.
    return normalize_usage(CompletionUsage.construct(**raw)).model_dump()
