"""Issue 4's endpoints through `spine local` over real HTTP, as a client sees them:
key administration, the token exchange, a JWT on the chat function with the official
`openai` client, prompts with versions and execute-prompt, chat sessions, usage,
pricing and cost estimates."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url

__all__ = ["emulator_url"]

SYSTEM = {"role": "system", "content": "You are terse."}


@pytest.fixture
def http(emulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator_url, timeout=30) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_client_walks_every_identity_and_memory_endpoint(
    http: httpx.Client, emulator_url: str, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPINE_JWT_SECRET", "an-hs256-secret-of-at-least-32-bytes!!")
    admin = env.create_key("admin", scopes=["admin"])

    # Key administration: a key for a user, with a limit
    created = http.post(
        "/v1/keys",
        headers=bearer(admin),
        json={"name": "alice", "principal": "alice", "scopes": ["chat"], "limits": {"rpm": 50}},
    )
    assert created.status_code == 201, created.text
    alice_key = created.json()["key"]
    listed = http.get("/v1/keys", headers=bearer(admin)).json()["data"]
    assert {k["name"] for k in listed} == {"admin", "alice"}

    # The token exchange, then the JWT on the chat function via the official client
    token = http.post("/v1/auth/token", headers=bearer(alice_key))
    assert token.status_code == 200, token.text
    jwt = token.json()["access_token"]
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=jwt, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(
            model="gpt-test", messages=[SYSTEM, {"role": "user", "content": "Hello"}]
        )
        assert reply.choices[0].message.content
        models = [m.id for m in sdk.models.list()]
        assert "gpt-test" in models

    # Prompts: create, a new version, label, execute by label
    prompt = http.post(
        "/v1/prompts",
        headers=bearer(admin),
        json={"slug": "greet", "template": "Greet {{ name }}", "model": "gpt-test"},
    )
    assert prompt.status_code == 201, prompt.text
    updated = http.patch(
        "/v1/prompts/greet", headers=bearer(admin), json={"template": "Greet {{ name }}!"}
    )
    assert updated.status_code == 200, updated.text
    labelled = http.put(
        "/v1/prompts/greet/labels/production", headers=bearer(admin), json={"version": 1}
    )
    assert labelled.status_code == 200, labelled.text
    executed = http.post(
        "/v1/execute-prompt",
        headers=bearer(admin),
        json={"prompt": "greet", "label": "production", "variables": {"name": "Ada"}},
    )
    assert executed.status_code == 200, executed.text
    assert env.fakes.last("openai").json["messages"][-1]["content"] == "Greet Ada"

    # Chat sessions: create, send a message, then a chat completion with session_id
    # through the official client, and the transcript holds both turns
    session = http.post(
        "/v1/sessions", headers=bearer(admin), json={"model": "gpt-test", "title": "walk"}
    )
    assert session.status_code == 201, session.text
    session_id = session.json()["id"]
    sent = http.post(
        f"/v1/sessions/{session_id}/messages", headers=bearer(admin), json={"content": "Hi"}
    )
    assert sent.status_code == 200, sent.text
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=admin, max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "And again"}],
            extra_body={"session_id": session_id},
        )
        assert raw.headers["x-spine-session-id"] == session_id
    history = http.get(f"/v1/sessions/{session_id}/messages", headers=bearer(admin)).json()
    assert [m["role"] for m in history["data"]] == ["user", "assistant", "user", "assistant"]
    # The provider got the history before the new message
    sent_to_provider = [m["content"] for m in env.fakes.last("openai").json["messages"]]
    assert sent_to_provider == ["Hi", "echo: Hi", "And again"]
    assert http.get("/v1/sessions", headers=bearer(alice_key)).json()["data"] == []

    # Usage, pricing and a cost estimate
    usage = http.get("/v1/usage", headers=bearer(admin))
    assert usage.status_code == 200, usage.text
    assert usage.json()["totals"]["requests"] >= 2
    pricing = http.get("/v1/pricing/gpt-test", headers=bearer(admin))
    assert pricing.status_code == 200, pricing.text
    estimate = http.post(
        "/v1/estimate-cost",
        headers=bearer(admin),
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "Hello there"}]},
    )
    assert estimate.status_code == 200, estimate.text

    # Revoking the key ends it at once, over HTTP too
    revoked = http.delete(f"/v1/keys/{created.json()['id']}", headers=bearer(admin))
    assert revoked.status_code == 200
    assert http.post("/v1/auth/token", headers=bearer(alice_key)).status_code == 401
