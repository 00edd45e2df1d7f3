"""The pieces every adapter shares: Retry-After parsing, context-overflow detection,
the per-loop client cache and the adapter factory."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from spine.providers import get_provider
from spine.providers.errors import is_context_overflow, retry_after_seconds
from spine.providers.runtime import ClientCache
from spine.registry.schema import ProviderKind
from tests.providers.helpers import chat


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_as_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds({"retry-after": when})
    assert seconds is not None
    assert 25 < seconds <= 30


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("This model's maximum context length is 128000 tokens.", None, True),
        ("prompt is too long: 208310 tokens > 200000 maximum", None, True),
        (
            "The input token count (1200000) exceeds the maximum number of tokens allowed",
            None,
            True,
        ),
        ("the request exceeds the available context size, try increasing it", None, True),
        ("anything", "context_length_exceeded", True),
        ("Invalid value for 'temperature'.", None, False),
    ],
)
def test_context_overflow_detection(message: str, code: str | None, expected: bool) -> None:
    assert is_context_overflow(message, code) is expected


def test_client_cache_keys_by_loop_and_settings() -> None:
    made: list[tuple[object, ...]] = []

    def factory(*key: object) -> object:
        made.append(key)
        return object()

    async def noop(_: object) -> None:
        return None

    cache: ClientCache[object] = ClientCache(factory, noop)

    async def two_gets() -> tuple[object, object, object]:
        return cache.get("url", "key"), cache.get("url", "key"), cache.get("url", "other")

    first_loop = asyncio.run(two_gets())
    assert first_loop[0] is first_loop[1]  # reused within one loop
    assert first_loop[0] is not first_loop[2]  # another key, another client
    second_loop = asyncio.run(two_gets())
    assert second_loop[0] is not first_loop[0]  # a client never crosses event loops
    assert len(made) == 4


def test_factory_returns_one_adapter_per_kind() -> None:
    assert get_provider("openai") is get_provider(ProviderKind.OPENAI)
    assert get_provider("llamacpp") is not get_provider("openai")
    assert get_provider("llamacpp").kind is ProviderKind.LLAMACPP
    with pytest.raises(ValueError):
        get_provider("bedrock")


def test_every_adapter_accepts_the_routing_fields() -> None:
    request = chat(stream=True, stream_options={"include_usage": True}, user="u", n=1)
    for kind in ProviderKind:
        assert get_provider(kind).unsupported_params(request) == [], kind
