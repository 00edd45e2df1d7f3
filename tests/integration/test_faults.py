"""Every upstream fault of the issue, for each hosted provider kind, without and with
streaming: 500 on every call, 429 with Retry-After, hanging past the timeouts, the
connection closed (mid-answer, mid-stream, before the first chunk) and malformed JSON.

In every case the client gets either a fallback's answer or a clear OpenAI-shaped
error, within a bounded time, and the ledger holds exactly one usage row: for the model
that answered (the failed attempts listed in its metadata, nothing billed for them), or
an error row at zero cost, or, for a stream that failed after it started, what was
streamed, estimated.

Non-streamed requests go through the real chat Lambda handler (API Gateway events);
streamed ones through `spine local` over real HTTP, as a client reads them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.fakes import Action, Cut, Fail, Hang, Malformed, Stall
from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url, rows_when_written
from tests.integration.gateway import Gateway, Result

__all__ = ["emulator_url"]  # the emulator fixture, for the streamed cases

HELLO = [{"role": "user", "content": "Say hello"}]
KINDS = ["openai", "gemini", "anthropic"]
# A primary's healthy fallback is served by another fake, so scripts never collide.
BACKUP_KIND = {"openai": "anthropic", "gemini": "openai", "anthropic": "gemini"}
UPSTREAM_MODEL = {
    "openai": "gpt-4o-mini",
    "gemini": "gemini-2.5-flash",
    "anthropic": "claude-haiku-4-5",
}
KEY_ENV = {
    "openai": "FAKE_OPENAI_KEY",
    "gemini": "FAKE_GEMINI_KEY",
    "anthropic": "FAKE_ANTHROPIC_KEY",
}
PRICING = {"openai": ("0.15", "0.60"), "gemini": ("0.30", "2.50"), "anthropic": ("1.0", "5.0")}
# SSE events of each fake's default answer after which some text has been streamed
# (OpenAI: role, "echo:", " Say"; Gemini: "echo:", " Say"; Anthropic: message_start,
# ping, content_block_start, "echo:", " Say").
SOME_TEXT_STREAMED = {"openai": 3, "gemini": 2, "anthropic": 5}

# Primaries and solos: two tries within a 1.5 s budget, 0.5 s to the first token and
# 1 s in all per try; cooldowns out of the way (tested in test_resilience.py).
FRAGILE = """\
    timeouts: {connect: 1, first_token: 0.5, total: 1.0}
    retry: {attempts: 2, budget_seconds: 1.5, base_delay: 0.01, max_delay: 0.05}
    cooldown: {failures: 1000, window_seconds: 60, seconds: 60}
