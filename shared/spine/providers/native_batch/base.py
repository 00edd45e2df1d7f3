"""What every provider batch adapter offers, and the shapes it answers with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any, Literal, TypeVar

from spine.providers import get_provider
from spine.providers.base import ChatProvider, Target
from spine.registry.schema import ProviderKind
from spine.schemas.openai import ChatCompletionRequest, Usage

Outcome = Literal["succeeded", "errored", "expired", "cancelled"]
AdapterT = TypeVar("AdapterT", bound=ChatProvider)


def chat_adapter(kind: ProviderKind, adapter: type[AdapterT]) -> AdapterT:
    """The provider's chat adapter, whose pooled client, request building and error
    mapping a batch adapter shares: a native line is sent what a live call would be."""
    chat = get_provider(kind)
    assert isinstance(chat, adapter)
    return chat


class NotNative(Exception):
    """This batch cannot go to the provider's batch API as it is (a custom_id the
    provider refuses, say): it runs queued instead."""


@dataclass(frozen=True)
class ProviderBatch:
    """A provider batch as one poll saw it."""

    id: str
    status: str  # the provider's own word, kept for the record
    # running: not ended yet (cancelling included); ended: results to read; failed:
    # the provider refused the batch as a whole (no results).
    state: Literal["running", "ended", "failed"]
    succeeded: int = 0
    errored: int = 0
    # The provider's window passed before every request ran.
    expired: bool = False
    message: str = ""  # why it failed


@dataclass(frozen=True)
class LineResult:
    """One request's outcome, mapped to OpenAI's batch output: `body` is a
    chat.completion (succeeded) or an OpenAI error body (errored)."""

    custom_id: str
    outcome: Outcome
    status_code: int | None = None
    body: dict[str, Any] | None = None
    usage: Usage | None = None
    # The provider's error code, for the usage row of an errored request.
    error_code: str | None = None


class NativeBatchApi(ABC):
    @abstractmethod
    def request_line(
        self, target: Target, custom_id: str, request: ChatCompletionRequest
    ) -> dict[str, Any]:
        """One line of the provider's batch input for a prepared chat request;
        raises NotNative when the provider cannot take it."""

    @abstractmethod
    async def submit(self, target: Target, lines: IO[bytes], count: int) -> ProviderBatch:
        """Create the provider batch from `lines` (JSONL of `request_line`s, `count`
        of them), read from the start."""

    @abstractmethod
    async def status(self, target: Target, batch_id: str) -> ProviderBatch: ...

    @abstractmethod
    def results(self, target: Target, batch_id: str) -> AsyncIterator[LineResult]:
        """An ended batch's results, streamed (never the whole file at once)."""

    @abstractmethod
    async def cancel(self, target: Target, batch_id: str) -> None: ...
