"""`spine-worker`: parse flags, build settings, run the control plane under uvicorn.

Only argparse and the settings model load before the flags are checked; FastAPI, httpx
and prometheus-client load after, so `--help` and flag errors are instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gpu_worker.config import Mode, WorkerSettings
from spine.errors import ConfigError, SpineError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spine-worker",
        description="Spine's llama.cpp worker: starts llama-server per model and proxies to it. "
        "Every flag can also be set as SPINE_WORKER_<FLAG> (e.g. SPINE_WORKER_PORT).",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8081)")
    p.add_argument("--models", dest="models_path", type=Path, help="models.yaml path")
    p.add_argument(
        "--model-dir", dest="model_dirs", type=Path, action="append",
        help="a folder model files may come from (repeatable; default: the cache's models "
        "folder and ./models)",
    )  # fmt: skip
    p.add_argument("--default-model", help="model id or alias /ready waits for")
    p.add_argument(
        "--no-preload", dest="preload_default", action="store_const", const=False,
        help="do not load the default model at start-up",
    )  # fmt: skip
    p.add_argument("--max-loaded-models", type=int, help="engines running at once (default 2)")
    p.add_argument(
        "--idle-ttl",
        dest="idle_ttl_seconds",
        type=float,
        help="unload a model this many seconds after its last request (0 = never)",
    )
    p.add_argument("--queue-size", type=int, help="waiting requests per model (default 64)")
    p.add_argument("--mode", choices=[m.value for m in Mode], help="scheduling mode")
    p.add_argument(
        "--aging",
        dest="aging_seconds",
        type=float,
        help="seconds of waiting per priority step (default: by mode)",
    )
    p.add_argument("--audit-log", help="JSON-lines audit file, or 'off'")
    p.add_argument(
        "--grace",
        dest="grace_seconds",
        type=float,
        help="seconds between SIGTERM and SIGKILL for an engine (default 10)",
    )
    p.add_argument(
        "--load-timeout",
        dest="load_timeout_seconds",
        type=float,
        help="seconds an engine may take to load its model (default 300)",
    )
    p.add_argument("--llama-server", type=Path, help="llama-server binary (or SPINE_LLAMA_SERVER)")
    p.add_argument(
        "--insecure-no-auth", action="store_const", const=True,
        help="serve without a token (local development only)",
    )  # fmt: skip
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def settings_from_args(argv: list[str] | None = None) -> WorkerSettings:
    args = vars(build_parser().parse_args(argv))
    overrides: dict[str, Any] = {k: v for k, v in args.items() if v is not None}
    return WorkerSettings.load(overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = settings_from_args(argv)
    except ConfigError as exc:
        sys.stderr.write("spine-worker: invalid settings:\n  " + "\n  ".join(exc.problems) + "\n")
        return 2

    # Heavy imports only once the flags are known to be good (see the module docstring).
    import uvicorn

    from gpu_worker.app import create_app
    from gpu_worker.logs import configure_logging
    from gpu_worker.paths import find_llama_server

    configure_logging(settings.log_level)

    try:
        # Fail at start, with the fix, rather than on the first request.
        find_llama_server(settings.llama_server)
        app = create_app(settings)
    except ConfigError as exc:
        sys.stderr.write("spine-worker: cannot start:\n  " + "\n  ".join(exc.problems) + "\n")
        return 2
    except SpineError as exc:
        sys.stderr.write(f"spine-worker: cannot start: {exc.message}\n")
        return 2
    # uvicorn turns SIGINT/SIGTERM into a graceful shutdown, which runs the app's
    # lifespan exit: every engine gets SIGTERM, then SIGKILL after the grace period.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.grace_seconds) + 1,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
