"""Wire-level fakes of the hosted provider APIs (OpenAI, Gemini, Anthropic).

Use through the `fake_providers` fixture (tests/fixtures/fakes.py):

    def test_x(fake_providers):
        fake_providers.script("openai", Fail(429, retry_after=7))
        ... call the real SDK at fake_providers.openai_url ...
        assert fake_providers.last("openai").json["model"] == "gpt-4o-mini"
"""

from __future__ import annotations

from typing import Any

from tests.fakes.script import Action, Cut, Delay, Events, Fail, Hang, Malformed, Reply, Stall
from tests.fakes.server import PROVIDERS, FakeProviderServer, RecordedRequest

__all__ = [
    "Action",
    "Cut",
    "Delay",
    "Events",
    "Fail",
    "FakeProviderServer",
    "FakeProviders",
    "Hang",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Stall",
]


class FakeProviders:
    """A test's view of the running fake server: base URLs, scripting, recordings."""

    def __init__(self, server: FakeProviderServer) -> None:
        self._server = server

    # Base URLs as each SDK wants them.
    @property
    def openai_url(self) -> str:
        return f"{self._server.root}/v1"

    @property
    def gemini_url(self) -> str:
        return f"{self._server.root}/"  # google-genai appends the API version

    @property
    def anthropic_url(self) -> str:
        return self._server.root

    def url_for(self, provider: str) -> str:
        return {"openai": self.openai_url, "gemini": self.gemini_url}.get(
            provider, self.anthropic_url
        )

    def script(self, provider: str, *actions: Action) -> None:
        """Queue actions; each answers one request to `provider`, in order."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown fake provider {provider!r}")
        with self._server.state.lock:
            self._server.state.queues[provider].extend(actions)

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        with self._server.state.lock:
            return [r for r in self._server.state.requests if provider in (None, r.provider)]

    def last(self, provider: str) -> RecordedRequest:
        recorded = self.requests(provider)
        if not recorded:
            raise AssertionError(f"the fake {provider} server received no request")
        return recorded[-1]

    def disconnects(self, provider: str) -> int:
        """Streams to `provider` whose client closed the connection before the end."""
        with self._server.state.lock:
            return self._server.state.disconnects.count(provider)

    def pending(self, provider: str) -> int:
        """Scripted actions not yet consumed (a test can assert they all were)."""
        with self._server.state.lock:
            return len(self._server.state.queues[provider])

    def reset(self) -> None:
        self._server.state.reset()

    # --- batch APIs (tests.fakes.batches) ------------------------------------------------

    def end_batches(self, *, ran: int | None = None) -> None:
        """End every running provider batch: its first `ran` requests answered (all by
        default), the rest expired (or cancelled, in a cancelled batch)."""
        self._server.state.batches.end(ran=ran)

    def fail_batch_requests(self, *custom_ids: str) -> None:
        """These custom_ids get a 400 from the provider when their batch ends."""
        self._server.state.batches.failing.update(custom_ids)

    def provider_batches(self, provider: str) -> list[Any]:
        with self._server.state.batches.lock:
            return [
                b for b in self._server.state.batches.batches.values() if b.provider == provider
            ]
