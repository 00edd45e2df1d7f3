"""Memory of a batch's finalizer on a large output: it must stream (a page of results
from Postgres, a part to S3), never hold the whole file.

    uv run python tests/benchmarks/bench_finalizer.py [--lines 50000]

A finalizing batch of N answered lines (~600 bytes of result each) is written to an
embedded Postgres; the real finalizer writes its output file to S3 (moto's server,
in its own process, so what it stores is not counted here). Reported: this process's
peak Python allocation during the finalizer (tracemalloc) against the size of the
file it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]
sys.path.insert(0, str(REPO))


def result_line(i: int) -> str:
    body = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "model": "gpt-bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x" * 300},
             "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 80, "total_tokens": 85},
    }  # fmt: skip
    return json.dumps(
        {
            "id": f"batch_req_{i}",
            "custom_id": f"req-{i}",
            "response": {"status_code": 200, "request_id": f"r{i}", "body": body},
            "error": None,
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="spine-bench-"))
    os.environ.update(
        {
            "SPINE_DATABASE__EMBEDDED_DIR": str(folder / "pgdata"),
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    import subprocess

    from bench_gateway import free_port

    from spine.storage import embedded

    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port)
        return run(args.lines)
    finally:
        moto.terminate()
        moto.wait()
        embedded.stop(folder / "pgdata")


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("moto's server did not start")


def run(lines: int) -> int:
    import boto3
    import psycopg

    from spine.aws.batch_objects import ObjectStore
    from spine.batches.finalize import finalize
    from spine.settings import get_settings
    from spine.storage import batches as store
    from spine.storage.db import Database
    from spine.storage.migrate import ensure_database

    db_url = ensure_database(get_settings())
    os.environ["DATABASE_URL"] = db_url
    boto3.client("s3").create_bucket(Bucket="bench-batches")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO batches (id, owner, credential, endpoint, input_file_id,"
            " completion_window, status, total, expires_at, finalizing_at)"
            " VALUES ('batch_bench', 'bench', 'api_key', '/v1/chat/completions', 'file_in',"
            " '24h', 'finalizing', %s, now() + interval '1 day', now())",
            (lines,),
        )
        with conn.cursor().copy(
            "COPY batch_lines (batch_id, line, custom_id, status, result) FROM STDIN"
        ) as copy:
            for i in range(lines):
                copy.write_row(("batch_bench", i, f"req-{i}", "done", result_line(i)))

    async def go() -> float:
        database = Database()
        batch = await store.get_batch(await database.connection(), None, "batch_bench")
        assert batch is not None
        started = time.perf_counter()
        await finalize(database, ObjectStore("bench-batches"), batch)
        return time.perf_counter() - started

    tracemalloc.start()
    seconds = asyncio.run(go())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    head = boto3.client("s3").head_object(
        Bucket="bench-batches", Key="files/batch_bench_output.jsonl"
    )
    size = int(head["ContentLength"])
    print(f"\n## Batch finalizer on {lines:,} answered lines\n")
    print("| measure | figure |\n| --- | ---: |")
    print(f"| output file written | {size / 2**20:.1f} MiB |")
    print(f"| Python peak allocation while finalizing | {peak / 2**20:.1f} MiB |")
    print(f"| peak / file | {peak / size:.2f} |")
    print(f"| time | {seconds:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
