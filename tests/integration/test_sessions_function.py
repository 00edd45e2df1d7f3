"""Chat sessions through the real Lambda handlers (sessions and chat functions), real
API Gateway events built from template.yaml, a real Postgres and the provider SDKs
against wire fakes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import psycopg
import pytest
from psycopg.rows import dict_row

from spine.auth.jwks import clear_jwks_caches
from spine.auth.secret import secret_kid
from tests.auth.keys import SECRET
from tests.fakes import Cut, Fail
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

INJECTION = "'; DROP TABLE chat_sessions; -- \" OR 1=1 /* $1 %s %(x)s \\x00 */"
# A model whose window holds only a few turns, to force trimming.
TINY_MODEL = """\
  - id: gpt-tiny
    provider: openai
    model: gpt-4o-mini
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    pricing: {{input: 0.15, output: 0.60}}
    context_window: 300
    max_output_tokens: 50
    capabilities: [chat, streaming]
"""


@pytest.fixture(autouse=True)
def tiny_model(env: Env) -> None:
    text = env.models_path.read_text()
    anchor = "  - id: unconfigured\n"
    env.write_models(
        text.replace(anchor, TINY_MODEL.format(openai_url=env.fakes.openai_url) + anchor)
    )


@pytest.fixture(autouse=True)
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    clear_jwks_caches()
    yield
    clear_jwks_caches()


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme")


@pytest.fixture
def bob(env: Env) -> str:
    return env.create_key("bob", principal="bob", tenant="acme")


def token_for(subject: str, tenant: str) -> str:
    now = int(time.time())
    claims = {
        "iss": "spine",
        "aud": "spine",
        "sub": subject,
        "tenant": tenant,
        "iat": now,
        "exp": now + 300,
    }
    return pyjwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": secret_kid(SECRET)})


def create(gateway: Gateway, key: str, **fields: Any) -> dict[str, Any]:
    body = {"model": "gpt-test", "title": "chat", **fields}
    result = gateway.request("POST", "/v1/sessions", json_body=body, key=key)
    assert result.status == 201, result.body
    created: dict[str, Any] = result.json()
    return created


def send(gateway: Gateway, key: str, session_id: str, content: str, **extra: Any) -> Result:
    return gateway.request(
        "POST",
        f"/v1/sessions/{session_id}/messages",
        json_body={"content": content, **extra},
        key=key,
    )


def chat(gateway: Gateway, key: str, session_id: str, messages: list[Any], **extra: Any) -> Result:
    body = {"model": "gpt-test", "messages": messages, "session_id": session_id, **extra}
    return gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)


def transcript(gateway: Gateway, key: str, session_id: str) -> list[tuple[str, Any]]:
    result = gateway.request("GET", f"/v1/sessions/{session_id}/messages", key=key)
    assert result.status == 200, result.body
    return [(m["role"], m["content"]) for m in result.json()["data"]]


def message_rows(env: Env) -> list[dict[str, Any]]:
    with psycopg.connect(env.db_url, row_factory=dict_row) as conn:
        return list(conn.execute("SELECT * FROM chat_messages ORDER BY session_id, seq"))


def sent_messages(env: Env) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = env.fakes.last("openai").json["messages"]
    return messages


def assert_error(result: Result, status: int, param: str | None) -> dict[str, Any]:
    assert result.status == status, result.body
    error = result.error
    assert error["param"] == param, error
    return error


# --- CRUD ---------------------------------------------------------------------------


def test_create_get_update_delete(gateway: Gateway, alice: str) -> None:
    # When a session is created
    created = create(gateway, alice, system_prompt="Be brief.")
    assert created["object"] == "chat.session" and created["message_count"] == 0
    assert (created["title"], created["model"], created["system_prompt"]) == (
        "chat",
        "gpt-test",
        "Be brief.",
    )
    url = f"/v1/sessions/{created['id']}"
    # Then it can be read back
    assert gateway.request("GET", url, key=alice).json() == created
    # And each field updated alone; a null system prompt clears it
    patched = gateway.request("PATCH", url, json_body={"title": "renamed"}, key=alice).json()
    assert (patched["title"], patched["system_prompt"]) == ("renamed", "Be brief.")
    patched = gateway.request("PATCH", url, json_body={"model": "claude-test"}, key=alice).json()
    assert patched["model"] == "claude-test"
    patched = gateway.request("PATCH", url, json_body={"system_prompt": None}, key=alice).json()
    assert patched["system_prompt"] is None and patched["title"] == "renamed"
    # And deleted, after which it is gone
    deleted = gateway.request("DELETE", url, key=alice)
    assert deleted.json() == {
        "id": created["id"],
        "object": "chat.session.deleted",
        "deleted": True,
    }
    assert_error(gateway.request("GET", url, key=alice), 404, "session_id")
    assert_error(gateway.request("DELETE", url, key=alice), 404, "session_id")


def test_list_is_newest_first_and_paginated(gateway: Gateway, alice: str, bob: str) -> None:
    ids = [create(gateway, alice, title=f"s{i}")["id"] for i in range(5)]
    create(gateway, bob)
    first = gateway.request("GET", "/v1/sessions", key=alice, query="limit=2").json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [s["id"] for s in first["data"]] == ids[::-1][:2]
    assert (first["first_id"], first["last_id"]) == (ids[4], ids[3])
    pages = [first]
    while pages[-1]["has_more"]:
        query = f"limit=2&after={pages[-1]['last_id']}"
        pages.append(gateway.request("GET", "/v1/sessions", key=alice, query=query).json())
    assert [s["id"] for page in pages for s in page["data"]] == ids[::-1]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=%C2%B2", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("after=not-a-uuid", "after"),
        (f"after={uuid.uuid4()}", "after"),
        ("offset=10", "offset"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_bad_pagination_is_a_400_naming_the_param(
    gateway: Gateway, alice: str, query: str, param: str
) -> None:
    session = create(gateway, alice)
    assert_error(gateway.request("GET", "/v1/sessions", key=alice, query=query), 400, param)
    url = f"/v1/sessions/{session['id']}/messages"
    assert_error(gateway.request("GET", url, key=alice, query=query), 400, param)


def test_invalid_and_unknown_ids(gateway: Gateway, alice: str) -> None:
    for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/messages")]:
        body = {"title": "x"} if method == "PATCH" else None
        bad = gateway.request(method, f"/v1/sessions/NOT-A-UUID{suffix}", json_body=body, key=alice)
        assert_error(bad, 400, "session_id")
        unknown = gateway.request(
            method, f"/v1/sessions/{uuid.uuid4()}{suffix}", json_body=body, key=alice
        )
        assert_error(unknown, 404, "session_id")
    assert_error(send(gateway, alice, "' OR 1=1 --", "hi"), 400, "session_id")
    assert_error(send(gateway, alice, str(uuid.uuid4()), "hi"), 404, "session_id")
    hello = [{"role": "user", "content": "hi"}]
    assert_error(chat(gateway, alice, "nope", hello), 400, "session_id")
    assert_error(chat(gateway, alice, str(uuid.uuid4()), hello), 404, "session_id")


@pytest.mark.parametrize(
    ("method", "suffix", "body", "param"),
    [
        ("POST", "", {"model": "gpt-test", "colour": "red"}, "colour"),
        ("POST", "", {"title": "no model"}, "model"),
        ("POST", "", {"model": "   "}, "model"),
        ("POST", "", {"model": "gpt-test", "title": "t" * 257}, "title"),
        ("POST", "", {"model": "gpt-test", "system_prompt": "a\u0000b"}, "system_prompt"),
        ("POST", "", {"model": "no-such-model"}, "model"),
        ("PATCH", "/{id}", {}, None),
        ("PATCH", "/{id}", {"title": None}, "title"),
        ("PATCH", "/{id}", {"model": None}, "model"),
        ("PATCH", "/{id}", {"model": "no-such-model"}, "model"),
        ("PATCH", "/{id}", {"message_count": 0}, "message_count"),
        ("POST", "/{id}/messages", {"content": ""}, "content"),
        ("POST", "/{id}/messages", {"content": " \n\t"}, "content"),
        ("POST", "/{id}/messages", {}, "content"),
        ("POST", "/{id}/messages", {"content": "hi", "role": "system"}, "role"),
        ("POST", "/{id}/messages", {"content": "hi", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    gateway: Gateway, env: Env, alice: str, method: str, suffix: str, body: Any, param: str | None
) -> None:
    session = create(gateway, alice)
    path = "/v1/sessions" + suffix.format(id=session["id"])
    result = gateway.request(method, path, json_body=body, key=alice)
    assert 400 <= result.status < 500, result.body
    assert result.error["param"] == param, result.body
    # Nothing was stored, nothing was sent upstream
    assert message_rows(env) == []
    assert env.fakes.requests("openai") == []


def test_oversized_message_is_refused(
    gateway: Gateway, env: Env, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a body limit above the message limit, so the message limit is what answers
    monkeypatch.setenv("SPINE_SERVICE__MAX_BODY_BYTES", str(1 << 20))
    session = create(gateway, alice)
    result = send(gateway, alice, session["id"], "x" * 100_001)
    assert_error(result, 400, "content")
    assert send(gateway, alice, session["id"], "x" * 1000).status == 200
    assert len(message_rows(env)) == 2


def test_sql_injection_strings_are_stored_and_returned_verbatim(
    gateway: Gateway, env: Env, alice: str
) -> None:
    session = create(gateway, alice, title=INJECTION, system_prompt=INJECTION)
    assert (session["title"], session["system_prompt"]) == (INJECTION, INJECTION)
    result = send(gateway, alice, session["id"], INJECTION)
    assert result.status == 200, result.body
    assert sent_messages(env)[0] == {"role": "system", "content": INJECTION}
    assert transcript(gateway, alice, session["id"]) == [
        ("user", INJECTION),
        ("assistant", f"echo: {INJECTION}"),
    ]
    listed = gateway.request("GET", "/v1/sessions", key=alice).json()
    assert listed["data"][0]["title"] == INJECTION


# --- sending messages -----------------------------------------------------------------


def test_send_message_runs_the_session_model_with_history(
    gateway: Gateway, env: Env, alice: str
) -> None:
    session = create(gateway, alice, system_prompt="Be brief.")
    # When two messages are sent
    first = send(gateway, alice, session["id"], "first question")
    assert first.status == 200, first.body
    second = send(gateway, alice, session["id"], "second question", max_tokens=20)
    assert second.status == 200, second.body
    # Then the provider saw the system prompt, the first turn, and the new message
    assert sent_messages(env) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "echo: first question"},
        {"role": "user", "content": "second question"},
    ]
    assert env.fakes.last("openai").json["max_tokens"] == 20
    # And the reply holds the stored user message, the stored reply and the completion
    body = second.json()
    assert body["object"] == "chat.session.reply" and body["turns_dropped"] == 0
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "second question"),
        ("assistant", "echo: second question"),
    ]
    assert body["completion"]["choices"][0]["message"]["content"] == "echo: second question"
    assert second.headers["x-spine-session-id"] == session["id"]
    assert second.headers["x-spine-session-turns-dropped"] == "0"
    # And each message carries the request id of its usage row
    usage = env.usage_rows()
    assert [r["request_id"] for r in usage] == [
        first.headers["x-request-id"],
        second.headers["x-request-id"],
    ]
    assert {m["request_id"] for m in body["messages"]} == {second.headers["x-request-id"]}
    assert body["messages"][1]["tokens"] == usage[1]["completion_tokens"]
    got = gateway.request("GET", f"/v1/sessions/{session['id']}", key=alice).json()
    assert got["message_count"] == 4


def test_transcript_pages_oldest_first(gateway: Gateway, alice: str) -> None:
    session = create(gateway, alice)
    for i in range(3):
        assert send(gateway, alice, session["id"], f"q{i}").status == 200
    url = f"/v1/sessions/{session['id']}/messages"
    first = gateway.request("GET", url, key=alice, query="limit=4").json()
    assert [m["content"] for m in first["data"]] == ["q0", "echo: q0", "q1", "echo: q1"]
    assert first["has_more"] is True
    rest = gateway.request("GET", url, key=alice, query=f"after={first['last_id']}").json()
    assert [m["content"] for m in rest["data"]] == ["q2", "echo: q2"]
    assert rest["has_more"] is False


def test_failed_provider_call_stores_nothing(gateway: Gateway, env: Env, alice: str) -> None:
    # Given a session with one stored turn
    session = create(gateway, alice)
    assert send(gateway, alice, session["id"], "kept").status == 200
    before = message_rows(env)
    # When the provider refuses the next call, through either entry point
    env.fakes.script("openai", Fail(400))
    assert send(gateway, alice, session["id"], "lost").status == 400
    env.fakes.script("openai", Fail(400))
    hello = [{"role": "user", "content": "lost too"}]
    assert chat(gateway, alice, session["id"], hello).status == 400
    # Then nothing was stored, and the earlier turn is intact
    assert message_rows(env) == before
    got = gateway.request("GET", f"/v1/sessions/{session['id']}", key=alice).json()
    assert got["message_count"] == 2


# --- session_id on /v1/chat/completions ---------------------------------------------------


def test_chat_completion_with_session_id_appends_the_turn(
    gateway: Gateway, env: Env, alice: str
) -> None:
    session = create(gateway, alice, system_prompt="Session prompt.")
    first = chat(gateway, alice, session["id"], [{"role": "user", "content": "one"}])
    assert first.status == 200, first.body
    assert first.json()["object"] == "chat.completion"
    assert first.headers["x-spine-session-id"] == session["id"]
    assert first.headers["x-spine-session-turns-dropped"] == "0"
    # session_id is Spine's: never sent upstream
    assert "session_id" not in env.fakes.last("openai").json
    # When the request brings its own system prompt, it replaces the session's for
    # this call and is not stored
    second = chat(
        gateway,
        alice,
        session["id"],
        [{"role": "system", "content": "Request prompt."}, {"role": "user", "content": "two"}],
    )
    assert second.status == 200, second.body
    assert sent_messages(env) == [
        {"role": "system", "content": "Request prompt."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
    ]
    assert transcript(gateway, alice, session["id"]) == [
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "two"),
        ("assistant", "echo: two"),
    ]


def test_history_is_trimmed_to_the_context_window(gateway: Gateway, env: Env, alice: str) -> None:
    # Given a session on a 300-token model holding six turns of ~80 tokens each
    session = create(gateway, alice, model="gpt-tiny", system_prompt="Be brief.")
    for i in range(6):
        result = send(gateway, alice, session["id"], f"turn{i} " + "lorem " * 30)
        assert result.status == 200, result.body
    # When one more message is sent through chat completions
    result = chat(
        gateway, alice, session["id"], [{"role": "user", "content": "last"}], model="gpt-tiny"
    )
    assert result.status == 200, result.body
    dropped = int(result.headers["x-spine-session-turns-dropped"])
    # Then the oldest whole turns were dropped, the system prompt and the newest kept
    assert 1 <= dropped < 6
    sent = sent_messages(env)
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1] == {"role": "user", "content": "last"}
    history = sent[1:-1]
    assert len(history) == 2 * (6 - dropped)
    assert [m["role"] for m in history] == ["user", "assistant"] * (6 - dropped)
    assert history[0]["content"].startswith(f"turn{dropped} ")
    assert history[-1]["content"].startswith("echo: turn5 ")
    # And nothing was deleted: the transcript still holds every turn
    assert len(transcript(gateway, alice, session["id"])) == 14
    # And the POST messages route trims the same way and says so
    again = send(gateway, alice, session["id"], "and more")
    assert again.status == 200, again.body
    assert again.json()["turns_dropped"] == int(again.headers["x-spine-session-turns-dropped"]) >= 1


def test_streaming_with_session_id_stores_the_turn_at_the_end(
    gateway: Gateway, env: Env, alice: str
) -> None:
    session = create(gateway, alice)
    result = chat(
        gateway, alice, session["id"], [{"role": "user", "content": "stream me"}], stream=True
    )
    assert result.status == 200, result.body
    assert result.headers["x-spine-session-id"] == session["id"]
    events = [line for line in result.body.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    text = "".join(
        (json.loads(e.removeprefix("data: "))["choices"] or [{}])[0].get("delta", {}).get("content")
        or ""
        for e in events[:-1]
    )
    assert text == "echo: stream me"
    assert transcript(gateway, alice, session["id"]) == [
        ("user", "stream me"),
        ("assistant", "echo: stream me"),
    ]


def test_stream_cut_mid_way_stores_nothing(gateway: Gateway, env: Env, alice: str) -> None:
    session = create(gateway, alice)
    env.fakes.script("openai", Cut(after=2))
    result = chat(
        gateway, alice, session["id"], [{"role": "user", "content": "stream me"}], stream=True
    )
    assert result.status == 200
    assert "event: error" in result.body.decode()
    assert message_rows(env) == []
    # The usage row of the cut stream is still written
    assert [r["status"] for r in env.usage_rows()] == ["error"]


# --- ownership ------------------------------------------------------------------------


def test_another_principal_gets_404_everywhere(
    gateway: Gateway, env: Env, alice: str, bob: str
) -> None:
    session = create(gateway, alice, system_prompt="alice's secret prompt")
    assert send(gateway, alice, session["id"], "alice's secret message").status == 200
    other_tenant = env.create_key("alice2", principal="alice", tenant="other")
    url = f"/v1/sessions/{session['id']}"
    calls: list[tuple[str, str, Any]] = [
        ("GET", url, None),
        ("PATCH", url, {"title": "stolen"}),
        ("DELETE", url, None),
        ("GET", f"{url}/messages", None),
        ("POST", f"{url}/messages", {"content": "hi"}),
    ]
    requests_before = len(env.fakes.requests("openai"))
    for key in (bob, other_tenant, token_for("mallory", "acme"), token_for("alice", "other")):
        for method, path, body in calls:
            result = gateway.request(method, path, json_body=body, key=key)
            assert result.status == 404, (method, path, result.body)
            assert "secret" not in result.body.decode()
        hello = [{"role": "user", "content": "hi"}]
        for stream in (False, True):
            result = chat(gateway, key, session["id"], hello, stream=stream)
            assert result.status == 404, result.body
            assert "secret" not in result.body.decode()
        listed = gateway.request("GET", "/v1/sessions", key=key).json()
        assert listed["data"] == []
        cursor = gateway.request("GET", "/v1/sessions", key=key, query=f"after={session['id']}")
        assert_error(cursor, 400, "after")
    # No provider was called for them, and alice's session is untouched
    assert len(env.fakes.requests("openai")) == requests_before
    got = gateway.request("GET", url, key=alice).json()
    assert got["title"] == "chat" and got["message_count"] == 2


def test_jwt_principal_owns_its_sessions(gateway: Gateway, alice: str) -> None:
    # A JWT for the same tenant and subject as alice's key is the same owner
    token = token_for("alice", "acme")
    session = create(gateway, token)
    assert gateway.request("GET", f"/v1/sessions/{session['id']}", key=alice).status == 200
    assert send(gateway, token, session["id"], "from a token").status == 200


def test_anonymous_callers_cannot_use_sessions(gateway: Gateway, env: Env, alice: str) -> None:
    # Without credentials: 401
    assert gateway.request("GET", "/v1/sessions").status == 401
    assert gateway.request("POST", "/v1/sessions", body=b"{not json").status == 401
    session = create(gateway, alice)
    # With verify_jwt = false every caller is anonymous: sessions answer 401, and a
    # chat call naming a session too, before any provider call
    config = env.root / "config.toml"
    config.write_text(
        config.read_text().replace(
            "[functions.chat]\nverify_jwt = true", "[functions.chat]\nverify_jwt = false"
        )
        + "\n[functions.sessions]\nverify_jwt = false\n"
    )
    public = Gateway()
    try:
        for method, path, body in [
            ("GET", "/v1/sessions", None),
            ("POST", "/v1/sessions", {"model": "gpt-test"}),
            ("GET", f"/v1/sessions/{session['id']}", None),
            ("POST", f"/v1/sessions/{session['id']}/messages", {"content": "hi"}),
        ]:
            result = public.request(method, path, json_body=body)
            assert result.status == 401, (method, path, result.body)
            assert result.error["code"] == "session_requires_identity"
        hello = [{"role": "user", "content": "hi"}]
        result = public.request(
            "POST",
            "/v1/chat/completions",
            json_body={"model": "gpt-test", "messages": hello, "session_id": session["id"]},
        )
        assert result.status == 401, result.body
        assert env.fakes.requests("openai") == []
    finally:
        public.close()


# --- rate limits ------------------------------------------------------------------------


def test_session_messages_are_rate_limited_and_a_refusal_stores_nothing(
    gateway: Gateway, env: Env
) -> None:
    # Given a key allowed one request per minute (away from a minute's end, where a
    # new window would admit the second request)
    if time.time() % 60 > 55:
        time.sleep(60.5 - time.time() % 60)
    key = env.create_key("limited", principal="carol", tenant="acme")
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET rpm = 1 WHERE principal = 'carol'")
    session = create(gateway, key, model="gpt-test")

    # When two messages are sent
    first = send(gateway, key, session["id"], "Hello")
    second = send(gateway, key, session["id"], "Hello again")

    # Then the first is answered with the limit's headers, the second refused before
    # any provider call, and only the first turn is stored
    assert first.status == 200, first.body
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert_error(second, 429, None)
    assert int(second.headers["retry-after"]) >= 1
    assert len(env.fakes.requests("openai")) == 1
    assert [role for role, _ in transcript(gateway, key, session["id"])] == ["user", "assistant"]
