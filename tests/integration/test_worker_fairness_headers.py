"""Calls the gateway sends to the llama.cpp worker name their caller, so the worker's
per-user fairness and tier priorities (docs/worker.md) apply to gateway traffic:
before, every call reached the worker as one user at normal priority.

The worker speaks OpenAI's API, so the OpenAI wire fake stands in for it here and
records what the gateway sent; the worker's own handling of the headers is tested in
tests/worker."""

from __future__ import annotations

from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

LOCAL_MODEL = (
    "  - id: local-fake\n"
    "    provider: llamacpp\n"
    "    model: smollm2-135m\n"
    "    base_url: {url}\n"
    "    context_window: 2048\n"
    "    capabilities: [chat, streaming]\n"
    "    engine: {{gguf: {{file: x.gguf}}}}\n"
)


def test_worker_calls_carry_the_callers_identity_and_tier(env: Env) -> None:
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + LOCAL_MODEL.format(url=env.fakes.openai_url), 1
        )
    )
    alice = env.create_key("alice", principal="alice", tenant="acme", tier="premium")
    bob = env.create_key("bob", principal="bøb", tier="free")
    body = {"model": "local-fake", "messages": [{"role": "user", "content": "hi"}]}
    gateway = Gateway()
    try:
        for key in (alice, bob):
            result = gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)
            assert result.status == 200, result.body
        stream = gateway.request(
            "POST", "/v1/chat/completions", json_body={**body, "stream": True}, key=alice
        )
        assert stream.status == 200, stream.body
    finally:
        gateway.close()
    sent = [
        (r.headers.get("x-user-id"), r.headers.get("x-key-tier"))
        for r in env.fakes.requests("openai")
    ]
    assert sent == [
        ("acme/alice", "premium"),
        ("b%C3%B8b", "free"),  # percent-encoded: header values are latin-1
        ("acme/alice", "premium"),
    ]


def test_hosted_providers_get_no_caller_headers(env: Env, api_key: str) -> None:
    gateway = Gateway()
    try:
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        assert (
            gateway.request("POST", "/v1/chat/completions", json_body=body, key=api_key).status
            == 200
        )
    finally:
        gateway.close()
    [request] = env.fakes.requests("openai")
    assert "x-user-id" not in request.headers and "x-key-tier" not in request.headers
