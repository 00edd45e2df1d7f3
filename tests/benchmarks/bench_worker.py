"""Worker overhead benchmark: the Spine worker against llama-server straight, one run.

Measures, on one machine and in one run, aggregate generated tokens/s at several
concurrency levels and the p50 time to first token (TTFT), through the worker and
straight to a llama-server started with the same engine flags. Rounds interleave the two
targets (and alternate which goes first) so machine noise hits both alike.

Every request streams the same chat prompt with temperature 0, `max_tokens` fixed and
`ignore_eos` set (a llama-server sampling field the worker passes through), so each
request generates exactly `max_tokens` tokens; the script checks that from `usage`.

By default it starts everything itself, on loopback ports: a llama-server (argv from
`gpu_worker.engine.engine_argv`, so its flags are the worker's own) and `spine-worker`
with a one-model registry of the same engine settings, a bearer token and an audit log
(the production path). Or point it at running servers with --worker-url/--direct-url.

    uv run python tests/benchmarks/bench_worker.py                 # SmolLM2, CPU
    uv run python tests/benchmarks/bench_worker.py --rounds 5 --concurrency 1,4,8
    uv run python tests/benchmarks/bench_worker.py \\
        --worker-url http://127.0.0.1:8081 --direct-url http://127.0.0.1:8080 --token ...

Targets (the worker issue): worker >= 0.95x direct throughput, <= 5 ms added p50 TTFT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from gpu_worker.config import LLAMA_CPP_PYTHON_VERSION, cache_root
from gpu_worker.engine import engine_argv, free_port
from gpu_worker.paths import EngineFiles

from spine.registry.schema import EngineConfig, GgufSource

MODEL_ID = "bench-model"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = (
    "Write a detailed, step-by-step explanation of how a city water treatment plant "
    "turns river water into drinking water."
)
THROUGHPUT_TARGET = 0.95
TTFT_TARGET_MS = 5.0


@dataclass
class RequestResult:
    ttft_s: float
    tokens: int


@dataclass
class Sample:
    """What one target did at one concurrency level, summed over rounds."""

    tokens: int = 0
    wall_s: float = 0.0
    ttfts_s: list[float] = field(default_factory=list)
    round_rates: list[float] = field(default_factory=list)  # tokens/s of each round's batch
    short: int = 0  # requests that generated fewer tokens than asked

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    @property
    def ttft_p50_ms(self) -> float:
        return statistics.median(self.ttfts_s) * 1000 if self.ttfts_s else float("nan")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model: str


# --- one request -------------------------------------------------------------------------
async def stream_one(client: httpx.AsyncClient, target: Target, max_tokens: int) -> RequestResult:
    body = {
        "model": target.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    ttft: float | None = None
    counted = 0
    usage_tokens: int | None = None
    async with client.stream(
        "POST", f"{target.url}/v1/chat/completions", json=body, headers=target.headers
    ) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {response.text}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"{target.name}: stream error: {chunk['error']}")
            if chunk.get("usage"):
                usage_tokens = chunk["usage"].get("completion_tokens")
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    counted += 1
                    if ttft is None:
                        ttft = time.perf_counter() - start
    if ttft is None:
        raise RuntimeError(f"{target.name}: the stream carried no content")
    return RequestResult(ttft, usage_tokens if usage_tokens is not None else counted)


async def run_batch(
    client: httpx.AsyncClient, target: Target, concurrency: int, max_tokens: int, sample: Sample
) -> None:
    """`concurrency` requests at once; throughput counts the batch's whole wall time."""
    start = time.perf_counter()
    results = await asyncio.gather(
        *(stream_one(client, target, max_tokens) for _ in range(concurrency))
    )
    wall = time.perf_counter() - start
    sample.wall_s += wall
    sample.round_rates.append(sum(r.tokens for r in results) / wall)
    for result in results:
        sample.tokens += result.tokens
        sample.ttfts_s.append(result.ttft_s)
        sample.short += result.tokens < max_tokens


