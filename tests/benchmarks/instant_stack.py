"""The local stack the in-process benchmarks share: the instant upstream
(instant_openai.py) as a process, models.yaml and config.toml naming it, and an
embedded Postgres, stopped again at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_gateway import free_port, write_config

BENCH_DIR = Path(__file__).resolve().parent


@contextmanager
def instant_stack(model_extra: str, *, answer_after_ms: float = 0) -> Iterator[str]:
    """The instant upstream's base URL, with the environment pointing Spine at it;
    `answer_after_ms` makes it a model with that latency."""
    folder = Path(tempfile.mkdtemp(prefix="spine-bench-"))
    port = free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            str(BENCH_DIR / "instant_openai.py"),
            str(port),
            "0",
            str(answer_after_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    base_url = f"http://127.0.0.1:{port}/v1"
    write_config(folder, base_url, model_extra=model_extra)
    os.environ.update(
        {
            "SPINE_CONFIG": str(folder / "config.toml"),
            "SPINE_MODELS": str(folder / "models.yaml"),
            "BENCH_UPSTREAM_KEY": "sk-bench",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "SPINE_DATABASE__EMBEDDED_DIR": str(folder / "pgdata"),
        }
    )
    try:
        yield base_url
    finally:
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")
