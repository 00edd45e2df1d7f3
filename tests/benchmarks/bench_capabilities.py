"""Added latency of each capability over the bare chat call it makes: the same model,
the same answer shape (`response_format` with the capability's JSON Schema), called
directly with the `openai` client, against the capabilities function's real Lambda
handler with real API Gateway events (prompt lookup, admission, the pipeline, the
usage row, Spine's checks). The instant upstream answers each JSON Schema with a
valid answer, so no repair call is made.

    uv run python tests/benchmarks/bench_capabilities.py [--requests 300]

Capabilities are measured in one run, interleaved in rounds, so machine noise hits
them alike. Target: added p50 at most 3 ms without the repair path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]
sys.path.insert(0, str(REPO))

from bench_gateway import create_key, percentile  # noqa: E402
from instant_stack import instant_stack  # noqa: E402

CONTENT = "hi there, this is a short text"
# The route, its body, and the JSON Schema name its answer has (None: plain text).
CAPABILITIES: list[tuple[str, dict[str, Any], str | None]] = [
    ("summarize", {"content": CONTENT}, "summarize"),
    ("extract", {"content": CONTENT}, "extract"),
    ("classify", {"content": CONTENT, "categories": ["a", "b"]}, "classify"),
    ("rewrite", {"content": CONTENT, "mode": "clean"}, None),
    ("infer-title", {"content": CONTENT}, "infer_title"),
    (
        "generate-commit",
        {"files": [{"path": "a.py", "status": "modified", "diff": "+x"}]},
        "generate_commit",
    ),
    ("translate", {"content": CONTENT, "target_language": "French"}, None),
]


def bare_call(schema_name: str | None) -> Any:
    """The chat call a capability makes, made directly."""
    extra: dict[str, Any] = {}
    if schema_name is not None:
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": {"type": "object"}},
        }
    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": CONTENT}]

    def call(client: Any) -> Any:
        return client.chat.completions.create(model="gpt-bench", messages=messages, **extra)

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with instant_stack("capabilities: [chat, json_schema]") as base_url:
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
    module = gateway.module("CapabilitiesFunction")
    spec = gateway.template.functions["CapabilitiesFunction"]
    loop = asyncio.new_event_loop()
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    events, direct_ms, through_ms = {}, {}, {}
    for name, fields, schema in CAPABILITIES:
        body = {**fields, "model": "gpt-bench"}
        sample = gateway.request("POST", f"/v1/{name}", json_body=body, key=key)
        assert sample.status == 200, (name, sample.body)
        assert not sample.json()["usage"]["repaired"], (name, sample.body)
        events[name] = sample.event
        direct_ms[name], through_ms[name] = [], []
        for _ in range(30):  # warm both paths
            loop.run_until_complete(bare_call(schema)(client))
            module.handler(sample.event, LambdaContext.for_invocation(spec, time.monotonic() + 30))
    rounds = 10
    for _ in range(rounds):
        for name, _, schema in CAPABILITIES:
            call = bare_call(schema)
            for _ in range(requests // rounds):
                started = time.perf_counter()
                loop.run_until_complete(call(client))
                direct_ms[name].append((time.perf_counter() - started) * 1000)
            context = LambdaContext.for_invocation(spec, time.monotonic() + 30)
            for _ in range(requests // rounds):
                started = time.perf_counter()
                result = module.handler(events[name], context)
                through_ms[name].append((time.perf_counter() - started) * 1000)
                assert result["statusCode"] == 200, result
    loop.run_until_complete(client.close())
    loop.close()
    gateway.close()
    print(f"\n## Added latency per capability ({requests} requests each, instant upstream)\n")
    print("| capability | bare chat p50 ms | through p50 ms | added p50 ms | added p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, _, _ in CAPABILITIES:
        direct, through = direct_ms[name], through_ms[name]
        added = percentile(through, 50) - percentile(direct, 50)
        added_p99 = percentile(through, 99) - percentile(direct, 99)
        print(
            f"| {name} | {percentile(direct, 50):.2f} | {percentile(through, 50):.2f} | "
            f"{added:.2f} | {added_p99:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
