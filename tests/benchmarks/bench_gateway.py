"""Gateway benchmarks: cold start of the chat function, and the latency the gateway
adds on the way to a provider that answers at once.

    uv run python tests/benchmarks/bench_gateway.py [--requests 1000] [--cold-runs 10]

Everything runs on this machine: an embedded Postgres (or DATABASE_URL), the
instant OpenAI-compatible upstream in its own process, and the real chat Lambda
handler invoked with real API Gateway events. Both paths are measured in one run,
interleaved in rounds, so machine noise hits them alike; the figure that matters is
the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def profile_handler(
    gateway: object, body: dict[str, object], key: str, requests: int, target: Path
) -> None:
    """cProfile of `requests` handler invocations, warm, to `target` (pstats)."""
    import cProfile

    from tests.integration.gateway import Gateway

    from spine_tools.local.runtime import LambdaContext

    assert isinstance(gateway, Gateway)
    module = gateway.module("ChatFunction")
    event = gateway.request("POST", "/v1/chat/completions", json_body=body, key=key).event
    context = LambdaContext.for_invocation(
        gateway.template.functions["ChatFunction"], time.monotonic() + 30
    )
    with cProfile.Profile() as profiler:
        for _ in range(requests):
            module.handler(event, context)
    profiler.dump_stats(target)


def write_config(folder: Path, upstream: str, *, model_extra: str = "") -> None:
    """models.yaml with one model on the instant upstream (plus `model_extra`, YAML
    lines of that model's entry), and config.toml; the other benchmarks share it."""
    entry = textwrap.dedent(
        f"""\
        version: 1
        models:
          - id: gpt-bench
            provider: openai
            model: gpt-bench
            base_url: {upstream}
            api_key: {{env: BENCH_UPSTREAM_KEY}}
            pricing: {{input: 0.15, output: 0.6}}
            context_window: 128000
        """
    )
    extra = "".join(f"    {line}\n" for line in textwrap.dedent(model_extra).splitlines() if line)
    (folder / "models.yaml").write_text(entry + extra)
    (folder / "config.toml").write_text(
        '[service]\nenvironment = "test"\n[models]\nreload_interval_seconds = 2.0\n'
    )


COLD_START = """
import json, sys, time, importlib.util
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("chat_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t1 = time.perf_counter()
from spine_tools.local.runtime import LambdaContext
class Spec:  # what LambdaContext.for_invocation reads
    function_name = "ChatFunction"; memory_mb = 1769
context = LambdaContext.for_invocation(Spec, deadline=time.monotonic() + 30)
event = json.loads(sys.argv[2])
result = module.handler(event, context)
t2 = time.perf_counter()
assert result["statusCode"] == 200, result
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_event_ms": (t2 - t1) * 1000}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--cold-runs", type=int, default=10)
    parser.add_argument(
        "--import-profile",
        type=Path,
        default=None,
        help="also write `python -X importtime` of one cold start to this file",
    )
    parser.add_argument(
        "--handler-profile",
        type=Path,
        default=None,
        help="also write a cProfile of the handler over the measured requests (pstats file)",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="spine-bench-"))
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "instant_openai.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    base_url = f"http://127.0.0.1:{port}/v1"
    write_config(folder, base_url)
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
        return run(args, folder, base_url)
    finally:
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")


def run(args: argparse.Namespace, folder: Path, base_url: str) -> int:
    from spine.settings import get_settings
    from spine.storage.migrate import ensure_database

    db_url = ensure_database(get_settings())
    os.environ["DATABASE_URL"] = db_url
    key = create_key(db_url)

    sys.path.insert(0, str(REPO))
    from tests.integration.gateway import Gateway

    gateway = Gateway()
    body = {"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]}
    event = gateway.request("POST", "/v1/chat/completions", json_body=body, key=key).event

    cold = cold_starts(args.cold_runs, event)
    if args.import_profile is not None:
        profile_cold_start(event, args.import_profile)
    eager = timed_imports(args.cold_runs, EAGER_IMPORTS)
    floor = timed_imports(args.cold_runs, FLOOR_IMPORTS)
    direct, through = added_latency(gateway, base_url, body, key, args.requests)
    if args.handler_profile is not None:
        profile_handler(gateway, body, key, args.requests, args.handler_profile)
    gateway.close()

    report(cold, eager, floor, direct, through, args.requests)
    return 0


def create_key(db_url: str, scopes: tuple[str, ...] = ()) -> str:
    import psycopg

    from spine.storage.api_keys import create_key as create

    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            key, _ = await create(conn, "bench", prefix="sk-spine-", scopes=list(scopes))
            return key

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(go())
    finally:
        loop.close()


def profile_cold_start(event: dict[str, object], target: Path) -> None:
    chat_module = str(REPO / "functions/chat/app.py")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", COLD_START, chat_module, json.dumps(event)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    target.write_text(out.stderr)


def cold_starts(runs: int, event: dict[str, object]) -> list[dict[str, float]]:
    results = []
    for _ in range(runs):
        chat_module = str(REPO / "functions/chat/app.py")
        out = subprocess.run(
            [sys.executable, "-c", COLD_START, chat_module, json.dumps(event)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


EAGER_IMPORTS = """
import time
t0 = time.perf_counter()
import fastapi, mangum, openai, google.genai, anthropic, boto3, psycopg
import aws_lambda_powertools.logging, aws_lambda_powertools.metrics
print((time.perf_counter() - t0) * 1000)
"""


# The floor: what any chat function built as the design asks (FastAPI + Mangum,
# the openai SDK for the call, psycopg for the key and the usage row) must import.
FLOOR_IMPORTS = """
import time
t0 = time.perf_counter()
import fastapi, mangum, openai, psycopg
print((time.perf_counter() - t0) * 1000)
"""


def timed_imports(runs: int, script: str) -> list[float]:
    """Milliseconds a fresh process spends importing what `script` imports."""
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        for _ in range(runs)
    ]


def added_latency(
    gateway: object, base_url: str, body: dict[str, object], key: str, requests: int
) -> tuple[list[float], list[float]]:
    from openai import AsyncOpenAI
    from tests.integration.gateway import Gateway

    assert isinstance(gateway, Gateway)
    loop = asyncio.new_event_loop()
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)

    async def direct_call() -> None:
        await client.chat.completions.create(model="gpt-bench", messages=body["messages"])  # type: ignore[arg-type]

    module = gateway.module("ChatFunction")
    sample = gateway.request("POST", "/v1/chat/completions", json_body=body, key=key)
    assert sample.status == 200, sample.body
    event = sample.event
    from spine_tools.local.runtime import LambdaContext

    spec = gateway.template.functions["ChatFunction"]
    direct: list[float] = []
    through: list[float] = []
    for _ in range(50):  # warm both paths
        loop.run_until_complete(direct_call())
        module.handler(event, LambdaContext.for_invocation(spec, time.monotonic() + 30))
    rounds = 10
    for _ in range(rounds):
        for _ in range(requests // rounds):
            started = time.perf_counter()
            loop.run_until_complete(direct_call())
            direct.append((time.perf_counter() - started) * 1000)
        context = LambdaContext.for_invocation(spec, time.monotonic() + 30)
        for _ in range(requests // rounds):
            started = time.perf_counter()
            result = module.handler(event, context)
            through.append((time.perf_counter() - started) * 1000)
            assert result["statusCode"] == 200
    loop.run_until_complete(client.close())
    loop.close()
    return direct, through


def report(
    cold: list[dict[str, float]],
    eager: list[float],
    floor: list[float],
    direct: list[float],
    through: list[float],
    n: int,
) -> None:
    imports = [c["import_ms"] for c in cold]
    firsts = [c["first_event_ms"] for c in cold]
    totals = [c["import_ms"] + c["first_event_ms"] for c in cold]
    rows = (
        ("import the chat module", imports),
        ("serve the first event", firsts),
        ("cold start (both)", totals),
        ("baseline: import every card SDK eagerly", eager),
        ("floor: import fastapi, mangum, openai, psycopg only", floor),
    )
    print(f"\n## Chat function cold start ({len(cold)} fresh processes)\n")
    print("| phase | median ms | min ms | max ms |\n| --- | ---: | ---: | ---: |")
    for name, values in rows:
        median, low, high = statistics.median(values), min(values), max(values)
        print(f"| {name} | {median:.0f} | {low:.0f} | {high:.0f} |")
    ratio = statistics.median(totals) / statistics.median(eager)
    print(f"\ncold start / eager-import baseline: {ratio:.2f}")
    print(f"\n## Added latency over {n} requests (instant upstream)\n")
    print("| path | p50 ms | p99 ms |\n| --- | ---: | ---: |")
    for name, values in (
        ("provider SDK straight to the upstream", direct),
        ("API Gateway event -> chat handler -> upstream", through),
    ):
        print(f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f} |")
    added_p50 = percentile(through, 50) - percentile(direct, 50)
    added_p99 = percentile(through, 99) - percentile(direct, 99)
    print(f"| **added by the gateway** | **{added_p50:.2f}** | {added_p99:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
