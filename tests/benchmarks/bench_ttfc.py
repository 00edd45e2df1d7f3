"""Time to first chunk of a streamed chat completion: through the local emulator
versus straight to the provider.

    uv run python tests/benchmarks/bench_ttfc.py [--requests 1000]

Everything runs on this machine, each server in its own process: an embedded Postgres
(or DATABASE_URL), the instant OpenAI-compatible upstream (`instant_openai.py`, which
flushes its first chunk as soon as it has read the request), and `spine local` serving
template.yaml, whose chat function streams the way Lambda Web Adapter streams it
deployed. The official `openai` client streams the same request both ways, the two
paths alternating request by request so machine noise hits them alike; the time is
from sending the request to the SDK yielding the first chunk. Each stream is then read
to its end (the gateway writes its usage row there) before the next request starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_gateway import create_key, free_port, percentile, write_config  # noqa: E402

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="per path")
    parser.add_argument("--warmup", type=int, default=50, help="per path, not counted")
    parser.add_argument(
        "--rest-after-ms",
        type=float,
        default=0.0,
        help="the upstream sends the rest of each stream this long after its first chunk "
        "(as a model generates; default 0: all at once)",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="spine-bench-ttfc-"))
    upstream_port, api_port, function_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            str(BENCH_DIR / "instant_openai.py"),
            str(upstream_port),
            str(args.rest_after_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    write_config(folder, upstream_url, model_extra="capabilities: [chat, streaming]")
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
    emulator: subprocess.Popen[bytes] | None = None
    function: subprocess.Popen[bytes] | None = None
    try:
        from spine.settings import get_settings
        from spine.storage.migrate import ensure_database

        db_url = ensure_database(get_settings())
        key = create_key(db_url)
        emulator = start_emulator(folder, api_port, db_url)
        function = start_function_app(folder, function_port, db_url)
        paths = {
            "direct": (upstream_url, "sk-bench"),
            "emulator": (f"http://127.0.0.1:{api_port}/v1", key),
            "function": (f"http://127.0.0.1:{function_port}/v1", key),
        }
        for url, api_key in list(paths.values())[1:]:
            wait_until_serving(url, api_key)
        times = measure(paths, args.requests, args.warmup)
        report(times, args.rest_after_ms)
        return 0
    finally:
        for process in (emulator, function):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")


def start_emulator(folder: Path, port: int, db_url: str) -> subprocess.Popen[bytes]:
    """`spine local` in its own process, with the benchmark's configuration overriding
    the template's (as `sam local start-api --env-vars` would)."""
    overrides = {
        "SPINE_CONFIG": str(folder / "config.toml"),
        "SPINE_MODELS": str(folder / "models.yaml"),
        "SPINE_SERVICE__ENVIRONMENT": "test",
        "DATABASE_URL": db_url,
        "BENCH_UPSTREAM_KEY": "sk-bench",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    env_vars = folder / "env.json"
    env_vars.write_text(json.dumps({"Parameters": overrides}))
    log = (folder / "emulator.log").open("wb")
    command = [sys.executable, "-m", "spine_tools.cli", "local", "--port", str(port)]
    command += ["--template", str(REPO / "template.yaml"), "--env-vars", str(env_vars)]
    return subprocess.Popen(
        [*command, "--warm-containers", "EAGER"],
        cwd=REPO,
        env={**os.environ, **overrides},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def start_function_app(folder: Path, port: int, db_url: str) -> subprocess.Popen[bytes]:
    """The chat function's app under uvicorn as functions/chat/run.sh starts it behind
    Lambda Web Adapter, without the emulator: the function's own share of the time."""
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SPINE_SERVICE__ENVIRONMENT": "test",
        "PYTHONPATH": str(REPO / "shared"),
    }
    log = (folder / "function.log").open("wb")
    command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--no-access-log", "--timeout-keep-alive", "300", "app:app"],
        cwd=REPO / "functions" / "chat",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_until_serving(base_url: str, key: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(
                f"{base_url}/chat/completions",
                json={"model": "gpt-bench", "messages": MESSAGES, "stream": True},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            if response.status_code == 200 and response.text.endswith("data: [DONE]\n\n"):
                return
            raise RuntimeError(f"{base_url} answered {response.status_code}: {response.text!r}")
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def measure(
    paths: dict[str, tuple[str, str]], requests: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds to the first chunk on each path; the paths take turns request by
    request, starting from a different one each time, so none always follows another."""
    from openai import OpenAI

    clients = {
        name: OpenAI(base_url=url, api_key=key, max_retries=0) for name, (url, key) in paths.items()
    }

    def first_chunk_ms(client: OpenAI) -> float:
        started = time.perf_counter()
        stream = client.chat.completions.create(model="gpt-bench", messages=MESSAGES, stream=True)
        chunks = iter(stream)
        first = next(chunks)
        elapsed = (time.perf_counter() - started) * 1000
        assert first.choices and first.choices[0].delta.role == "assistant", first
        rest = list(chunks)  # read to the end: the gateway's usage row is written there
        assert "".join(c.choices[0].delta.content or "" for c in rest if c.choices) == "ok"
        return elapsed

    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for index in range(warmup + requests):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            ms = first_chunk_ms(clients[name])
            if index >= warmup:
                times[name].append(ms)
    for client in clients.values():
        client.close()
    return times


LABELS = {
    "direct": "openai client straight to the upstream",
    "emulator": "through `spine local` (the emulator) and the chat function",
    "function": "through the chat function's app under uvicorn (no emulator)",
}


def report(times: dict[str, list[float]], rest_after_ms: float) -> None:
    direct = times["direct"]
    print(f"\n## Time to first chunk, {len(direct)} streamed requests per path")
    print(f"(the rest of each stream {rest_after_ms:g} ms after its first chunk)\n")
    print("| path | p50 ms | p99 ms | added p50 ms | added p99 ms | paired median ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in times.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        if name == "direct":
            print(f"| {LABELS[name]} | {p50:.2f} | {p99:.2f} | | | |")
            continue
        added_p50 = p50 - percentile(direct, 50)
        added_p99 = p99 - percentile(direct, 99)
        # Each request's pair was measured back to back: the least noisy difference.
        paired = statistics.median(t - d for d, t in zip(direct, values, strict=True))
        print(
            f"| {LABELS[name]} | {p50:.2f} | {p99:.2f} | **{added_p50:.2f}** "
            f"| {added_p99:.2f} | {paired:.2f} |"
        )
    added = percentile(times["emulator"], 50) - percentile(direct, 50)
    print(
        f"\ntarget: <= 5 ms added p50 through the emulator -- {'met' if added <= 5 else 'NOT met'}"
    )


if __name__ == "__main__":
    sys.exit(main())
