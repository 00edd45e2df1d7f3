"""Added latency of a chat request side by side: Spine's chat app, the emulator and
LiteLLM's proxy, against the same instant upstream, in one run.

    uv run python tests/benchmarks/bench_side_by_side.py [--requests 400] [--concurrency 1,16]

Every server runs in its own process on this machine: an embedded Postgres (or
DATABASE_URL), the instant OpenAI-compatible upstream (`instant_openai.py`), the chat
function's app under uvicorn as Lambda Web Adapter runs it deployed (API-key
authentication, limits and the usage row included), `spine local` serving
template.yaml, and LiteLLM's proxy (one worker, no database, a master key; the model
cost map read from the package, so it sends nothing off this machine). LiteLLM is
never a dependency of the project: a pinned version is installed on first use into
its own virtualenv under the user's cache folder and reused after.

The same non-streamed chat request goes to each path; the paths take turns (one
request at a time at concurrency 1, `concurrency` requests at once above it), the
first path rotating, so machine noise hits them alike. Added latency is a path's
percentile minus the direct path's; the ratio is Spine's added latency over LiteLLM's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_gateway import create_key, free_port, percentile, write_config  # noqa: E402
from bench_ttfc import start_emulator, start_function_app  # noqa: E402

LITELLM_VERSION = "1.106.12"
LITELLM_KEY = "sk-litellm-bench"
REQUEST = {"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]}
LABELS = {
    "direct": "straight to the upstream",
    "spine": "Spine's chat app under uvicorn",
    "emulator": "`spine local` (emulator) and the chat function",
    "litellm": f"LiteLLM proxy {LITELLM_VERSION}",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per path and concurrency")
    parser.add_argument("--warmup", type=int, default=50, help="per path, not counted")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated levels")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

    litellm = litellm_command(args.litellm_version)
    folder = Path(tempfile.mkdtemp(prefix="spine-bench-sbs-"))
    upstream_port, emulator_port, spine_port, litellm_port = (free_port() for _ in range(4))
    upstream = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "instant_openai.py"), str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    write_config(folder, upstream_url)
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
    servers: list[subprocess.Popen[bytes]] = []
    try:
        from spine.settings import get_settings
        from spine.storage.migrate import ensure_database

        db_url = ensure_database(get_settings())
        key = create_key(db_url)
        servers.append(start_function_app(folder, spine_port, db_url))
        servers.append(start_emulator(folder, emulator_port, db_url))
        servers.append(start_litellm(litellm, folder, litellm_port, upstream_url))
        paths = {
            "direct": (upstream_url, "sk-bench"),
            "spine": (f"http://127.0.0.1:{spine_port}/v1", key),
            "emulator": (f"http://127.0.0.1:{emulator_port}/v1", key),
            "litellm": (f"http://127.0.0.1:{litellm_port}/v1", LITELLM_KEY),
        }
        for url, api_key in paths.values():
            wait_until_answering(url, api_key)
        print(machine_line(args.litellm_version))
        rows_before = usage_rows(db_url)
        sent = 0
        for level in levels:
            times = asyncio.run(measure(paths, level, args.requests, args.warmup))
            report(times, level)
            sent += sum(len(times[name]) for name in ("spine", "emulator"))
        # Spine's paths did their whole job: one usage row per request (warm-up too).
        written = usage_rows(db_url) - rows_before
        print(f"\nusage rows written by Spine's paths: {written} (measured requests: {sent})")
        assert written >= sent, (written, sent)
        return 0
    finally:
        for server in servers:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")
        shutil.rmtree(folder, ignore_errors=True)


def usage_rows(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM usage_events").fetchone()
    assert row is not None
    return int(row[0])


# --- LiteLLM, in its own virtualenv ---------------------------------------------------


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def litellm_command(version: str) -> Path:
    """The `litellm` command of `litellm[proxy]==version`, installed on first use into
    a virtualenv of its own (never the project's environment)."""
    venv = cache_home() / "spine" / "bench" / f"litellm-{version}"
    command = venv / "bin" / "litellm"
    marker = venv / ".installed"
    if marker.exists() and command.exists():
        return command
    print(f"installing litellm[proxy]=={version} into {venv} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"litellm[proxy]=={version}"], check=True)
    marker.write_text(version)
    return command


def start_litellm(
    command: Path, folder: Path, port: int, upstream_url: str
) -> subprocess.Popen[bytes]:
    config = folder / "litellm.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            model_list:
              - model_name: gpt-bench
                litellm_params:
                  model: openai/gpt-bench
                  api_base: {upstream_url}
                  api_key: sk-bench
            litellm_settings:
              telemetry: false
            general_settings:
              master_key: {LITELLM_KEY}
            """
        )
    )
    # No database: nothing in its environment names one. The cost map comes from the
    # installed package instead of the network.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPINE_", "DATABASE_", "POWERTOOLS_"))
    }
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    log = (folder / "litellm.log").open("wb")
    arguments = ["--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [str(command), *arguments, "--num_workers", "1"],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


# --- measuring -------------------------------------------------------------------------


def wait_until_answering(base_url: str, key: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(
                f"{base_url}/chat/completions",
                json=REQUEST,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            if response.status_code == 200:
                assert response.json()["choices"][0]["message"]["content"] == "ok"
                return
            raise RuntimeError(f"{base_url} answered {response.status_code}: {response.text!r}")
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def measure(
    paths: dict[str, tuple[str, str]], concurrency: int, requests: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds per request on each path. The paths take turns, each turn
    `concurrency` requests sent at once (one request at concurrency 1)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = {
        name: httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            limits=limits,
            timeout=60,
        )
        for name, (url, key) in paths.items()
    }
    body = json.dumps(REQUEST).encode()
    headers = {"Content-Type": "application/json"}

    async def one(client: httpx.AsyncClient) -> float:
        started = time.perf_counter()
        response = await client.post("/chat/completions", content=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{client.base_url} answered {response.status_code}")
        return elapsed

    async def batch(client: httpx.AsyncClient, count: int) -> list[float]:
        # `concurrency` workers, each sending its share back to back.
        shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]

        async def worker(n: int) -> list[float]:
            return [await one(client) for _ in range(n)]

        results = await asyncio.gather(*(worker(n) for n in shares if n))
        return [ms for result in results for ms in result]

    names = list(paths)
    # One request per worker per turn: the turns are short, so a burst of load from
    # elsewhere on the machine falls on every path alike rather than on one batch.
    per_turn = concurrency
    for name in names:
        await batch(clients[name], max(warmup, per_turn))
    times: dict[str, list[float]] = {name: [] for name in names}
    turn = 0
    while len(times[names[0]]) < requests:
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            times[name] += await batch(clients[name], min(per_turn, requests - len(times[name])))
        turn += 1
    for client in clients.values():
        await client.aclose()
    return times


def machine_line(litellm_version: str) -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"LiteLLM {litellm_version}, load average {load}, {time.strftime('%Y-%m-%d %H:%M')}"
    )


def report(times: dict[str, list[float]], concurrency: int) -> None:
    direct = times["direct"]
    d50, d99 = percentile(direct, 50), percentile(direct, 99)
    print(f"\n## Concurrency {concurrency}, {len(direct)} requests per path\n")
    print(
        "| path | p50 ms | p99 ms | added p50 ms | added p99 ms | added p50 / LiteLLM's "
        "| paired median added ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    litellm_added = percentile(times["litellm"], 50) - d50
    for name, values in times.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        if name == "direct":
            print(f"| {LABELS[name]} | {p50:.2f} | {p99:.2f} | | | | |")
            continue
        added = p50 - d50
        ratio = f"{added / litellm_added:.2f}" if litellm_added > 0 else "n/a"
        # At concurrency 1 the i-th requests of the paths ran back to back: the median
        # of their differences is the least noisy figure.
        paired = (
            f"{statistics.median(t - d for d, t in zip(direct, values, strict=True)):.2f}"
            if concurrency == 1
            else ""
        )
        print(
            f"| {LABELS[name]} | {p50:.2f} | {p99:.2f} | **{added:.2f}** | {p99 - d99:.2f} "
            f"| {ratio} | {paired} |"
        )
    spine_added = percentile(times["spine"], 50) - d50
    if spine_added > 0:
        print(f"\nLiteLLM adds {litellm_added / spine_added:.1f}x what Spine's app adds (p50).")
    spread = statistics.pstdev(direct)
    print(f"(direct path: mean {statistics.fmean(direct):.2f} ms, stdev {spread:.2f} ms)")


if __name__ == "__main__":
    sys.exit(main())
