"""The endpoints that call a model, each declared once as an `EndpointKind`: how its
request is prepared and checked for one model, how a provider is called (JSON or a
stream), and what its usage row and stream estimates read from it. The pipeline
(`spine.pipeline.run`) runs every kind through the same sequence; a new endpoint
(embeddings, responses, messages) is a new kind, not a new copy of the sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from spine.errors import InvalidRequestError
from spine.pipeline.merged_stream import merged_prompt_streams
from spine.pipeline.params import (
    apply_defaults,
    check_chat_request,
    check_completion_request,
    fit_to_provider,
)
from spine.pipeline.stream import StreamMeter
from spine.providers import get_provider
from spine.providers.base import Target
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.embeddings import EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from spine.schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    CompletionRequest,
    ModelRequest,
    TextCompletion,
    Usage,
)

RequestT = TypeVar("RequestT", bound=ModelRequest)


class ModelAnswer(Protocol):
    """What the pipeline needs of every kind's answer: the model that gave it, which it
    rewrites to Spine's id for that model."""

    model: str


AnswerT = TypeVar("AnswerT", bound=ModelAnswer)
Chunk = dict[str, Any]


@dataclass(frozen=True)
class EndpointKind(Generic[RequestT, AnswerT]):
    # The usage row's `endpoint` and part of the response cache's key.
    name: str
    answer_type: type[AnswerT]
    # The request as `model` receives it (its defaults layered in), after every check
    # that can refuse it before a provider is called; raises InvalidRequestError
    # (ContextWindowExceededError when only a larger window would do).
    prepare: Callable[[RequestT, ResolvedModel, bool], RequestT]
    call: Callable[[Target, RequestT], Awaitable[AnswerT]]
    open_stream: Callable[[Target, RequestT], AsyncGenerator[Chunk, None]]
    # UTF-8 bytes of the prompt: a cut stream's usage is estimated from it.
    prompt_bytes: Callable[[RequestT], int]
    # The usage row's tokens, read from the answer.
    usage: Callable[[AnswerT], Usage]
    # Whether the response cache may keep its answers.
    cacheable: bool = True
    # How a stream's chunks are read and shaped for the client (OpenAI's chunks when
    # None); the meter's model is the id of the model that answers.
    meter: Callable[[str, RequestT], StreamMeter] | None = None

    def stream_meter(self, model: str, request: RequestT) -> StreamMeter:
        if self.meter is not None:
            return self.meter(model, request)
        options = getattr(request, "stream_options", None)
        return StreamMeter(model, include_usage=bool(options and options.include_usage))


# --- chat completions ------------------------------------------------------------------


def _prepare_chat(
    request: ChatCompletionRequest, model: ResolvedModel, streaming: bool
) -> ChatCompletionRequest:
    effective = check_chat_request(
        apply_defaults(request, model), model, get_provider(model.entry.provider)
    )
    if streaming:
        _require_streaming(model)
    return effective


async def _call_chat(target: Target, request: ChatCompletionRequest) -> ChatCompletion:
    return await get_provider(target.provider).chat(target, request)


def _stream_chat(target: Target, request: ChatCompletionRequest) -> AsyncGenerator[Chunk, None]:
    return get_provider(target.provider).chat_stream(target, request)


def _chat_prompt_bytes(request: ChatCompletionRequest) -> int:
    return sum(len(m.text().encode()) for m in request.messages)


CHAT: EndpointKind[ChatCompletionRequest, ChatCompletion] = EndpointKind(
    name="chat.completions",
    answer_type=ChatCompletion,
    prepare=_prepare_chat,
    call=_call_chat,
    open_stream=_stream_chat,
    prompt_bytes=_chat_prompt_bytes,
    usage=lambda answer: answer.usage,
)


# --- text completions ------------------------------------------------------------------


def _prepare_completion(
    request: CompletionRequest, model: ResolvedModel, streaming: bool
) -> CompletionRequest:
    require_completions(model)
    effective = check_completion_request(
        apply_defaults(request, model), model, get_provider(model.entry.provider)
    )
    if streaming:
        _require_streaming(model)
    return effective


async def _call_completion(target: Target, request: CompletionRequest) -> TextCompletion:
    """One choice per prompt. A server with its own text completions takes them all;
    for the others each prompt is its own call, at once, and the answers are merged
    (choices in prompt order, usage summed)."""
    provider = get_provider(target.provider)
    prompts = request.prompts()
    if len(prompts) == 1 or provider.native_completions:
        return await provider.complete(target, request)
    answers = await asyncio.gather(
        *(provider.complete(target, request.model_copy(update={"prompt": p})) for p in prompts)
    )
    return merge_completions(answers)


