"""Soak: steady load on the local stack for N minutes; the emulator process's memory
(RSS) and open files at the start and the end, errors, and usage rows against answers.

    uv run python tests/benchmarks/soak.py [--minutes 5] [--concurrency 4]

The emulator (`spine local`, every function of template.yaml) serves an embedded
Postgres and the instant OpenAI-compatible upstream, each in its own process. Clients
send a mix of calls without pause: chat (JSON and streamed), text completions, model
listing, the usage report and estimate-cost. Growth of RSS or open files over the run
is what a leak looks like; every answered model call must have its usage row.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parents[1]))

from tests.benchmarks.bench_gateway import create_key, free_port, write_config  # noqa: E402
from tests.benchmarks.bench_ttfc import start_emulator, wait_until_serving  # noqa: E402

MESSAGES = [{"role": "user", "content": "hi"}]
CALLS = (
    ("POST", "/chat/completions", {"model": "gpt-bench", "messages": MESSAGES}),
    ("POST", "/chat/completions", {"model": "gpt-bench", "messages": MESSAGES, "stream": True}),
    ("POST", "/completions", {"model": "gpt-bench", "prompt": "hi"}),
    ("GET", "/models", None),
    ("GET", "/usage", None),
    ("POST", "/estimate-cost", {"model": "gpt-bench", "messages": MESSAGES}),
)
MODEL_CALLS = {0, 1, 2}  # indexes of CALLS that write a usage row


def process_figures(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of a process, from /proc."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def load(base_url: str, key: str, until: float, tally: Counter[str], lock: threading.Lock) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    index = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        while time.monotonic() < until:
            which = index % len(CALLS)
            method, path, body = CALLS[which]
            index += 1
            try:
                response = client.request(method, path, json=body)
                outcome = "ok" if response.status_code < 400 else f"http_{response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            with lock:
                tally[outcome] += 1
                if outcome == "ok" and which in MODEL_CALLS:
                    tally["model_calls_answered"] += 1


def run_clients(base_url: str, key: str, seconds: float, concurrency: int) -> Counter[str]:
    tally: Counter[str] = Counter()
    lock = threading.Lock()
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=load, args=(base_url, key, until, tally, lock))
        for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="spine-soak-"))
    upstream_port, api_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "instant_openai.py"), str(upstream_port), "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    write_config(
        folder,
        f"http://127.0.0.1:{upstream_port}/v1",
        model_extra="capabilities: [chat, completions, streaming]",
    )
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
    try:
        from spine.settings import get_settings
        from spine.storage.migrate import ensure_database

        db_url = ensure_database(get_settings())
        key = create_key(db_url)
        emulator = start_emulator(folder, api_port, db_url)
        base_url = f"http://127.0.0.1:{api_port}/v1"
        wait_until_serving(base_url, key)
        # A short round at the same concurrency first, so the start figures are of a
        # warm process with its containers and connections made.
        run_clients(base_url, key, 15, args.concurrency)
        time.sleep(1)
        start = process_figures(emulator.pid)
        rows_before = usage_rows(db_url)
        began = time.monotonic()
        tally = run_clients(base_url, key, args.minutes * 60, args.concurrency)
        elapsed = time.monotonic() - began
        time.sleep(1)  # the last streams' rows are written as they end
        end = process_figures(emulator.pid)
        rows = usage_rows(db_url) - rows_before
        report(args, tally, elapsed, start, end, rows)
        errors = sum(n for name, n in tally.items() if name not in ("ok", "model_calls_answered"))
        return 0 if errors == 0 and rows == tally["model_calls_answered"] else 1
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=30)
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")


def usage_rows(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM usage_events").fetchone()
    return int(row[0]) if row else 0


def report(
    args: argparse.Namespace,
    tally: Counter[str],
    elapsed: float,
    start: tuple[int, int],
    end: tuple[int, int],
    rows: int,
) -> None:
    total = sum(n for name, n in tally.items() if name != "model_calls_answered")
    print(f"soak: {args.minutes:g} min, {args.concurrency} clients, {total} requests")
    print(f"  throughput        {total / elapsed:.0f} requests/s")
    print(f"  outcomes          {dict(sorted(tally.items()))}")
    print(f"  usage rows        {rows} for {tally['model_calls_answered']} answered model calls")
    print(f"  emulator RSS      {start[0] / 1024:.1f} MiB -> {end[0] / 1024:.1f} MiB")
    print(f"  open files        {start[1]} -> {end[1]}")


if __name__ == "__main__":
    sys.exit(main())
