"""POST /v1/estimate-cost of a llama.cpp model through the real usage Lambda handler,
against a real worker (llama-server + SmolLM2): the count is exact.

The proof: the estimate's `prompt_tokens` equals the `prompt_tokens` of a real chat call
with the same request through the real chat handler, which the engine itself reports.
The fallbacks when no worker answers are in tests/integration/test_usage_function.py.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeProviders
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result
from tests.worker.conftest import TOKEN, WorkerProcess

pytestmark = pytest.mark.worker

MODELS = """\
version: 1
models:
  - id: local-smol
    provider: llamacpp
    model: smollm2-135m
    pricing: {input: 0.5, output: 1.0}
    context_window: 2048
    max_output_tokens: 256
    engine: {gguf: {file: SmolLM2-135M-Instruct.Q4_1.gguf}, context_size: 2048}
profiles:
  terse-local:
    model: local-smol
    system_prompt: Answer in one short sentence.
"""

CONFIG = """\
[service]
environment = "test"

[models]
reload_interval_seconds = 0

[worker]
url = "{worker_url}"

[functions.chat]
verify_jwt = true
[functions.usage]
verify_jwt = true
"""

CONVERSATION = [
    {"role": "developer", "content": "You are a careful geographer."},
    {"role": "user", "content": "What is the capital of France? Réponds en français 🇫🇷."},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Japan (日本)?"},
]


@pytest.fixture
def env(
    worker: WorkerProcess,
    tmp_path: Path,
    db_url: str,
    fake_providers: FakeProviders,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    environment = Env(tmp_path, db_url, fake_providers)
    environment.write_models(MODELS)
    (tmp_path / "config.toml").write_text(textwrap.dedent(CONFIG.format(worker_url=worker.url)))
    monkeypatch.setenv("SPINE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("SPINE_MODELS", raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SPINE_WORKER_TOKEN", TOKEN)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    return environment


@pytest.fixture
def gateway(env: Env) -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.close()


def estimate(gateway: Gateway, key: str, body: dict[str, Any]) -> Result:
    return gateway.request("POST", "/v1/estimate-cost", json_body=body, key=key)


def chat_prompt_tokens(gateway: Gateway, key: str, body: dict[str, Any]) -> int:
    result = gateway.request(
        "POST", "/v1/chat/completions", json_body={**body, "max_tokens": 1}, key=key
    )
    assert result.status == 200, result.body
    return int(result.json()["usage"]["prompt_tokens"])


@pytest.mark.parametrize(
    "body",
    [
        {"model": "local-smol", "messages": CONVERSATION},
        # The profile's system prompt is added by the chat route, so counted here too.
        {"model": "terse-local", "messages": [{"role": "user", "content": "Name a color."}]},
    ],
    ids=["conversation", "profile"],
)
def test_estimate_is_exact_with_the_worker(
    gateway: Gateway, env: Env, body: dict[str, Any]
) -> None:
    key = env.create_key()
    # When the cost of a request is estimated
    result = estimate(gateway, key, {**body, "max_tokens": 10})
    assert result.status == 200, result.body
    estimated = result.json()
    # Then the model's own tokenizer counted it, as the engine will for the real call
    assert estimated["tokenizer"] == {"method": "llamacpp_worker", "exact": True, "fallback": None}
    assert estimated["prompt_tokens"] == chat_prompt_tokens(gateway, key, body)
    tokens = estimated["prompt_tokens"]
    assert estimated["prompt_tokens_range"] == {"min": tokens, "max": tokens}
    expected = round((tokens * 0.5 + 10 * 1.0) / 1e6, 9)
    assert estimated["cost_usd"]["without_cache"]["expected"] == pytest.approx(expected)


def test_estimate_of_a_text_prompt_is_exact(
    gateway: Gateway, env: Env, worker: WorkerProcess
) -> None:
    prompt = "Once upon a time, in a land far away (très loin), there lived"
    result = estimate(gateway, env.create_key(), {"model": "local-smol", "prompt": prompt})
    assert result.status == 200, result.body
    completion = worker.client.post(
        "/v1/completions", json={"model": "smollm2-135m", "prompt": prompt, "max_tokens": 1}
    )
    assert completion.status_code == 200, completion.text
    assert result.json()["prompt_tokens"] == completion.json()["usage"]["prompt_tokens"]
    assert result.json()["tokenizer"]["exact"] is True


def test_estimate_falls_back_when_the_worker_refuses_the_token(
    gateway: Gateway, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the gateway holds a wrong worker token (the worker answers 401)
    monkeypatch.setenv("SPINE_WORKER_TOKEN", "not-the-worker-token")
    body = {"model": "local-smol", "messages": CONVERSATION}
    result = estimate(gateway, env.create_key(), body)
    # Then the estimate is the offline one, and says why
    assert result.status == 200, result.body
    assert result.json()["tokenizer"] == {
        "method": "o200k_base x 1.25", "exact": False, "fallback": "worker_error",
    }  # fmt: skip