async def measure(
    targets: list[Target], levels: list[int], rounds: int, max_tokens: int
) -> dict[int, dict[str, Sample]]:
    results: dict[int, dict[str, Sample]] = {c: {t.name: Sample() for t in targets} for c in levels}
    timeout = httpx.Timeout(connect=10, read=600, write=30, pool=600)
    # A fresh loopback connection per request (the same small cost for both targets): a
    # pooled one can race the server closing it, which llama-server does after streams.
    limits = httpx.Limits(max_connections=max(levels) * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        for target in targets:  # warm-up: connections, prompt cache, page cache
            await run_batch(client, target, max(levels), 16, Sample())
        for concurrency in levels:
            for round_no in range(rounds):
                order = targets if round_no % 2 == 0 else list(reversed(targets))
                for target in order:
                    sample = results[concurrency][target.name]
                    try:
                        await run_batch(client, target, concurrency, max_tokens, sample)
                    except httpx.HTTPError as exc:
                        raise RuntimeError(f"{target.name} ({target.url}): {exc!r}") from exc
                print(
                    f"  c={concurrency} round {round_no + 1}/{rounds}: "
                    + ", ".join(
                        f"{t.name} {results[concurrency][t.name].tokens_per_s:.1f} tok/s"
                        for t in targets
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    return results


# --- starting the servers ----------------------------------------------------------------
def default_binary() -> Path:
    env = os.environ.get("SPINE_LLAMA_SERVER")
    if env:
        return Path(env)
    return cache_root() / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}" / "bin" / "llama-server"


async def wait_until_ready(
    url: str, headers: dict[str, str], process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 300
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                response = await client.get(url, headers=headers)
                if response.status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} was not ready within 300 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we created, SIGKILL after 15 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def started_servers(args: argparse.Namespace, workdir: Path) -> Iterator[list[Target]]:
    model = args.model.resolve()
    engine = EngineConfig(
        gguf=GgufSource(file=model.name),
        context_size=args.ctx,
        parallel=args.parallel,
        threads=args.threads,
        gpu_layers=args.gpu_layers,
    )
    direct_port, worker_port = free_port(), free_port()
    # The worker runs one engine with slots = parallel (balanced mode): the same argv.
    direct_argv = engine_argv(
        binary=args.llama_server,
        model_id=MODEL_ID,
        engine=engine,
        files=EngineFiles(model, None, ()),
        port=direct_port,
        slots=args.parallel,
    )
    registry = {
        "version": 1,
        "models": [
            {
                "id": MODEL_ID,
                "provider": "llamacpp",
                "model": MODEL_ID,
                "context_window": args.ctx,
                "capabilities": ["chat", "streaming"],
                "engine": engine.model_dump(exclude_defaults=True),
            }
        ],
    }
    models_yaml = workdir / "models.yaml"
    models_yaml.write_text(json.dumps(registry))  # JSON is YAML
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "SPINE_WORKER_TOKEN": token, "SPINE_CACHE_DIR": str(workdir)}
    worker_argv = [
        args.spine_worker, "--host", "127.0.0.1", "--port", str(worker_port),
        "--models", str(models_yaml), "--model-dir", str(model.parent),
        "--llama-server", str(args.llama_server), "--mode", "balanced",
        "--audit-log", str(workdir / "audit.jsonl"), "--log-level", "WARNING",
    ]  # fmt: skip
    logs = [(workdir / name).open("wb") for name in ("direct.log", "worker.log")]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for argv, log, extra_env in ((direct_argv, logs[0], None), (worker_argv, logs[1], env)):
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=extra_env, start_new_session=True
            )
            processes.append(process)
        auth = {"Authorization": f"Bearer {token}"}
        direct_url, worker_url = (
            f"http://127.0.0.1:{direct_port}",
            f"http://127.0.0.1:{worker_port}",
        )
        asyncio.run(wait_until_ready(f"{direct_url}/health", {}, processes[0]))
        asyncio.run(wait_until_ready(f"{worker_url}/ready", auth, processes[1]))
        yield [
            Target("worker", worker_url, auth, MODEL_ID),
            Target("direct", direct_url, {}, MODEL_ID),
        ]
    finally:
        for process in reversed(processes):
            stop(process)
        for log in logs:
            log.close()


