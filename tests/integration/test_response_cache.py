"""The response cache through the real chat handler: real API Gateway events, the real
provider SDKs against the wire fakes, a real Postgres; streams through the local
emulator with the official `openai` client."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import openai
import psycopg
import pytest

from tests.fakes import Cut, Fail, Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.emulator import client, emulator_url, rows_when_written
from tests.integration.gateway import Gateway, Result

__all__ = ["client", "emulator_url"]  # fixtures, used by the stream tests

HELLO = [{"role": "user", "content": "Say hello"}]
DETERMINISTIC = {"model": "gpt-test", "messages": HELLO, "temperature": 0}


@pytest.fixture(autouse=True)
def cached_models(env: Env) -> None:
    """gpt-test caches for 300 s; profile `short` for 60 s, profile `nocache` not at all."""
    text = env.models_path.read_text()
    text = text.replace(
        "    aliases: [gpt-alias]\n", "    aliases: [gpt-alias]\n    cache_ttl: 300\n", 1
    )
    text = text.replace(
        "profiles:\n",
        "profiles:\n"
        "  short:\n    model: gpt-test\n    temperature: 0\n    cache_ttl: 60\n"
        "  nocache:\n    model: gpt-test\n    temperature: 0\n    cache_ttl: 0\n",
        1,
    )
    env.write_models(text)


def chat(gateway: Gateway, key: str, body: dict[str, Any], **headers: str) -> Result:
    return gateway.request(
        "POST", "/v1/chat/completions", json_body=body, key=key, headers=headers or None
    )


def cache_rows(env: Env) -> list[dict[str, Any]]:
    with psycopg.connect(env.db_url, row_factory=psycopg.rows.dict_row) as conn:
        return list(conn.execute("SELECT * FROM response_cache ORDER BY created_at"))


def age_cache(env: Env, seconds: int) -> None:
    """Move every cached row `seconds` into the past (instead of sleeping)."""
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE response_cache SET created_at = created_at - make_interval(secs => %s),"
            " expires_at = expires_at - make_interval(secs => %s)",
            (seconds, seconds),
        )


def upstream_calls(env: Env) -> int:
    return len(env.fakes.requests("openai"))


# --- miss, then hit ---------------------------------------------------------------------


def test_deterministic_request_misses_then_hits_without_calling_the_provider(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    env.fakes.script(
        "openai",
        Reply(openai_api.chat_completion("Hi there", usage_body=openai_api.usage(12, 4))),
    )
    # Given a first deterministic request, answered by the provider
    first = chat(gateway, api_key, DETERMINISTIC)
    assert first.status == 200, first.body
    assert first.headers["x-cache"] == "MISS"
    # When the same request comes again
    second = chat(gateway, api_key, DETERMINISTIC)
    # Then it is answered from the cache, and the provider saw one request in all
    assert second.status == 200, second.body
    assert second.headers["x-cache"] == "HIT"
    assert upstream_calls(env) == 1
    assert second.json() == first.json()  # same answer, same id and created (documented)
    assert second.headers["x-spine-model"] == "gpt-test"
    assert second.headers["x-spine-provider"] == "openai"
    assert Decimal(second.headers["x-spine-cost-usd"]) == 0
    # And the hit has its own usage row: the cached answer's tokens at no cost
    miss_row, hit_row = env.usage_rows()
    assert (miss_row["cache_hit"], hit_row["cache_hit"]) == (False, True)
    assert miss_row["cost_usd"] > 0
    assert hit_row["cost_usd"] == 0
    assert (hit_row["prompt_tokens"], hit_row["completion_tokens"]) == (12, 4)
    assert hit_row["request_id"] == second.headers["x-request-id"] != miss_row["request_id"]
    assert hit_row["metadata"] == {"cache": "hit", "cached_request_id": miss_row["request_id"]}
    assert (hit_row["status"], hit_row["provider"], hit_row["model"]) == (
        "ok",
        "openai",
        "gpt-test",
    )


def test_seed_makes_a_request_cacheable(gateway: Gateway, env: Env, api_key: str) -> None:
    body = {"model": "gpt-test", "messages": HELLO, "seed": 7}  # temperature 0.5 by default
    assert chat(gateway, api_key, body).headers["x-cache"] == "MISS"
    assert chat(gateway, api_key, body).headers["x-cache"] == "HIT"
    assert upstream_calls(env) == 1


def test_non_deterministic_request_is_not_cached_and_has_no_x_cache(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # gpt-test's default temperature is 0.5, and the request sets no seed
    body = {"model": "gpt-test", "messages": HELLO}
    first, second = chat(gateway, api_key, body), chat(gateway, api_key, body)
    assert first.status == second.status == 200
    assert "x-cache" not in first.headers and "x-cache" not in second.headers
    assert upstream_calls(env) == 2
    assert cache_rows(env) == []


def test_force_header_caches_a_non_deterministic_request(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    body = {"model": "gpt-test", "messages": HELLO, "temperature": 1.2}
    assert chat(gateway, api_key, body, **{"x-spine-cache": "force"}).headers["x-cache"] == "MISS"
    assert chat(gateway, api_key, body, **{"x-spine-cache": "force"}).headers["x-cache"] == "HIT"
    assert upstream_calls(env) == 1
    # Without the header the same request neither reads nor writes the cache
    assert "x-cache" not in chat(gateway, api_key, body).headers
    assert upstream_calls(env) == 2


def test_bad_cache_header_is_a_400_naming_it(gateway: Gateway, env: Env, api_key: str) -> None:
    result = chat(gateway, api_key, DETERMINISTIC, **{"x-spine-cache": "always"})
    assert result.status == 400
    assert result.error["param"] == "x-spine-cache"
    assert upstream_calls(env) == 0 and env.usage_rows() == []


def test_no_cache_refreshes_and_no_store_bypasses(gateway: Gateway, env: Env, api_key: str) -> None:
    env.fakes.script(
        "openai",
        Reply(openai_api.chat_completion("old")),
        Reply(openai_api.chat_completion("new")),
        Reply(openai_api.chat_completion("private")),
    )
    assert chat(gateway, api_key, DETERMINISTIC).json()["choices"][0]["message"]["content"] == "old"
    # no-cache: the provider answers, and its answer replaces the cached one
    refreshed = chat(gateway, api_key, DETERMINISTIC, **{"Cache-Control": "no-cache"})
    assert refreshed.headers["x-cache"] == "MISS"
    assert refreshed.json()["choices"][0]["message"]["content"] == "new"
    hit = chat(gateway, api_key, DETERMINISTIC)
    assert (hit.headers["x-cache"], hit.json()["choices"][0]["message"]["content"]) == (
        "HIT",
        "new",
    )
    # no-store: the cache is left out entirely (no lookup, nothing kept)
    bypass = chat(gateway, api_key, DETERMINISTIC, **{"Cache-Control": "no-store, max-age=0"})
    assert "x-cache" not in bypass.headers
    assert bypass.json()["choices"][0]["message"]["content"] == "private"
    assert chat(gateway, api_key, DETERMINISTIC).json()["choices"][0]["message"]["content"] == "new"
    assert upstream_calls(env) == 3


def test_expired_entries_are_never_served(gateway: Gateway, env: Env, api_key: str) -> None:
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "MISS"
    # When the entry is older than the model's 300 s TTL
    age_cache(env, 301)
    # Then the provider answers again, and the fresh answer is kept
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "MISS"
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "HIT"
    assert upstream_calls(env) == 2


def test_profile_ttl_overrides_the_model_ttl(gateway: Gateway, env: Env, api_key: str) -> None:
    short = {"model": "short", "messages": HELLO}
    assert chat(gateway, api_key, short).headers["x-cache"] == "MISS"
    [row] = cache_rows(env)
    assert row["expires_at"] - row["created_at"] == timedelta(seconds=60)
    age_cache(env, 61)  # past the profile's 60 s, well within the model's 300 s
    assert chat(gateway, api_key, short).headers["x-cache"] == "MISS"
    # A profile with cache_ttl 0 turns the cache off for its requests
    off = {"model": "nocache", "messages": HELLO}
    assert "x-cache" not in chat(gateway, api_key, off).headers
    assert "x-cache" not in chat(gateway, api_key, off).headers
    assert upstream_calls(env) == 4


def test_reader_ttl_applies_to_rows_a_longer_ttl_wrote(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Given an answer kept by gpt-test (300 s) for exactly the request profile `short` makes
    body = {"model": "gpt-test", "messages": HELLO, "temperature": 0}
    assert chat(gateway, api_key, body).headers["x-cache"] == "MISS"
    assert chat(gateway, api_key, {"model": "short", "messages": HELLO}).headers["x-cache"] == "HIT"
    # When it is 90 s old: fresh for the model, too old for the profile's 60 s
    age_cache(env, 90)
    assert chat(gateway, api_key, body).headers["x-cache"] == "HIT"
    assert (
        chat(gateway, api_key, {"model": "short", "messages": HELLO}).headers["x-cache"] == "MISS"
    )


def test_tenants_never_share_entries(gateway: Gateway, env: Env) -> None:
    acme_1 = env.create_key("acme-1", principal="alice", tenant="acme")
    acme_2 = env.create_key("acme-2", principal="bob", tenant="acme")
    globex = env.create_key("globex", principal="carol", tenant="globex")
    solo_1, solo_2 = env.create_key("solo-1"), env.create_key("solo-2")
    assert chat(gateway, acme_1, DETERMINISTIC).headers["x-cache"] == "MISS"
    # Another tenant's identical request misses (and is answered by the provider)
    assert chat(gateway, globex, DETERMINISTIC).headers["x-cache"] == "MISS"
    # The same tenant shares its entries
    assert chat(gateway, acme_2, DETERMINISTIC).headers["x-cache"] == "HIT"
    # Keys without a tenant are scoped by their own subject
    assert chat(gateway, solo_1, DETERMINISTIC).headers["x-cache"] == "MISS"
    assert chat(gateway, solo_2, DETERMINISTIC).headers["x-cache"] == "MISS"
    assert upstream_calls(env) == 4
    assert {r["scope"] for r in cache_rows(env)} >= {"tenant:acme", "tenant:globex"}


def test_different_parameters_are_different_entries(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    variants = [
        DETERMINISTIC,
        {**DETERMINISTIC, "max_tokens": 20},
        {**DETERMINISTIC, "messages": [{"role": "user", "content": "Say bye"}]},
        {**DETERMINISTIC, "seed": 1},
        {**DETERMINISTIC, "stop": ["\n"]},
        {**DETERMINISTIC, "model": "claude-test"},
    ]
    for body in variants:
        assert chat(gateway, api_key, body).headers.get("x-cache") in ("MISS", None)
    assert len(cache_rows(env)) == 5  # claude-test has no cache_ttl
    # Fields that do not change the answer do not change the key
    same = {**DETERMINISTIC, "user": "u-1", "metadata": {"trace": "x"}, "stream": False}
    assert chat(gateway, api_key, same).headers["x-cache"] == "HIT"
    # An alias resolves to the same model, so to the same entry
    assert (
        chat(gateway, api_key, {**DETERMINISTIC, "model": "gpt-alias"}).headers["x-cache"] == "HIT"
    )


def test_failed_provider_call_is_not_cached(gateway: Gateway, env: Env, api_key: str) -> None:
    env.fakes.script("openai", Fail(400, "bad request"))
    failed = chat(gateway, api_key, DETERMINISTIC)
    assert failed.status == 400 and "x-cache" not in failed.headers
    assert cache_rows(env) == []
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "MISS"
    assert upstream_calls(env) == 2


def test_unreadable_cache_never_fails_the_request(gateway: Gateway, env: Env, api_key: str) -> None:
    # Given a cache table the gateway cannot reach (reads and writes fail)
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE response_cache RENAME TO response_cache_away")
        try:
            first = chat(gateway, api_key, DETERMINISTIC)
            second = chat(gateway, api_key, DETERMINISTIC)
        finally:
            conn.execute("ALTER TABLE response_cache_away RENAME TO response_cache")
    # Then the provider answers every time, as if nothing were cached
    assert first.status == second.status == 200
    assert first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert upstream_calls(env) == 2
    assert [r["status"] for r in env.usage_rows()] == ["ok", "ok"]


def test_content_filtered_answer_is_not_cached(gateway: Gateway, env: Env, api_key: str) -> None:
    env.fakes.script(
        "openai", Reply(openai_api.chat_completion("", finish_reason="content_filter"))
    )
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "MISS"
    assert cache_rows(env) == []


def test_hit_settles_no_tokens_but_counts_the_request(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    config = env.root / "config.toml"
    config.write_text(config.read_text() + "\n[limits]\ndefault_rpm = 100\ndefault_tpm = 100000\n")
    env.fakes.script(
        "openai", Reply(openai_api.chat_completion("Hi", usage_body=openai_api.usage(9, 3)))
    )
    chat(gateway, api_key, DETERMINISTIC)
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "HIT"
    with psycopg.connect(env.db_url) as conn:
        used = dict(conn.execute("SELECT metric, used FROM rate_counters").fetchall())
    assert used == {"requests": 2, "tokens": 12}  # the hit's tokens were given back


def test_text_completions_are_cached_too(gateway: Gateway, env: Env, api_key: str) -> None:
    body = {"model": "gpt-test", "prompt": "Say hello", "temperature": 0}
    first = gateway.request("POST", "/v1/completions", json_body=body, key=api_key)
    second = gateway.request("POST", "/v1/completions", json_body=body, key=api_key)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json()["object"] == "text_completion"
    assert second.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]
    assert upstream_calls(env) == 1
    # A chat request with the same words is another entry
    assert chat(gateway, api_key, DETERMINISTIC).headers["x-cache"] == "MISS"


def test_cached_tool_call_answer_comes_back_whole(gateway: Gateway, env: Env, api_key: str) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = {**DETERMINISTIC, "tools": tools}
    env.fakes.script(
        "openai",
        Reply(
            openai_api.chat_completion(
                None,
                tool_calls=[openai_api.tool_call("call_1", "lookup", '{"q": "x"}')],
                finish_reason="tool_calls",
            )
        ),
    )
    first = chat(gateway, api_key, body)
    second = chat(gateway, api_key, body)
    assert second.headers["x-cache"] == "HIT"
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["choices"][0]["message"]["tool_calls"][0]["id"] == "call_1"


# --- streams ----------------------------------------------------------------------------


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_hit_is_replayed_as_chunks(client: openai.OpenAI, env: Env) -> None:
    # Given a non-streamed miss
    first = client.chat.completions.with_raw_response.create(**DETERMINISTIC)
    assert first.headers["x-cache"] == "MISS"
    answer = first.parse()
    # When the same request streams, asking for usage
    raw = client.chat.completions.with_raw_response.create(
        **DETERMINISTIC, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-cache"] == "HIT"
    chunks = list(raw.parse())
    # Then the cached answer arrives as OpenAI chunks: role, content, finish, usage
    assert chunks[0].choices[0].delta.role == "assistant"
    assert content_of(chunks) == answer.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    *_, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == answer.usage.completion_tokens
    assert {c.model for c in chunks} == {"gpt-test"}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert upstream_calls(env) == 1
    # And the replay's usage row is a cache hit at no cost
    _, hit_row = rows_when_written(env, 2)
    assert hit_row["cache_hit"] is True and hit_row["cost_usd"] == 0
    assert hit_row["metadata"]["stream"] is True and hit_row["metadata"]["cache"] == "hit"


def test_streamed_miss_is_kept_for_a_non_streamed_hit(client: openai.OpenAI, env: Env) -> None:
    raw = client.chat.completions.with_raw_response.create(**DETERMINISTIC, stream=True)
    assert raw.headers["x-cache"] == "MISS"
    streamed = content_of(list(raw.parse()))
    assert streamed == "echo: Say hello"
    rows_when_written(env, 1)
    hit = client.chat.completions.with_raw_response.create(**DETERMINISTIC)
    assert hit.headers["x-cache"] == "HIT"
    answer = hit.parse()
    assert answer.choices[0].message.content == streamed
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    # And a stream without usage asked gets no usage chunk on replay
    chunks = list(client.chat.completions.create(**DETERMINISTIC, stream=True))
    assert content_of(chunks) == streamed and all(c.usage is None for c in chunks)
    assert upstream_calls(env) == 1


def test_cut_stream_is_not_kept(client: openai.OpenAI, env: Env) -> None:
    env.fakes.script("openai", Cut(after=3))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(**DETERMINISTIC, stream=True))
    rows_when_written(env, 1)
    assert cache_rows(env) == []


def test_text_completion_stream_replay(client: openai.OpenAI, env: Env) -> None:
    body = {"model": "gpt-test", "prompt": "Say hello", "temperature": 0}
    streamed = list(client.completions.create(**body, stream=True))
    rows_when_written(env, 1)
    replayed = client.completions.with_raw_response.create(**body, stream=True)
    assert replayed.headers["x-cache"] == "HIT"
    chunks = list(replayed.parse())
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "".join(c.choices[0].text for c in streamed if c.choices) == "echo: Say hello"
    assert {c.object for c in chunks} == {"text_completion"}
    assert upstream_calls(env) == 1