def merge_completions(answers: list[TextCompletion]) -> TextCompletion:
    first = answers[0]
    choices = [
        choice.model_copy(update={"index": index})
        for index, answer in enumerate(answers)
        for choice in answer.choices[:1]
    ]
    usage = Usage.of(
        sum(a.usage.prompt_tokens for a in answers),
        sum(a.usage.completion_tokens for a in answers),
        cached=sum(a.usage.cached_tokens for a in answers),
    )
    return first.model_copy(update={"choices": choices, "usage": usage})


def _stream_completion(target: Target, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
    provider = get_provider(target.provider)
    prompts = request.prompts()
    if len(prompts) == 1 or provider.native_completions:
        return provider.complete_stream(target, request)
    return merged_prompt_streams(
        [
            provider.complete_stream(target, request.model_copy(update={"prompt": p}))
            for p in prompts
        ]
    )


def _completion_prompt_bytes(request: CompletionRequest) -> int:
    return len(request.prompt_text().encode())


COMPLETIONS: EndpointKind[CompletionRequest, TextCompletion] = EndpointKind(
    name="completions",
    answer_type=TextCompletion,
    prepare=_prepare_completion,
    call=_call_completion,
    open_stream=_stream_completion,
    prompt_bytes=_completion_prompt_bytes,
    usage=lambda answer: answer.usage,
)

# --- embeddings ----------------------------------------------------------------------

# What a provider speaking OpenAI's embeddings API takes beside `input` and `model`.
EMBEDDING_PARAMS = frozenset({"dimensions", "encoding_format", "user"})


def _prepare_embeddings(
    request: EmbeddingRequest, model: ResolvedModel, streaming: bool
) -> EmbeddingRequest:
    if not model.entry.supports(Capability.EMBEDDINGS):
        raise InvalidRequestError(
            f"Model '{model.requested}' does not support embeddings.",
            param="model",
            code="unsupported_capability",
        )
    provider = get_provider(model.entry.provider)
    request = fit_to_provider(request, model, provider, EMBEDDING_PARAMS)
    # The provider sees the resolved model, never the alias or profile name.
    return request.model_copy(update={"model": model.entry.id})


# Upstream embeddings calls of one split request that run at once.
EMBEDDING_CALLS_AT_ONCE = 4


async def _call_embeddings(target: Target, request: EmbeddingRequest) -> EmbeddingResponse:
    """One call, or, past the provider's inputs per call, one per batch (a few at
    once) with their answers merged in input order."""
    provider = get_provider(target.provider)
    size = target.entry.embedding_batch_size or provider.max_embedding_inputs
    batches = request.batches(size)
    if len(batches) == 1:
        return await provider.embed(target, request)
    gate = asyncio.Semaphore(EMBEDDING_CALLS_AT_ONCE)

    async def embed(batch: EmbeddingRequest) -> EmbeddingResponse:
        async with gate:
            return await provider.embed(target, batch)

    answers = await asyncio.gather(*(embed(batch) for batch in batches))
    return merge_embeddings(answers, size)


def merge_embeddings(answers: list[EmbeddingResponse], size: int) -> EmbeddingResponse:
    """The answers to consecutive batches of `size` inputs as one answer."""
    data = [
        item.model_copy(update={"index": number * size + item.index})
        for number, answer in enumerate(answers)
        for item in answer.data
    ]
    usage = EmbeddingUsage(
        prompt_tokens=sum(a.usage.prompt_tokens for a in answers),
        total_tokens=sum(a.usage.total_tokens for a in answers),
    )
    return answers[0].model_copy(update={"data": data, "usage": usage})


def _no_stream(target: Target, request: EmbeddingRequest) -> AsyncGenerator[Chunk, None]:
    raise InvalidRequestError("Embeddings are not streamed.", param="stream")


def _embedding_usage(answer: EmbeddingResponse) -> Usage:
    return Usage.of(answer.usage.prompt_tokens, 0)


EMBEDDINGS: EndpointKind[EmbeddingRequest, EmbeddingResponse] = EndpointKind(
    name="embeddings",
    answer_type=EmbeddingResponse,
    prepare=_prepare_embeddings,
    call=_call_embeddings,
    open_stream=_no_stream,
    prompt_bytes=lambda request: request.input_bytes(),
    usage=_embedding_usage,
    cacheable=False,
)

KINDS: dict[str, EndpointKind[Any, Any]] = {
    kind.name: kind for kind in (CHAT, COMPLETIONS, EMBEDDINGS)
}


def require_completions(model: ResolvedModel) -> None:
    entry = model.entry
    if not (entry.supports(Capability.COMPLETIONS) or entry.supports(Capability.CHAT)):
        raise InvalidRequestError(
            f"Model '{model.requested}' does not support completions.", param="model"
        )


def _require_streaming(model: ResolvedModel) -> None:
    if not model.entry.supports(Capability.STREAMING):
        raise InvalidRequestError(
            f"Model '{model.requested}' does not support streaming; send stream=false.",
            param="stream",
            code="unsupported_capability",
        )