# --- report ------------------------------------------------------------------------------
def report(results: dict[int, dict[str, Sample]], args: argparse.Namespace) -> str:
    lines = [
        "| concurrency | direct tok/s | worker tok/s | worker/direct | median round ratio "
        "| direct p50 TTFT ms | worker p50 TTFT ms | added p50 TTFT ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for concurrency, by_target in results.items():
        direct, worker = by_target["direct"], by_target["worker"]
        ratio = worker.tokens_per_s / direct.tokens_per_s if direct.tokens_per_s else float("nan")
        added = worker.ttft_p50_ms - direct.ttft_p50_ms
        # Each round's worker batch over the direct batch next to it: robust to a burst of
        # outside load that hits one round.
        paired = statistics.median(
            w / d for w, d in zip(worker.round_rates, direct.round_rates, strict=True) if d
        )
        lines.append(
            f"| {concurrency} | {direct.tokens_per_s:.1f} | {worker.tokens_per_s:.1f} "
            f"| {ratio:.3f} | {paired:.3f} | {direct.ttft_p50_ms:.1f} | {worker.ttft_p50_ms:.1f} "
            f"| {added:+.1f} |"
        )
    short = sum(s.short for by_target in results.values() for s in by_target.values())
    lines += [
        "",
        f"{args.rounds} rounds per level, targets interleaved; {args.max_tokens} tokens per "
        f"request (ignore_eos, temperature 0); engine -np {args.parallel}, -c {args.ctx} per "
        f"slot, threads {args.threads or 'default'}, gpu_layers {args.gpu_layers}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; 1-min load average "
        f"{args.load_before:.2f} before, {os.getloadavg()[0]:.2f} after (outside load "
        "skews the figures).",
        f"Targets: worker/direct >= {THROUGHPUT_TARGET}, added p50 TTFT <= {TTFT_TARGET_MS} ms.",
        "Above the slot count, TTFT includes the wait for a free slot, and its p50 can fall "
        "between the admitted and the queued requests.",
    ]
    if short:
        lines.append(f"WARNING: {short} requests generated fewer than {args.max_tokens} tokens.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker-url", help="a running worker (else one is started)")
    p.add_argument("--direct-url", help="a running llama-server (else one is started)")
    p.add_argument("--token", default=os.environ.get("SPINE_WORKER_TOKEN"), help="worker token")
    p.add_argument("--model-name", default=None, help="model id to request (running servers)")
    p.add_argument("--concurrency", default="1,4,8", help="comma-separated levels")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--llama-server", type=Path, default=default_binary())
    p.add_argument(
        "--model", type=Path, default=cache_root() / "models" / DEFAULT_MODEL_FILE,
        help="GGUF file (default: the bundled SmolLM2 in the cache; fetch_model.sh puts it)",
    )  # fmt: skip
    p.add_argument("--parallel", type=int, default=4, help="engine slots (-np)")
    p.add_argument("--ctx", type=int, default=4096, help="context per slot")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: auto)")
    p.add_argument("--gpu-layers", type=int, default=0)
    p.add_argument("--spine-worker", default=shutil.which("spine-worker") or "spine-worker")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs folder")
    args = p.parse_args(argv)
    args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    if bool(args.worker_url) != bool(args.direct_url):
        p.error("--worker-url and --direct-url go together")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM, and SIGINT even where a shell started us with it ignored, unwind through the
    # `finally` that stops the servers this script started.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    args.load_before = os.getloadavg()[0]
    print(
        f"bench_worker: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, levels {args.levels}, "
        f"{args.rounds} rounds, {args.max_tokens} tokens per request",
        file=sys.stderr,
    )
    if args.worker_url:
        auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        name = args.model_name or MODEL_ID
        targets = [
            Target("worker", args.worker_url.rstrip("/"), auth, name),
            Target("direct", args.direct_url.rstrip("/"), {}, name),
        ]
        results = asyncio.run(measure(targets, args.levels, args.rounds, args.max_tokens))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="spine-bench-"))
        try:
            with started_servers(args, workdir) as targets:
                results = asyncio.run(measure(targets, args.levels, args.rounds, args.max_tokens))
        finally:
            if args.keep_logs:
                print(f"logs kept in {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
