"""`spine local` serving template.yaml over real HTTP on a free loopback port, with a
test's configuration: the chat function streams through it the way Lambda Web
Adapter streams it deployed. Import the fixtures into a test module to use them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from spine.settings import get_settings
from spine.storage import db
from spine_tools.local.aws import provision
from spine_tools.local.server import Emulator, make_server
from spine_tools.local.template import load_template
from tests.fixtures.servers import serving
from tests.integration.conftest import Env

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_emulator(
    env: Env, *, pool_size: int = 2, aws_endpoint: str | None = None, **options: Any
) -> Iterator[str]:
    """`spine local` on a free port, serving template.yaml with the test's config;
    `pool_size` containers per function; `options` for `Emulator` (gateway_timeout).
    With `aws_endpoint` (moto's server), the template's queues and buckets are made
    there and its SQS event sources and schedules run."""
    get_settings.cache_clear()
    db.reset()
    overrides = {
        "SPINE_CONFIG": str(env.root / "config.toml"),
        "SPINE_MODELS": str(env.models_path),
        "SPINE_SERVICE__ENVIRONMENT": "test",
    }
    template = load_template(REPO / "template.yaml")
    if aws_endpoint is not None:
        options["aws_resources"] = provision(template, aws_endpoint)
        options["aws_endpoint"] = aws_endpoint
        template = load_template(REPO / "template.yaml", None, options["aws_resources"])
    try:
        with (
            Emulator(
                template, pool_size=pool_size, env_vars={"Parameters": overrides}, **options
            ) as emulator,
            serving(make_server(emulator, "127.0.0.1", 0)) as url,
        ):
            yield url
    finally:
        get_settings.cache_clear()
        db.reset()


@pytest.fixture
def emulator_url(env: Env) -> Iterator[str]:
    """`spine local` on a free port, serving template.yaml with the test's config."""
    with running_emulator(env) as url:
        yield url


@pytest.fixture
def client(emulator_url: str, api_key: str) -> Iterator[openai.OpenAI]:
    """The official `openai` client pointed at the emulator, without its own retries."""
    with openai.OpenAI(
        base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def rows_when_written(env: Env, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
    """The usage rows, once `count` are there (a stream's row is written as it ends,
    which for a client that left is after the client stopped listening)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = env.usage_rows()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
