"""The admin web app in a real browser against the local stack.

One stack per module: a fresh migrated database on the test Postgres, the real
llama.cpp worker with SmolLM2, the wire fake of OpenAI for a hosted model, and
`spine local` serving template.yaml's functions and the built app under /admin/.
Chromium is Debian's (`SPINE_CHROMIUM`, default /usr/bin/chromium), driven by
Playwright, which never downloads a browser of its own. Without Chromium or the app's
build the tests skip, saying how to get them; under `make test`
(SPINE_REQUIRE_BROWSER) that is a failure instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import psycopg
import pytest

from spine.settings import get_settings
from spine.storage import db
from spine.storage.api_keys import create_key
from spine.storage.migrate import apply_migrations
from spine_tools.local.server import Emulator, make_server
from spine_tools.local.template import load_template
from tests.fakes import FakeProviders, FakeProviderServer
from tests.fixtures.postgres import create_database, drop_database
from tests.fixtures.servers import serving
from tests.worker.conftest import MODEL_FILE, TOKEN, WorkerProcess, llama_server, model_file

__all__ = ["llama_server", "model_file"]

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "admin" / "dist"
CHROMIUM = Path(os.environ.get("SPINE_CHROMIUM", "/usr/bin/chromium"))
# The flags a headless Chromium needs on a machine without a network or a sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(os.environ.get("SPINE_SCREENSHOTS", REPO / "build" / "admin-screenshots"))

MODELS_YAML = """\
version: 1
models:
  - id: gpt-test
    provider: openai
    model: gpt-4o-mini
    base_url: {openai_url}
    api_key: {{env: FAKE_OPENAI_KEY}}
    pricing: {{input: 0.15, output: 0.60}}
    context_window: 8000
    max_output_tokens: 1000
    capabilities: [chat, completions, streaming]
  - id: smollm2-135m
    provider: llamacpp
    model: smollm2-135m
    base_url: {worker_url}/v1
    pricing: {{input: 0, output: 0}}
    context_window: 2048
    max_output_tokens: 256
    capabilities: [chat, completions, streaming]
    engine: {{gguf: {{file: {model_file}}}}}
profiles:
  terse:
    model: gpt-test
    temperature: 0.2
    max_tokens: 50
"""

CONFIG_TOML = """\
[service]
environment = "test"

[models]
reload_interval_seconds = 0

[worker]
url = "{worker_url}"
"""


def _missing(reason: str) -> NoReturn:
    if os.environ.get("SPINE_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Stack:
    url: str
    db_url: str
    worker: WorkerProcess
    fakes: FakeProviders
    admin_key: str
    user_key: str

    @property
    def app(self) -> str:
        return f"{self.url}/admin/"

    def new_key(self, name: str, scopes: list[str], principal: str | None = None) -> str:
        async def go() -> str:
            async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as c:
                plaintext, _ = await create_key(
                    c, name, prefix="sk-spine-", principal=principal, scopes=scopes
                )
                return plaintext

        # In a thread of its own: Playwright's sync API keeps an event loop running in
        # the test's thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def api(self, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {key}"},
            json=body,
            timeout=60,
        )


@pytest.fixture(scope="module")
def stack(
    pg_admin_url: str,
    fake_provider_server: FakeProviderServer,
    llama_server: Path,
    model_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    if not (DIST / "index.html").is_file():
        _missing(f"{DIST} is not built: run `make admin`")
    root = tmp_path_factory.mktemp("admin-stack")
    dbname = f"spine_admin_{uuid.uuid4().hex[:12]}"
    db_url = create_database(pg_admin_url, dbname)
    apply_migrations(db_url)
    worker = WorkerProcess(
        root / "worker",
        [{"id": "smollm2-135m"}],
        [model_file.parent],
        "--idle-ttl", "0",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    worker.start(wait_ready=True)
    fakes = FakeProviders(fake_provider_server)
    (root / "models.yaml").write_text(
        MODELS_YAML.format(
            openai_url=fakes.openai_url, worker_url=worker.url, model_file=MODEL_FILE
        )
    )
    (root / "config.toml").write_text(CONFIG_TOML.format(worker_url=worker.url))
    overrides = {
        "SPINE_CONFIG": str(root / "config.toml"),
        "SPINE_MODELS": str(root / "models.yaml"),
        "SPINE_SERVICE__ENVIRONMENT": "test",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "DATABASE_URL": db_url,
            "SPINE_WORKER_TOKEN": TOKEN,
            "FAKE_OPENAI_KEY": "sk-upstream-openai",
            "POWERTOOLS_METRICS_DISABLED": "true",
            # Signs the tokens of /v1/auth/token, so the app's JWT login is tested.
            "SPINE_JWT_SECRET": "admin-app-test-secret-" + "x" * 32,
        }.items():
            patch.setenv(name, value)
        patch.delenv("SPINE_WORKER__URL", raising=False)
        get_settings.cache_clear()
        db.reset()
        template = load_template(REPO / "template.yaml")
        try:
            with (
                Emulator(template, pool_size=2, env_vars={"Parameters": overrides}) as emulator,
                serving(make_server(emulator, "127.0.0.1", 0)) as url,
            ):
                stack = Stack(url, db_url, worker, fakes, "", "")
                stack.admin_key = stack.new_key("ops", ["admin"], principal="ops@example.com")
                stack.user_key = stack.new_key(
                    "app", ["prompts:write"], principal="dev@example.com"
                )
                yield stack
        finally:
            fakes.reset()
            worker.stop()
            get_settings.cache_clear()
            db.reset()
            drop_database(pg_admin_url, dbname)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait up to 15 s (Playwright's default is 5): the suite shares two
    # cores with the worker's engine and the other tests' servers.
    expect.set_options(timeout=15_000)

    with sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary user-data-dir.
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class PageErrors:
    """Console errors and uncaught exceptions of a page: a CSP violation or a crash
    fails the test that caused it."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: m.type == "error" and self.messages.append(m.text))
        page.on("pageerror", lambda e: self.messages.append(f"uncaught: {e}"))


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser context (empty session storage) at laptop size."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors = PageErrors()
    errors.attach(tab)
    yield tab
    context.close()
    # Chromium logs every 4xx answer as a console error; the app shows those as its
    # error states (tests check them). CSP violations, uncaught errors and 5xx count.
    unexpected = [m for m in errors.messages if "responded with a status of 4" not in m]
    assert not unexpected, unexpected


def login(page: Any, stack: Stack, key: str) -> None:
    page.goto(stack.app)
    page.get_by_label("API key or JWT").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("whoami").wait_for()


def screenshot(page: Any, name: str, *, hide: list[Any] | None = None) -> None:
    """A full-page PNG; `hide` covers locators (a key shown once) with a box."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, mask=hide or [])


def session_storage(page: Any) -> dict[str, str]:
    return dict(json.loads(page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")))
