"""The contract every provider adapter fulfils.

An adapter turns a validated OpenAI-shaped request into one upstream call through the
provider's official SDK and returns an OpenAI-shaped answer. It raises only
`spine.errors` exceptions (mapped from the SDK's own), never HTTP framework errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from spine.errors import InvalidRequestError
from spine.providers.convert import text_chunk
from spine.registry.schema import ModelEntry, ProviderKind, Timeouts
from spine.schemas.embeddings import EmbeddingRequest, EmbeddingResponse
from spine.schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    CompletionChoice,
    CompletionRequest,
    TextCompletion,
)


@dataclass(frozen=True)
class Target:
    """Where one call goes: a model entry's deployment, with its key resolved."""

    entry: ModelEntry
    provider: ProviderKind
    model: str  # the provider's name for the model
    base_url: str | None
    api_key: str | None
    timeouts: Timeouts
    deployment: str = "default"
    # Extra request headers (the worker's fairness headers: who asks, at which tier).
    headers: Mapping[str, str] = field(default_factory=dict)


class ChatProvider(ABC):
    """Adapter base. `supported_params` lists the request fields the provider honours;
    the chat service refuses any other field that a request sets."""

    kind: ProviderKind
    supported_params: frozenset[str]
    # Whether the provider speaks OpenAI's API: fields Spine does not know are
    # forwarded to it as they came (OpenAI adds fields faster than any gateway).
    speaks_openai: bool = False
    # Whether it serves `/v1/completions` itself (llama-server and other compatible
    # servers), with `echo`, `logprobs`, `suffix` and several prompts; the others
    # answer one prompt as a chat turn.
    native_completions: bool = False
    # Whether it speaks Anthropic's Messages API (Claude): `/v1/messages` requests go
    # to it as they came (`messages`, `messages_stream`); the others are sent chat.
    speaks_anthropic: bool = False
    # Inputs one embeddings call may carry (OpenAI's limit by default); a longer list
    # is split by the pipeline. A model's `embedding_batch_size` overrides it.
    max_embedding_inputs: int = 2048

    def unsupported_params(self, request: ChatCompletionRequest | CompletionRequest) -> list[str]:
        """Fields the request sets (to a value) that this provider would not honour."""
        return sorted(
            name
            for name in request.model_fields_set
            if getattr(request, name) is not None and name not in self.supported_params
        )

    @abstractmethod
    async def chat(self, target: Target, request: ChatCompletionRequest) -> ChatCompletion:
        """One non-streaming chat completion."""

    def chat_stream(
        self, target: Target, request: ChatCompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        """OpenAI `chat.completion.chunk` dicts; the last one has no choices and carries
        the usage (always requested upstream, whether or not the client asked).
        Upstream failures raise `spine.errors` exceptions from the iterator, before the
        first chunk or mid-stream."""
        raise NotImplementedError(f"{self.kind} streaming is not implemented")

    async def complete(self, target: Target, request: CompletionRequest) -> TextCompletion:
        """Text completion. Chat-only providers answer it as one user turn."""
        answer = await self.chat(target, as_chat_request(request))
        choice = answer.choices[0]
        return TextCompletion(
            id=answer.id.replace("chatcmpl", "cmpl", 1),
            created=answer.created,
            model=answer.model,
            choices=[
                CompletionChoice(
                    text=choice.message.content or "", finish_reason=choice.finish_reason
                )
            ],
            usage=answer.usage,
        )

    async def complete_stream(
        self, target: Target, request: CompletionRequest
    ) -> AsyncGenerator[dict[str, Any], None]:
        """`text_completion` stream chunks, the last one with no choices and the usage.
        Chat-only providers stream the answer to one user turn."""
        chat_stream = self.chat_stream(target, as_chat_request(request))
        async with aclosing(chat_stream) as chunks:
            async for chunk in chunks:
                converted = text_chunk(chunk)
                if converted is not None:
                    yield converted

    async def embed(self, target: Target, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings of the request's inputs, in input order."""
        raise InvalidRequestError(
            f"Provider '{self.kind.value}' does not serve embeddings (model '{target.entry.id}').",
            param="model",
            code="unsupported_capability",
        )

    async def messages(
        self, target: Target, body: dict[str, Any], betas: str | None
    ) -> dict[str, Any]:
        """A Messages API answer (its JSON) to a Messages API `body`, for providers that
        speak it; `betas`: the client's anthropic-beta header."""
        raise NotImplementedError(f"{self.kind} does not speak the Messages API")

    def messages_stream(
        self, target: Target, body: dict[str, Any], betas: str | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """A Messages API stream's events (their JSON), as the provider sent them."""
        raise NotImplementedError(f"{self.kind} does not speak the Messages API")

    async def count_message_tokens(self, target: Target, body: dict[str, Any]) -> int:
        """The provider's own count of a Messages API request's input tokens."""
        raise NotImplementedError(f"{self.kind} does not speak the Messages API")

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections (tests, shutdown)."""


def as_chat_request(request: CompletionRequest) -> ChatCompletionRequest:
    """A text completion request as one user turn, for chat-only providers."""
    return ChatCompletionRequest.model_validate(
        {
            **request.model_dump(
                exclude_none=True, exclude={"prompt", "suffix", "echo", "best_of", "logprobs"}
            ),
            "messages": [ChatMessage(role="user", content=request.prompt_text())],
        }
    )
