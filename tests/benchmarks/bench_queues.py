"""The queue-driven work through the local stack (`spine local` with its embedded
S3 + SQS, the template's event sources running), against the instant upstream:

- batch: lines per second of a batch of N chat lines, against the same N requests
  made one by one through the same stack (target: at least 5x on 2 cores). With
  `--upstream-ms`, the upstream answers after that long, as a hosted model does: what
  running lines concurrently buys then, where the instant upstream measures only
  what a line costs the machine;
- pipelines: the dispatch overhead per step of a run of chained transform steps
  (no model call: what the queue, the claim and the bookkeeping cost; target: at most
  20 ms per step).

    uv run python tests/benchmarks/bench_queues.py [--lines 500] [--steps 20] [--upstream-ms 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]
sys.path.insert(0, str(REPO))

from bench_gateway import create_key  # noqa: E402
from instant_stack import instant_stack  # noqa: E402


@contextmanager
def local_stack() -> Iterator[tuple[str, str]]:
    """(the API's URL, a key): spine local with its embedded S3 + SQS."""
    from tests.fixtures.servers import serving

    from spine.settings import get_settings
    from spine.storage.migrate import ensure_database
    from spine_tools.local.aws import embedded_aws, provision
    from spine_tools.local.server import Emulator, make_server
    from spine_tools.local.template import load_template

    db_url = ensure_database(get_settings())
    os.environ["DATABASE_URL"] = db_url
    key = create_key(db_url, scopes=("prompts:write",))  # pipelines are written too
    # The functions read their settings when the emulator imports them, with the
    # variables each declares (the batch bucket, the queues).
    get_settings.cache_clear()
    with embedded_aws() as endpoint:
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint,
            }
        )
        template = load_template(REPO / "template.yaml")
        resources = provision(template, endpoint)
        template = load_template(REPO / "template.yaml", None, resources)
        with (
            Emulator(
                template,
                pool_size=4,
                # The benchmark's configuration over the template's (instant_stack's).
                env_vars={
                    "Parameters": {
                        "SPINE_CONFIG": os.environ["SPINE_CONFIG"],
                        "SPINE_MODELS": os.environ["SPINE_MODELS"],
                        "SPINE_SERVICE__ENVIRONMENT": "test",
                    }
                },
                aws_endpoint=endpoint,
                aws_resources=resources,
            ) as emulator,
            serving(make_server(emulator, "127.0.0.1", 0)) as url,
        ):
            yield url, key


def bench_batch(url: str, key: str, lines: int) -> tuple[float, float]:
    """(sequential requests per second, batch lines per second)."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(20):  # warm the chat containers
        client.chat.completions.create(model="gpt-bench", messages=messages)  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(lines):
        client.chat.completions.create(model="gpt-bench", messages=messages)  # type: ignore[arg-type]
    sequential = lines / (time.perf_counter() - started)
    run_batch(client, 400)  # warm the batch function's containers, as chat's were
    return sequential, lines / run_batch(client, lines)


def run_batch(client: Any, lines: int) -> float:
    """Seconds from creating a batch of `lines` chat lines to its completion."""
    messages = [{"role": "user", "content": "hi"}]
    content = "".join(
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-bench", "messages": messages},
            }
        )
        + "\n"
        for i in range(lines)
    )
    uploaded = client.files.create(file=("in.jsonl", content.encode()), purpose="batch")
    started = time.perf_counter()
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    # Polled as a client would; each poll is an API call on the same machine.
    while (batch := client.batches.retrieve(batch.id)).status not in (
        "completed", "failed", "expired", "cancelled",
    ):  # fmt: skip
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    assert batch.status == "completed", batch
    assert batch.request_counts is not None and batch.request_counts.completed == lines
    return elapsed


def bench_pipeline(url: str, key: str, steps: int) -> float:
    """Milliseconds per step of a run of `steps` chained transforms."""
    import httpx

    chain: list[dict[str, Any]] = [{"id": "s0", "type": "transform", "expression": "seed"}]
    chain += [
        {"id": f"s{i}", "type": "transform", "expression": f"s{i - 1}"} for i in range(1, steps)
    ]
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    created = http.post(
        "/v1/pipelines",
        json={"slug": f"chain-{steps}", "definition": {"inputs": ["seed"], "steps": chain}},
    )
    assert created.status_code == 201, created.text
    timings = []
    for attempt in range(3):  # the first warms the workflows containers
        started = time.perf_counter()
        run = http.post(
            f"/v1/pipelines/{created.json()['id']}/runs", json={"inputs": {"seed": attempt}}
        ).json()
        while (got := http.get(f"/v1/pipeline-runs/{run['id']}").json())["status"] in (
            "queued", "running",
        ):  # fmt: skip
            time.sleep(0.01)
        assert got["status"] == "succeeded" and got["output"] == attempt, got
        timings.append((time.perf_counter() - started) * 1000 / steps)
    return min(timings[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--upstream-ms", type=float, default=0.0)
    args = parser.parse_args()
    with (
        instant_stack("capabilities: [chat]", answer_after_ms=args.upstream_ms),
        local_stack() as (url, key),
    ):
        sequential, batched = bench_batch(url, key, args.lines)
        per_step = bench_pipeline(url, key, args.steps)
    upstream = (
        f"upstream answering in {args.upstream_ms:g} ms" if args.upstream_ms else "instant upstream"
    )
    print(f"\n## Queue-driven work through spine local ({os.cpu_count()} cores, {upstream})\n")
    print("| measure | figure |\n| --- | ---: |")
    print(f"| chat requests one by one | {sequential:.0f} / s |")
    print(f"| batch of {args.lines} lines | {batched:.0f} lines / s |")
    print(f"| batch / sequential | {batched / sequential:.2f}x |")
    print(f"| pipeline step dispatch ({args.steps} chained steps) | {per_step:.1f} ms / step |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
