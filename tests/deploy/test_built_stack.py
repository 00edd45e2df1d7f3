"""The host build of the stack, served and used end to end.

`sam build` with this machine's wheels (the Lambda recipe otherwise unchanged) is
served by the emulator from the build folder, in an interpreter that has nothing
installed: its only packages are the built layer's `python/` and the emulator itself.
So a module, a dependency, a migration or a configuration file missing from the
artifacts fails here, as it would deployed. The database is migrated the way a deploy
migrates it: the built `MigrationsFunction` answers a CloudFormation Create.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
import yaml

from spine.storage.migrate import load_migrations
from tests.deploy.conftest import REPO, Build
from tests.fakes import FakeProviders
from tests.fixtures.cloudformation import ResponseUrl, request
from tests.integration.conftest import run_async

PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-upstream-openai",
    "GEMINI_API_KEY": "upstream-gemini",
    "ANTHROPIC_API_KEY": "upstream-anthropic",
}


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with nothing in it, not even pip."""
    folder = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python"


def built_env(build: Build, **extra: str) -> dict[str, str]:
    """The environment of a process that runs from the build: the layer and the
    emulator on the path, nothing of this checkout's virtualenv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "SPINE_CONFIG", "SPINE_MODELS"}
    }
    env.update(
        PYTHONPATH=f"{build.site}{os.pathsep}{REPO / 'tools'}",
        PYTHONNOUSERSITE="1",
        POWERTOOLS_METRICS_DISABLED="true",
        **extra,
    )
    return env


def packaged_models_against(fakes: FakeProviders, build: Build, target: Path) -> Path:
    """The layer's own models.yaml with each hosted model pointed at the wire fakes."""
    data = yaml.safe_load((build.layer / "models.yaml").read_text())
    for model in data["models"]:
        if model["provider"] in ("openai", "gemini", "anthropic"):
            model["base_url"] = fakes.url_for(model["provider"])
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_key(url: str) -> str:
    from spine.storage.api_keys import create_key as create

    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            plaintext, _ = await create(conn, "built-stack", prefix="sk-spine-")
            return plaintext

    return run_async(go())


def test_built_migrations_function_migrates_an_empty_database(
    host_build: Build, bare_python: Path, empty_db_url: str, tmp_path: Path
) -> None:
    # Given an empty database and the built migrations function
    answers = ResponseUrl()
    event_file = tmp_path / "create.json"
    event_file.write_text(json.dumps(request("Create", answers.url)))
    # When it is invoked from the build with a CloudFormation Create
    try:
        result = subprocess.run(
            [str(bare_python), "-m", "spine_tools.cli", "invoke", "MigrationsFunction",
             "--event", str(event_file), "--template", str(host_build.template),
             "--config-file", str(REPO / "infra" / "samconfig.toml")],
            env=built_env(host_build, DATABASE_URL=empty_db_url),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        answers.close()
    # Then it answered SUCCESS with every migration the layer ships applied
    assert result.returncode == 0, result.stdout + result.stderr
    [answer] = answers.answers
    assert answer.body["Status"] == "SUCCESS", answer.body["Reason"]
    assert answer.body["Data"]["Applied"] == ",".join(m.label for m in load_migrations())


@pytest.fixture
def built_stack(
    host_build: Build,
    bare_python: Path,
    db_url: str,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> Iterator[str]:
    """`spine local` serving the built template from the build folder."""
    models = packaged_models_against(fake_providers, host_build, tmp_path / "models.yaml")
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"Parameters": {"SPINE_MODELS": str(models)}}))
    port = free_port()
    log = (tmp_path / "emulator.log").open("w")
    process = subprocess.Popen(
        [str(bare_python), "-m", "spine_tools.cli", "local", "--port", str(port),
         "--template", str(host_build.template), "--env-vars", str(env_vars),
         "--config-file", str(REPO / "infra" / "samconfig.toml")],
        env=built_env(host_build, DATABASE_URL=db_url, **PROVIDER_KEYS),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "emulator.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "emulator.log").read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture
def client(built_stack: str, db_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{built_stack}/v1", api_key=create_key(db_url), max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def usage_rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return list(conn.execute("SELECT model, status FROM usage_events ORDER BY created_at"))


def test_built_stack_lists_the_packaged_models(client: openai.OpenAI, host_build: Build) -> None:
    packaged = yaml.safe_load((host_build.layer / "models.yaml").read_text())
    listed = {model.id for model in client.models.list()}
    assert {m["id"] for m in packaged["models"]} <= listed


@pytest.mark.parametrize(
    ("model", "provider"),
    [("gpt-5.4-mini", "openai"), ("gemini-2.5-flash", "gemini"), ("claude-haiku-4-5", "anthropic")],
)
def test_built_stack_calls_each_provider_through_the_layers_sdk(
    client: openai.OpenAI,
    fake_providers: FakeProviders,
    db_url: str,
    model: str,
    provider: str,
) -> None:
    # When a chat completion goes through the built chat function to each provider
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello from the build"}]
    )
    # Then the provider's SDK (from the layer) reached its fake, and the answer and the
    # usage row came back
    assert "hello from the build" in (answer.choices[0].message.content or "")
    assert fake_providers.requests(provider)
    assert usage_rows(db_url) == [{"model": model, "status": "ok"}]


def test_built_stack_streams_a_chat_completion(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-5.4-mini",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "stream it" in text


def test_built_stack_refuses_an_unknown_key(built_stack: str) -> None:
    response = httpx.get(
        f"{built_stack}/v1/models", headers={"Authorization": "Bearer sk-spine-nope"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"]
