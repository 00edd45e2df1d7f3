"""`spine dev`: the whole local stack in one command (what `make dev` runs).

Starts the embedded Postgres (migrated), an embedded S3 + SQS (moto's server mode:
the template's queues and buckets, for batches), the llama.cpp worker with the
models.yaml `llamacpp` entries, and the `sam local start-api` emulator, which also
runs the template's SQS event sources and schedules; prints the two exports
an OpenAI client needs; Ctrl-C stops everything, in reverse order, leaving nothing
running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx

from spine.errors import ConfigError, SpineError

STATE_DIR = Path(os.environ.get("SPINE_STATE_DIR", ".spine"))
DEV_KEY_FILE = STATE_DIR / "dev-key"


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="run the whole local stack (make dev)")
    dev.add_argument("--port", type=int, default=3000, help="API port (default 3000)")
    dev.add_argument("--no-worker", action="store_true", help="do not start the worker")
    dev.add_argument(
        "--ready-timeout", type=float, default=300.0, help="seconds to wait for each service"
    )
    dev.set_defaults(handler=_dev)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _dev(args: argparse.Namespace) -> int:
    from spine.registry import load_registry
    from spine.registry.schema import ProviderKind
    from spine.settings import load_settings
    from spine.storage import embedded
    from spine.storage.migrate import ensure_database
    from spine_tools.local import processes

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    children: list[tuple[str, Any]] = []
    embedded_dir: Path | None = None
    stack = contextlib.ExitStack()
    try:
        settings = load_settings()
        registry = load_registry(settings.models_path)
        _say("starting the database")
        db_url = ensure_database(settings)
        if not settings.database_url:
            embedded_dir = settings.resolve_path(settings.database.embedded_dir)
        key = _dev_key(db_url, settings.auth.api_key_prefix)
        env = _child_environment(db_url, stack)

        local_models = registry.models_of(ProviderKind.LLAMACPP)
        if local_models and not args.no_worker:
            worker, ready_url = _start_worker(settings, env, local_models[0].id)
            children.append(("worker", worker))  # before waiting: stopped even if never ready
            _wait_ready(
                ready_url,
                worker,
                args.ready_timeout,
                token=env["SPINE_WORKER_TOKEN"],
                what="worker",
                log_hint=STATE_DIR / "worker.log",
            )

        _say(f"starting the API on http://127.0.0.1:{args.port}")
        api = processes.spawn(
            [_script("spine"), "local", "--port", str(args.port), "--warm-containers", "EAGER"],
            env,
        )
        children.append(("api", api))
        _wait_ready(f"http://127.0.0.1:{args.port}/health", api, args.ready_timeout, what="API")

        print(
            "\nSpine is running. In another shell:\n\n"
            f"export OPENAI_BASE_URL=http://127.0.0.1:{args.port}/v1\n"
            f"export OPENAI_API_KEY={key}\n\n"
            f"Admin app: http://127.0.0.1:{args.port}/admin/ (sign in with that key)\n\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            for name, child in children:
                if child.poll() is not None:
                    _say(f"the {name} exited with status {child.returncode}; stopping")
                    return 1
            time.sleep(0.5)
    except _Stop:
        _say("stopping")
        return 0
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except (SpineError, _NotReady) as exc:
        print(f"spine dev: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
        for _, child in reversed(children):
            processes.stop(child)
        if embedded_dir is not None:
            embedded.stop(embedded_dir)
        stack.close()
        signal.signal(signal.SIGINT, signal.SIG_DFL)


class _NotReady(Exception):
    pass


def _child_environment(db_url: str, stack: contextlib.ExitStack) -> dict[str, str]:
    """The variables of the worker and the API: the database, the embedded AWS (unless
    AWS_ENDPOINT_URL names another one), a JWT secret kept with the local state."""
    env = {**os.environ, "DATABASE_URL": db_url}
    if not env.get("AWS_ENDPOINT_URL"):
        _say("starting the embedded S3 and SQS")
        env.update(_embedded_aws(stack))
    STATE_DIR.mkdir(exist_ok=True)
    env.setdefault("SPINE_JWT_SECRET", _local_secret(STATE_DIR / "jwt-secret"))
    return env


def _embedded_aws(stack: contextlib.ExitStack) -> dict[str, str]:
    """moto's S3 + SQS server for this run, in memory (a restart of `spine dev` starts
    it empty); the variables that point boto3 at it."""
    from spine_tools.local.aws import LOCAL_CREDENTIALS, embedded_aws

    endpoint = stack.enter_context(embedded_aws())
    variables = {"AWS_ENDPOINT_URL": endpoint}
    for name, value in LOCAL_CREDENTIALS.items():
        variables[name] = os.environ.get(name) or value
    return variables


def _start_worker(settings: Any, env: dict[str, str], model: str) -> tuple[Any, str]:
    """The worker on the port of `worker.url`, with a token made for this run
    (shared with the API through SPINE_WORKER_TOKEN); returns it and its /ready URL."""
    from spine_tools.local import processes

    token = env.get("SPINE_WORKER_TOKEN") or secrets.token_urlsafe(24)
    env["SPINE_WORKER_TOKEN"] = token
    worker_url = settings.worker.url.rstrip("/")
    port = urlsplit(worker_url).port or 8081
    _say(f"starting the worker on {worker_url} ({model})")
    log_path = STATE_DIR / "worker.log"
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    argv = [
        _script("spine-worker"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--models", str(settings.models_path)),
        *("--audit-log", str(STATE_DIR / "worker-audit.jsonl")),
    ]
    worker = processes.spawn(argv, env, log)
    os.close(log)
    return worker, f"{worker_url}/ready"


def _wait_ready(
    url: str,
    process: Any,
    timeout: float,
    *,
    what: str,
    token: str | None = None,
    log_hint: Path | None = None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            hint = f" (see {log_hint})" if log_hint else ""
            raise _NotReady(f"the {what} exited with status {process.returncode}{hint}")
        try:
            if httpx.get(url, headers=headers, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise _NotReady(f"the {what} was not ready after {timeout:g} s ({url})")


def _dev_key(db_url: str, prefix: str) -> str:
    """The key printed for OPENAI_API_KEY: reused while it is valid (so a shell that
    exported it keeps working across restarts), else a new one."""
    import asyncio

    import psycopg

    from spine.storage.api_keys import authenticate, create_key

    async def ensure() -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            if DEV_KEY_FILE.exists():
                existing = DEV_KEY_FILE.read_text().strip()
                if existing and await authenticate(conn, existing) is not None:
                    return existing
            plaintext, _ = await create_key(
                conn, "dev", prefix=prefix, principal="dev", scopes=["admin"]
            )
            return plaintext

    key = asyncio.run(ensure())
    STATE_DIR.mkdir(exist_ok=True)
    DEV_KEY_FILE.touch(mode=0o600)
    DEV_KEY_FILE.write_text(key + "\n")
    return key


def _local_secret(path: Path) -> str:
    """A signing secret for `/v1/auth/token` kept with the local state, so tokens
    outlive a restart of the stack like the dev key does."""
    if path.exists():
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


def _script(name: str) -> str:
    """The console script installed beside this interpreter (the project's venv)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _say(message: str) -> None:
    print(f"spine dev: {message}", file=sys.stderr, flush=True)
