"""Added latency of each API surface over the same upstream call made directly:
chat completions (the baseline), OpenAI's Responses API and Anthropic's Messages API
(both translated for an OpenAI-speaking model: the same chat call upstream), and
embeddings.

    uv run python tests/benchmarks/bench_surface.py [--requests 600]

The instant upstream, an embedded Postgres and the real chat Lambda handler with real
API Gateway events, as bench_gateway.py. All surfaces are measured in one run,
interleaved in rounds, so machine noise hits them alike. Target: each surface's added
p50 within 0.5 ms of chat's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]
sys.path.insert(0, str(REPO))

from bench_gateway import create_key, percentile  # noqa: E402
from instant_stack import instant_stack  # noqa: E402

MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class Surface:
    name: str
    path: str
    body: dict[str, Any]
    direct: Callable[[Any], Awaitable[Any]]  # the upstream call the gateway makes
    direct_ms: list[float] = field(default_factory=list)
    through_ms: list[float] = field(default_factory=list)


def surfaces() -> list[Surface]:
    def chat(client: Any) -> Awaitable[Any]:
        return client.chat.completions.create(model="gpt-bench", messages=MESSAGES)

    def embed(client: Any) -> Awaitable[Any]:
        return client.embeddings.create(model="gpt-bench", input="hi", encoding_format="float")

    return [
        Surface(
            "chat completions",
            "/v1/chat/completions",
            {"model": "gpt-bench", "messages": MESSAGES},
            chat,
        ),
        Surface(
            "responses (translated, store=false)",
            "/v1/responses",
            {"model": "gpt-bench", "input": "hi", "store": False},
            chat,
        ),
        Surface(
            "responses (stored)",
            "/v1/responses",
            {"model": "gpt-bench", "input": "hi"},
            chat,
        ),
        Surface(
            "messages (translated)",
            "/v1/messages",
            {"model": "gpt-bench", "max_tokens": 16, "messages": MESSAGES},
            chat,
        ),
        Surface(
            "embeddings",
            "/v1/embeddings",
            {"model": "gpt-bench", "input": "hi", "encoding_format": "float"},
            embed,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    with instant_stack("capabilities: [chat, streaming, embeddings]") as base_url:
        return run(args.requests, base_url)


def run(requests: int, base_url: str) -> int:
    from openai import AsyncOpenAI
    from tests.integration.gateway import Gateway

    from spine.settings import get_settings
    from spine.storage.migrate import ensure_database
    from spine_tools.local.runtime import LambdaContext

    db_url = ensure_database(get_settings())
    os.environ["DATABASE_URL"] = db_url
    key = create_key(db_url)
    gateway = Gateway()
    module = gateway.module("ChatFunction")
    spec = gateway.template.functions["ChatFunction"]
    loop = asyncio.new_event_loop()
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    measured = surfaces()
    events = {}
    for surface in measured:
        sample = gateway.request("POST", surface.path, json_body=surface.body, key=key)
        assert sample.status == 200, (surface.path, sample.body)
        events[surface.name] = sample.event
        for _ in range(50):  # warm both paths
            loop.run_until_complete(surface.direct(client))
            module.handler(sample.event, LambdaContext.for_invocation(spec, time.monotonic() + 30))
    rounds = 10
    for _ in range(rounds):
        for surface in measured:
            for _ in range(requests // rounds):
                started = time.perf_counter()
                loop.run_until_complete(surface.direct(client))
                surface.direct_ms.append((time.perf_counter() - started) * 1000)
            context = LambdaContext.for_invocation(spec, time.monotonic() + 30)
            for _ in range(requests // rounds):
                started = time.perf_counter()
                result = module.handler(events[surface.name], context)
                surface.through_ms.append((time.perf_counter() - started) * 1000)
                assert result["statusCode"] == 200, result
    loop.run_until_complete(client.close())
    loop.close()
    gateway.close()
    report(measured, requests)
    return 0


def report(measured: list[Surface], requests: int) -> None:
    print(f"\n## Added latency per API surface ({requests} requests each, instant upstream)\n")
    print("| surface | direct p50 ms | through p50 ms | added p50 ms | added p99 ms | vs chat |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    baseline = None
    for surface in measured:
        added = percentile(surface.through_ms, 50) - percentile(surface.direct_ms, 50)
        added_p99 = percentile(surface.through_ms, 99) - percentile(surface.direct_ms, 99)
        baseline = added if baseline is None else baseline
        print(
            f"| {surface.name} | {percentile(surface.direct_ms, 50):.2f} | "
            f"{percentile(surface.through_ms, 50):.2f} | {added:.2f} | {added_p99:.2f} | "
            f"{added - baseline:+.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
