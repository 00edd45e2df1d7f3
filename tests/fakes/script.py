"""What a test can queue for the next request a fake provider receives.

Each action is consumed by one request to that provider; with nothing queued the fake
answers by echoing (see each provider module's `default_answer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """Answer with this JSON body (a real-shaped success or anything else)."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    """Answer with the provider's real error body for `status`.

    `kind` picks a specific real error where one status has several:
    "context_length" (400), "api_key_invalid" (Gemini's 400 for a bad key),
    "insufficient_quota" (OpenAI's 429 for an empty account)."""

    status: int
    message: str | None = None
    kind: str | None = None
    retry_after: float | None = None  # seconds, sent the way the provider sends it


@dataclass(frozen=True)
class Hang:
    """Answer nothing for `seconds` (released early when the test ends), then the
    default answer."""

    seconds: float = 30.0


@dataclass(frozen=True)
class Delay:
    """Wait, then perform `then` (the default answer when None)."""

    seconds: float
    then: Any = None


@dataclass(frozen=True)
class Malformed:
    """A 200 whose JSON body (or SSE data line) is cut mid-object. To a streamed
    request the fake sends `after` events of the default answer first, then the
    broken data line, so a test picks a failure before or after the first chunk."""

    status: int = 200
    after: int = 0


@dataclass(frozen=True)
class Cut:
    """Send the start of the default answer, then drop the connection: after `after`
    SSE events when streaming, after half the body otherwise."""

    after: int = 1


@dataclass(frozen=True)
class Stall:
    """Stream `after` events of the default answer, then go silent for `seconds`."""

    after: int = 1
    seconds: float = 30.0


@dataclass(frozen=True)
class Events:
    """Stream exactly these SSE events: each a JSON-able data payload, or an
    (event name, payload) pair for providers that name their events."""

    events: list[Any]
    done_marker: bool = True  # OpenAI ends with `data: [DONE]`


Action = Reply | Fail | Hang | Delay | Malformed | Cut | Stall | Events