"""
ATTEMPTS = 2
# "At once" for a Retry-After of 30 s: far below it, with room for a loaded machine.
AT_ONCE = 5.0
# What a client may wait at most in any case here: two timed-out tries and a fallback,
# with room for a loaded machine. Without the bounds a hang would show as a slow pass.
NEVER_LONGER = 6.0


def model_entry(model_id: str, kind: str, url: str, extra: str = "") -> str:
    price_in, price_out = PRICING[kind]
    return (
        f"  - id: {model_id}\n"
        f"    provider: {kind}\n"
        f"    model: {UPSTREAM_MODEL[kind]}\n"
        f"    base_url: {url}\n"
        f"    api_key: {{env: {KEY_ENV[kind]}}}\n"
        f"    pricing: {{input: {price_in}, output: {price_out}}}\n"
        "    context_window: 100000\n"
        "    capabilities: [chat, streaming]\n" + extra
    )


@pytest.fixture(scope="module", autouse=True)
def _sdks_imported() -> None:
    """Import the adapters (and their SDKs) once up front, so the time bounds below
    measure the faults, not whichever test happens to import an SDK first."""
    import spine.providers.anthropic_provider
    import spine.providers.gemini
    import spine.providers.openai_provider  # noqa: F401


@pytest.fixture(autouse=True)
def models(env: Env) -> None:
    entries = []
    for kind in KINDS:
        url = env.fakes.url_for(kind)
        backup = f"{BACKUP_KIND[kind]}-backup"
        entries.append(
            model_entry(f"{kind}-primary", kind, url, FRAGILE + f"    fallbacks: [{backup}]\n")
        )
        entries.append(model_entry(f"{kind}-solo", kind, url, FRAGILE))
        entries.append(model_entry(f"{kind}-backup", kind, url, "    timeouts: {total: 10}\n"))
    env.write_models("version: 1\nmodels:\n" + "".join(entries))


# --- helpers ----------------------------------------------------------------------------


def cost(kind: str, row: dict[str, Any]) -> Decimal:
    price_in, price_out = PRICING[kind]
    tokens_in, tokens_out = int(row["prompt_tokens"]), int(row["completion_tokens"])
    return (tokens_in * Decimal(price_in) + tokens_out * Decimal(price_out)) / 10**6


def script_every_try(env: Env, kind: str, action: Action) -> None:
    env.fakes.script(kind, *[action] * ATTEMPTS)


def check_fallback_row(
    row: dict[str, Any], kind: str, failure_code: str, *, tries: int = ATTEMPTS, stream: bool
) -> None:
    """The one row of a request a fallback answered after `tries` failed tries."""
    backup = BACKUP_KIND[kind]
    assert (row["model"], row["resolved_model"], row["provider"]) == (
        f"{kind}-primary",
        f"{backup}-backup",
        backup,
    )
    assert (row["status"], row["http_status"], row["error_code"]) == ("ok", 200, None)
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    # Billed for the backup's tokens at the backup's price; the failed tries cost nothing.
    assert row["cost_usd"] == cost(backup, row)
    meta = row["metadata"]
    assert meta["fallback_from"] == f"{kind}-primary"
    assert meta["attempts"] == tries + 1
    assert (
        meta["failures"]
        == [{"model": f"{kind}-primary", "deployment": "default", "code": failure_code}] * tries
    )
    assert bool(meta.get("stream")) is stream
    assert "usage_estimated" not in meta


def check_error_row(
    row: dict[str, Any], model: str, status: int, code: str, *, tries: int = ATTEMPTS
) -> None:
    """The one row of a request that failed before any answer: nothing billed."""
    assert (row["model"], row["resolved_model"]) == (model, model)
    assert (row["status"], row["http_status"], row["error_code"]) == ("error", status, code)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost_usd"]) == (0, 0, 0)
    if tries > 1:
        assert row["metadata"]["attempts"] == tries
        assert [f["code"] for f in row["metadata"]["failures"]] == [code] * tries


def chat(gateway: Gateway, key: str, model: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = gateway.request(
        "POST", "/v1/chat/completions", json_body={"model": model, "messages": HELLO}, key=key
    )
    return result, time.monotonic() - started


@dataclass
class Streamed:
    status: int
    headers: httpx.Headers
    body: str
    elapsed: float

    @property
    def events(self) -> list[tuple[str | None, str]]:
        """(event name or None, data) of each SSE event, in order."""
        out = []
        for block in self.body.split("\n\n"):
            if not block:
                continue
            name, data = None, ""
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
            out.append((name, data))
        return out

    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(d) for n, d in self.events if n is None and d != "[DONE]"]

    def text(self) -> str:
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in self.chunks() if c["choices"]
        )

    @property
    def error(self) -> dict[str, Any]:
        body = json.loads(self.body)
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        return dict(body["error"])


def stream(url: str, key: str, model: str) -> Streamed:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        body = response.read().decode()
    return Streamed(response.status_code, response.headers, body, time.monotonic() - started)


def check_fallback_stream(result: Streamed, kind: str) -> None:
    backup = f"{BACKUP_KIND[kind]}-backup"
    assert result.status == 200, result.body
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["x-spine-model"] == backup
    assert result.headers["x-spine-fallback-from"] == f"{kind}-primary"
    assert result.text() == "echo: Say hello"
    assert {c["model"] for c in result.chunks()} == {backup}
    assert result.events[-1] == (None, "[DONE]")
    assert all(name is None for name, _ in result.events)


def check_error_event_then_done(result: Streamed, code: str) -> dict[str, Any]:
    """A stream that failed after it started: chunks, one `error` event, `[DONE]`."""
    assert result.status == 200
    *answer, (error_name, error_data), done = result.events
    assert done == (None, "[DONE]")
    assert error_name == "error"
    error = json.loads(error_data)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert answer and all(name is None for name, _ in answer)
    assert result.text(), "some text reached the client before the failure"
    return dict(error)


def check_partial_row(row: dict[str, Any], kind: str, status: int, code: str) -> None:
    """A stream cut after it started: what was streamed is billed, estimated."""
    assert (row["resolved_model"], row["provider"]) == (f"{kind}-primary", kind)
    assert (row["status"], row["http_status"], row["error_code"]) == ("error", status, code)
    assert row["metadata"]["usage_estimated"] is True
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["cost_usd"] == cost(kind, row) > 0


# --- a provider failing on every call: the fallback, or a clear error -----------------

# (what the provider does on every try, the error code it becomes)
EVERY_CALL = [
    pytest.param(Fail(500), "upstream_error", id="500"),
    pytest.param(Cut(), "upstream_error", id="closed-mid-answer"),  # half a body, then gone
    pytest.param(Malformed(), "upstream_bad_response", id="malformed-json"),
]
# The same before a stream's first chunk: nothing was sent, so a fallback can serve.
BEFORE_FIRST_CHUNK = [
    pytest.param(Fail(500), "upstream_error", id="500"),
    pytest.param(Cut(after=0), "upstream_error", id="closed"),  # 200 and headers, then gone
    pytest.param(Malformed(after=0), "upstream_bad_response", id="malformed-first-line"),
]
# No fallback: the status says what happened (nothing was streamed yet).
WITHOUT_FALLBACK = [
    pytest.param(Fail(500), 502, "upstream_error", id="500"),
    pytest.param(Cut(), 502, "upstream_error", id="closed-mid-answer"),
    pytest.param(Malformed(), 502, "upstream_bad_response", id="malformed-json"),
    pytest.param(Hang(30), 504, "upstream_timeout", id="hang"),
]
STREAM_WITHOUT_FALLBACK = [
    pytest.param(Fail(500), 502, "upstream_error", id="500"),
    pytest.param(Hang(30), 504, "upstream_timeout", id="hang"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "code"), EVERY_CALL)
def test_failing_every_call_then_the_fallback_answers(
    gateway: Gateway, env: Env, api_key: str, kind: str, fault: Any, code: str
) -> None:
    script_every_try(env, kind, fault)
    result, _ = chat(gateway, api_key, f"{kind}-primary")
    assert result.status == 200, result.body
    assert result.json()["model"] == f"{BACKUP_KIND[kind]}-backup"
    assert result.json()["choices"][0]["message"]["content"] == "echo: Say hello"
    assert len(env.fakes.requests(kind)) == ATTEMPTS
    [row] = rows_when_written(env)
    check_fallback_row(row, kind, code, stream=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "status", "code"), WITHOUT_FALLBACK)
def test_failing_every_call_without_a_fallback_is_a_clear_error(
    gateway: Gateway, env: Env, api_key: str, kind: str, fault: Any, status: int, code: str
) -> None:
    script_every_try(env, kind, fault)
    result, elapsed = chat(gateway, api_key, f"{kind}-solo")
    assert result.status == status
    assert result.error["code"] == code
    assert elapsed < NEVER_LONGER
    [row] = rows_when_written(env)
    check_error_row(row, f"{kind}-solo", status, code)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "code"), BEFORE_FIRST_CHUNK)
def test_stream_failing_before_the_first_chunk_then_the_fallback_streams(
    emulator_url: str, env: Env, api_key: str, kind: str, fault: Any, code: str
) -> None:
    script_every_try(env, kind, fault)
    result = stream(emulator_url, api_key, f"{kind}-primary")
    check_fallback_stream(result, kind)
    assert len(env.fakes.requests(kind)) == ATTEMPTS
    [row] = rows_when_written(env)
    check_fallback_row(row, kind, code, stream=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "status", "code"), STREAM_WITHOUT_FALLBACK)
def test_stream_failing_without_a_fallback_is_a_json_error(
    emulator_url: str, env: Env, api_key: str, kind: str, fault: Any, status: int, code: str
) -> None:
    script_every_try(env, kind, fault)
    result = stream(emulator_url, api_key, f"{kind}-solo")
    # Nothing was streamed yet, so the status can still say what happened.
    assert result.status == status
    assert result.headers["content-type"] == "application/json"
    assert result.error["code"] == code
    assert result.elapsed < NEVER_LONGER
    [row] = rows_when_written(env)
    check_error_row(row, f"{kind}-solo", status, code)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "code"),
    [
        pytest.param(Cut, "upstream_error", id="closed"),
        pytest.param(Malformed, "upstream_bad_response", id="malformed-line"),
    ],
)
def test_stream_failing_mid_stream_is_an_error_event_then_done(
    emulator_url: str, env: Env, api_key: str, kind: str, fault: Any, code: str
) -> None:
    env.fakes.script(kind, fault(after=SOME_TEXT_STREAMED[kind]))
    result = stream(emulator_url, api_key, f"{kind}-primary")
    error = check_error_event_then_done(result, code)
    assert error["type"] == "upstream_error"
    # A started stream is not handed to the fallback
    assert env.fakes.requests(BACKUP_KIND[kind]) == []
    [row] = rows_when_written(env)
    check_partial_row(row, kind, 502, code)


# --- 429 with Retry-After ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_429_retry_after_is_honoured(
    gateway: Gateway,
    env: Env,
    api_key: str,
    kind: str,
    streamed: bool,
    request: pytest.FixtureRequest,
) -> None:
    # Given a provider that asks for 0.4 s (OpenAI and Anthropic in a header, Gemini
    # in the body's RetryInfo), well inside the model's retry budget
    env.fakes.script(kind, Fail(429, retry_after=0.4))
    if streamed:
        result = stream(request.getfixturevalue("emulator_url"), api_key, f"{kind}-solo")
        assert result.status == 200 and result.text() == "echo: Say hello"
        elapsed = result.elapsed
    else:
        answer, elapsed = chat(gateway, api_key, f"{kind}-solo")
        assert answer.status == 200, answer.body
    # Then the second try waited at least that long and the same model answered
    assert elapsed >= 0.4
    assert len(env.fakes.requests(kind)) == 2
    [row] = rows_when_written(env)
    assert (row["resolved_model"], row["status"]) == (f"{kind}-solo", "ok")
    assert row["cost_usd"] == cost(kind, row) > 0
    assert row["metadata"]["attempts"] == 2
    assert [f["code"] for f in row["metadata"]["failures"]] == ["rate_limit_exceeded"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_429_retry_after_beyond_the_budget_is_passed_on_at_once(
    gateway: Gateway,
    env: Env,
    api_key: str,
    kind: str,
    streamed: bool,
    request: pytest.FixtureRequest,
) -> None:
    # Given a provider that asks for 30 s, more than the model's 1.5 s retry budget
    env.fakes.script(kind, Fail(429, retry_after=30))
    if streamed:
        result = stream(request.getfixturevalue("emulator_url"), api_key, f"{kind}-solo")
        status, retry_after, elapsed = result.status, result.headers["retry-after"], result.elapsed
        error = result.error
    else:
        answer, elapsed = chat(gateway, api_key, f"{kind}-solo")
        status, retry_after, error = answer.status, answer.headers["retry-after"], answer.error
    # Then the client is told at once, with the provider's wait
    assert status == 429
    assert retry_after == "30"
    assert error["code"] == "rate_limit_exceeded"
    assert elapsed < AT_ONCE
    assert len(env.fakes.requests(kind)) == 1
    [row] = rows_when_written(env)
    check_error_row(row, f"{kind}-solo", 429, "rate_limit_exceeded", tries=1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_429_beyond_the_budget_goes_to_the_fallback_at_once(
    gateway: Gateway,
    env: Env,
    api_key: str,
    kind: str,
    streamed: bool,
    request: pytest.FixtureRequest,
) -> None:
    env.fakes.script(kind, Fail(429, retry_after=30))
    if streamed:
        result = stream(request.getfixturevalue("emulator_url"), api_key, f"{kind}-primary")
        check_fallback_stream(result, kind)
        elapsed = result.elapsed
    else:
        answer, elapsed = chat(gateway, api_key, f"{kind}-primary")
        assert answer.status == 200, answer.body
        assert answer.headers["x-spine-model"] == f"{BACKUP_KIND[kind]}-backup"
    assert elapsed < AT_ONCE
    [row] = rows_when_written(env)
    check_fallback_row(row, kind, "rate_limit_exceeded", tries=1, stream=streamed)


# --- hanging past the timeout ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_hang_past_the_total_timeout_then_the_fallback_answers(
    gateway: Gateway, env: Env, api_key: str, kind: str
) -> None:
    script_every_try(env, kind, Hang(30))
    result, elapsed = chat(gateway, api_key, f"{kind}-primary")
    assert result.status == 200, result.body
    assert result.headers["x-spine-model"] == f"{BACKUP_KIND[kind]}-backup"
    assert 2.0 <= elapsed < NEVER_LONGER  # two tries of 1 s each, then the fallback
    [row] = rows_when_written(env)
    check_fallback_row(row, kind, "upstream_timeout", stream=False)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_hang_past_the_first_token_timeout_then_the_fallback_streams(
    emulator_url: str, env: Env, api_key: str, kind: str
) -> None:
    script_every_try(env, kind, Hang(30))
    result = stream(emulator_url, api_key, f"{kind}-primary")
    check_fallback_stream(result, kind)
    # Two tries of 0.5 s (the first-token timeout, not the 1 s total), then the fallback
    assert 1.0 <= result.elapsed < 2.0 + 1.5
    [row] = rows_when_written(env)
    check_fallback_row(row, kind, "upstream_timeout", stream=True)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_silent_past_the_total_timeout_is_an_error_event_then_done(
    emulator_url: str, env: Env, api_key: str, kind: str
) -> None:
    # Given a provider that streams some text, then goes silent past the 1 s total
    env.fakes.script(kind, Stall(after=SOME_TEXT_STREAMED[kind], seconds=30))
    result = stream(emulator_url, api_key, f"{kind}-primary")
    # Then the client gets what was streamed, an error event and [DONE], in time
    check_error_event_then_done(result, "upstream_timeout")
    assert result.elapsed < 1.0 + 1.5
    # And a started stream is not retried or handed to the fallback
    assert len(env.fakes.requests(kind)) == 1
    assert env.fakes.requests(BACKUP_KIND[kind]) == []
    [row] = rows_when_written(env)
    check_partial_row(row, kind, 504, "upstream_timeout")


# --- malformed JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_json_once_is_retried(
    gateway: Gateway, env: Env, api_key: str, kind: str
) -> None:
    env.fakes.script(kind, Malformed())
    result, _ = chat(gateway, api_key, f"{kind}-primary")
    assert result.status == 200, result.body
    assert result.headers["x-spine-model"] == f"{kind}-primary"
    [row] = rows_when_written(env)
    assert (row["resolved_model"], row["status"]) == (f"{kind}-primary", "ok")
    assert row["cost_usd"] == cost(kind, row) > 0
    assert [f["code"] for f in row["metadata"]["failures"]] == ["upstream_bad_response"]
