"""A gateway configured against the provider fakes and a clean real Postgres."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from spine.storage.api_keys import create_key, revoke_key
from spine_tools.local.aws import embedded_aws
from tests.fixtures.fakes import FakeProviders
from tests.integration.gateway import Gateway

T = TypeVar("T")

MODELS_YAML = """\
version: 1
models:
  - id: gpt-test
    provider: openai
    model: gpt-4o-mini
    aliases: [gpt-alias]
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    pricing: {{input: 0.15, output: 0.60, cached_input: 0.075}}
    context_window: 8000
    max_output_tokens: 1000
    defaults: {{temperature: 0.5}}
    capabilities: [chat, completions, streaming, tools, json_schema]
  - id: gemini-test
    provider: gemini
    model: gemini-2.5-flash
    base_url: {gemini_url}
    api_key: {{env: FAKE_GEMINI_KEY}}
    pricing: {{input: 0.30, output: 2.50, cached_input: 0.03}}
    context_window: 100000
    capabilities: [chat, streaming, vision]
  - id: claude-test
    provider: anthropic
    model: claude-haiku-4-5
    base_url: {anthropic_url}
    api_key: {{env: FAKE_ANTHROPIC_KEY}}
    pricing: {{input: 1.0, output: 5.0, cached_input: 0.1}}
    context_window: 200000
    max_output_tokens: 4096
    capabilities: [chat, streaming]
  - id: unconfigured
    provider: openai
    model: gpt-4o
    base_url: {openai_url}
    api_key: {{env: SPINE_TEST_MISSING_KEY}}
    context_window: 8000
profiles:
  prod:
    model: gpt-alias
    temperature: 0.3
    max_tokens: 50
    system_prompt: You are terse.
aliases:
  default: prod
"""

CONFIG_TOML = """\
[service]
environment = "test"
max_body_bytes = 65536

[models]
reload_interval_seconds = 0

[worker]
url = "http://127.0.0.1:9"

[functions.chat]
verify_jwt = true
[functions.models]
verify_jwt = true
[functions.health]
verify_jwt = false
"""


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on a private loop; asyncio.run would clear the thread's current loop,
    which the Lambda handler (Mangum) keeps using between invocations."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class Env:
    def __init__(self, root: Path, db_url: str, fakes: FakeProviders) -> None:
        self.root = root
        self.db_url = db_url
        self.fakes = fakes
        self.models_path = root / "models.yaml"

    def write_models(self, text: str) -> None:
        self.models_path.write_text(text)

    def add_model(self, entry: str) -> None:
        """A models.yaml entry (YAML lines under `models:`) put first."""
        self.write_models(self.models_path.read_text().replace("models:\n", "models:\n" + entry, 1))

    def add_local_model(self, worker_url: str, gguf: str, model_id: str = "local-test") -> str:
        """`model_id`: SmolLM2 on the worker at `worker_url` (chat, completions, streams)."""
        self.add_model(
            f"  - id: {model_id}\n"
            "    provider: llamacpp\n"
            "    model: smollm2-135m\n"
            f"    base_url: {worker_url}/v1\n"
            "    context_window: 2048\n"
            "    capabilities: [chat, completions, streaming]\n"
            f"    engine: {{gguf: {{file: {gguf}}}}}\n"
        )
        return model_id

    def create_key(self, name: str = "test", **kw: object) -> str:
        async def go() -> str:
            async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as c:
                plaintext, _ = await create_key(c, name, prefix="sk-spine-", **kw)  # type: ignore[arg-type]
                return plaintext

        return run_async(go())

    def revoke(self, plaintext: str) -> None:
        async def go() -> None:
            async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as c:
                await revoke_key(c, plaintext)

        run_async(go())

    def usage_rows(self) -> list[dict[str, object]]:
        with psycopg.connect(self.db_url, row_factory=psycopg.rows.dict_row) as conn:
            return list(conn.execute("SELECT * FROM usage_events ORDER BY created_at, id"))


@pytest.fixture
def env(
    tmp_path: Path, db_url: str, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> Env:
    return prepare_env(tmp_path, db_url, fake_providers, monkeypatch)


def prepare_env(
    tmp_path: Path, db_url: str, fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> Env:
    """models.yaml, config.toml and the variables of a gateway on `db_url`."""
    environment = Env(tmp_path, db_url, fake_providers)
    environment.write_models(
        MODELS_YAML.format(
            openai_url=fake_providers.openai_url,
            gemini_url=fake_providers.gemini_url,
            anthropic_url=fake_providers.anthropic_url,
        )
    )
    (tmp_path / "config.toml").write_text(textwrap.dedent(CONFIG_TOML))
    monkeypatch.setenv("SPINE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("SPINE_MODELS", raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-upstream-openai")
    monkeypatch.setenv("FAKE_GEMINI_KEY", "upstream-gemini")
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "upstream-anthropic")
    monkeypatch.delenv("SPINE_TEST_MISSING_KEY", raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    return environment


@pytest.fixture
def gateway(env: Env) -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.close()


@pytest.fixture
def api_key(env: Env) -> str:
    return env.create_key()


@pytest.fixture
def aws_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`spine local`'s embedded S3 + SQS (moto's server), the AWS variables pointing at
    it; a failed batch line is retried at once (its backoff is a setting)."""
    with embedded_aws() as endpoint:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "SPINE_BATCH__RETRY_DELAY_SECONDS": "0",
        }.items():
            monkeypatch.setenv(name, value)
        yield endpoint
