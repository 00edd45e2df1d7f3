"""Response-cache benchmark: latency of a cache hit through the real chat handler.

    uv run python tests/benchmarks/bench_cache.py [--requests 1000]

Same set-up as bench_gateway.py: an embedded Postgres (or DATABASE_URL), the instant
OpenAI-compatible upstream in its own process, an API key, and the chat Lambda
handler invoked with real API Gateway events. Three paths are timed, interleaved in
rounds so machine noise hits them alike:

- hit: a deterministic request whose answer is cached (key lookup, cache read, the
  usage row; no provider call);
- stream hit: the same request with `stream: true`, replayed as chunks (Mangum
  buffers the whole event stream, as the gateway's JSON path does);
- uncached: a non-deterministic request that goes to the instant upstream (the
  gateway path of bench_gateway.py), for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_gateway import (  # noqa: E402
    create_key,
    free_port,
    percentile,
    write_config,
)

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="spine-bench-cache-"))
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "instant_openai.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    write_config(
        folder,
        f"http://127.0.0.1:{port}/v1",
        model_extra="capabilities: [chat, streaming]\ncache_ttl: 3600",
    )
    os.environ.update(
        {
            "SPINE_CONFIG": str(folder / "config.toml"),
            "BENCH_UPSTREAM_KEY": "sk-bench",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "SPINE_DATABASE__EMBEDDED_DIR": str(folder / "pgdata"),
        }
    )
    try:
        return run(args.requests)
    finally:
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")


def run(requests: int) -> int:
    from tests.integration.gateway import Gateway

    from spine.settings import get_settings
    from spine.storage.migrate import ensure_database
    from spine_tools.local.runtime import LambdaContext

    db_url = ensure_database(get_settings())
    os.environ["DATABASE_URL"] = db_url
    key = create_key(db_url)
    gateway = Gateway()

    def event_for(body: dict[str, Any], expect_cache: str | None) -> dict[str, Any]:
        sample = gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)
        assert sample.status == 200, sample.body
        assert sample.headers.get("x-cache") == expect_cache, sample.headers
        return sample.event

    cached = {"model": "gpt-bench", "messages": MESSAGES, "temperature": 0}
    event_for(cached, "MISS")  # the provider answers once; the answer is kept
    paths = {
        "hit": event_for(cached, "HIT"),
        "stream hit": event_for({**cached, "stream": True}, "HIT"),
        "uncached (instant upstream)": event_for(
            {"model": "gpt-bench", "messages": MESSAGES, "temperature": 0.7}, None
        ),
    }
    module = gateway.module("ChatFunction")
    spec = gateway.template.functions["ChatFunction"]
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for event in paths.values():  # warm every path
        for _ in range(50):
            module.handler(event, LambdaContext.for_invocation(spec, time.monotonic() + 30))
    rounds = 10
    for _ in range(rounds):
        for name, event in paths.items():
            context = LambdaContext.for_invocation(spec, time.monotonic() + 30)
            for _ in range(requests // rounds):
                started = time.perf_counter()
                result = module.handler(event, context)
                timings[name].append((time.perf_counter() - started) * 1000)
                assert result["statusCode"] == 200
    gateway.close()
    report(timings, requests)
    return 0


def report(timings: dict[str, list[float]], requests: int) -> None:
    print(f"\n## Cache-hit latency over {requests} requests per path\n")
    print("| path | p50 ms | p99 ms | mean ms |\n| --- | ---: | ---: | ---: |")
    for name, values in timings.items():
        print(
            f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f}"
            f" | {statistics.fmean(values):.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
