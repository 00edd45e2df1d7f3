"""Every provider's failures, as the real SDKs see them on the wire, become the same
Spine errors (status, type, code, Retry-After), after exactly one upstream request."""

from __future__ import annotations

import socket
import time

import pytest

from spine.errors import (
    ContextWindowExceededError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    SpineError,
    UpstreamError,
    UpstreamTimeoutError,
)
from spine.providers import get_provider
from spine.providers.errors import UpstreamAuthenticationError
from spine.registry.schema import ProviderKind, Timeouts
from tests.fakes import Action, Cut, Fail, FakeProviders, Hang, Malformed, Stall
from tests.providers.helpers import FAKE_FOR, chat, make_target

KINDS = [ProviderKind.OPENAI, ProviderKind.GEMINI, ProviderKind.ANTHROPIC, ProviderKind.LLAMACPP]
PROVIDER_IDS = [k.value for k in KINDS]


async def _fail_with(
    fakes: FakeProviders, kind: ProviderKind, action: Action, timeouts: Timeouts | None = None
) -> SpineError:
    fakes.script(FAKE_FOR[kind], action)
    with pytest.raises(SpineError) as caught:
        await get_provider(kind).chat(make_target(kind, fakes, timeouts=timeouts), chat())
    # The SDKs' own retries are off: Spine decides about retries and fallbacks.
    assert len(fakes.requests()) == 1
    return caught.value


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_upstream_key_is_a_gateway_failure(
    fake_providers: FakeProviders, kind: ProviderKind, status: int
) -> None:
    error = await _fail_with(fake_providers, kind, Fail(status))
    assert isinstance(error, UpstreamAuthenticationError)
    assert (error.status_code, error.error_type, error.code) == (
        502,
        "upstream_error",
        "upstream_auth_failed",
    )
    assert "not a problem with your Spine API key" in error.message
    assert "sk-fake" not in error.message  # upstream messages can echo the operator's key


async def test_gemini_invalid_key_400_is_an_auth_failure(fake_providers: FakeProviders) -> None:
    error = await _fail_with(fake_providers, ProviderKind.GEMINI, Fail(400, kind="api_key_invalid"))
    assert isinstance(error, UpstreamAuthenticationError)
    assert error.status_code == 502


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_unknown_model_is_404(fake_providers: FakeProviders, kind: ProviderKind) -> None:
    error = await _fail_with(fake_providers, kind, Fail(404))
    assert isinstance(error, NotFoundError)
    assert (error.status_code, error.code, error.param) == (404, "model_not_found", "model")


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_rate_limit_is_429_with_retry_after(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    # Gemini says it in the body (RetryInfo), the others in a Retry-After header.
    error = await _fail_with(fake_providers, kind, Fail(429, retry_after=7))
    assert isinstance(error, RateLimitError)
    assert (error.status_code, error.error_type, error.code) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    )
    assert error.headers == {"Retry-After": "7"}


async def test_rate_limit_without_retry_after(fake_providers: FakeProviders) -> None:
    error = await _fail_with(fake_providers, ProviderKind.OPENAI, Fail(429))
    assert isinstance(error, RateLimitError)
    assert "Retry-After" not in error.headers


async def test_empty_openai_account_is_not_the_clients_rate_limit(
    fake_providers: FakeProviders,
) -> None:
    error = await _fail_with(
        fake_providers, ProviderKind.OPENAI, Fail(429, kind="insufficient_quota")
    )
    assert not isinstance(error, RateLimitError)
    assert (error.status_code, error.code) == (502, "upstream_quota_exhausted")


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_context_overflow_is_400_context_length_exceeded(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    error = await _fail_with(fake_providers, kind, Fail(400, kind="context_length"))
    assert isinstance(error, ContextWindowExceededError)
    assert (error.status_code, error.error_type, error.code) == (
        400,
        "invalid_request_error",
        "context_length_exceeded",
    )


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_other_400_carries_the_upstream_message(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    error = await _fail_with(fake_providers, kind, Fail(400, message="Bad thing: foo is wrong"))
    assert type(error) is InvalidRequestError
    assert error.status_code == 400
    assert "Bad thing: foo is wrong" in error.message
    assert kind.value in error.message or "openai" in error.message or "llamacpp" in error.message


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_is_502(
    fake_providers: FakeProviders, kind: ProviderKind, status: int
) -> None:
    error = await _fail_with(fake_providers, kind, Fail(status))
    assert type(error) is UpstreamError
    assert (error.status_code, error.error_type, error.code) == (
        502,
        "upstream_error",
        "upstream_error",
    )


async def test_anthropic_overloaded_529_is_502(fake_providers: FakeProviders) -> None:
    error = await _fail_with(fake_providers, ProviderKind.ANTHROPIC, Fail(529))
    assert type(error) is UpstreamError
    assert "Overloaded" in error.message


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_malformed_json_is_502(fake_providers: FakeProviders, kind: ProviderKind) -> None:
    error = await _fail_with(fake_providers, kind, Malformed())
    assert isinstance(error, UpstreamError)
    assert (error.status_code, error.code) == (502, "upstream_bad_response")


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_connection_dropped_mid_answer_is_502(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    error = await _fail_with(fake_providers, kind, Cut())
    assert type(error) is UpstreamError
    assert error.status_code == 502


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_hanging_upstream_is_504_quickly(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    started = time.monotonic()
    error = await _fail_with(
        fake_providers, kind, Hang(30), timeouts=Timeouts(connect=1, total=0.5)
    )
    assert isinstance(error, UpstreamTimeoutError)
    assert (error.status_code, error.code) == (504, "upstream_timeout")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_unreachable_upstream_is_502(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}" + ("/v1" if FAKE_FOR[kind] == "openai" else "/")
    target = make_target(kind, fake_providers, base_url=base_url)
    with pytest.raises(UpstreamError) as caught:
        await get_provider(kind).chat(target, chat())
    assert caught.value.status_code == 502


# --- streams ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_stream_error_before_first_chunk(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    fake_providers.script(FAKE_FOR[kind], Fail(429, retry_after=3))
    stream = get_provider(kind).chat_stream(make_target(kind, fake_providers), chat())
    with pytest.raises(RateLimitError) as caught:
        await anext(stream)
    assert caught.value.headers == {"Retry-After": "3"}


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_stream_cut_mid_way_raises_after_partial_output(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    fake_providers.script(FAKE_FOR[kind], Cut(after=2))
    received = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in get_provider(kind).chat_stream(
            make_target(kind, fake_providers), chat()
        ):
            received.append(chunk)
    assert received  # the client already has part of the answer
    assert caught.value.status_code == 502


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_stream_first_token_deadline(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    fake_providers.script(FAKE_FOR[kind], Hang(30))
    target = make_target(
        kind, fake_providers, timeouts=Timeouts(connect=1, first_token=0.3, total=20)
    )
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        [c async for c in get_provider(kind).chat_stream(target, chat())]
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("kind", KINDS, ids=PROVIDER_IDS)
async def test_stream_total_deadline_after_a_stall(
    fake_providers: FakeProviders, kind: ProviderKind
) -> None:
    fake_providers.script(FAKE_FOR[kind], Stall(after=2, seconds=30))
    target = make_target(kind, fake_providers, timeouts=Timeouts(connect=1, total=0.8))
    received = []
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        async for chunk in get_provider(kind).chat_stream(target, chat()):
            received.append(chunk)
    assert received
    assert time.monotonic() - started < 3
