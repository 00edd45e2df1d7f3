"""First load of the admin app's dashboard in headless Chromium against the local stack.

    make bench-admin      # or: uv run python tests/benchmarks/bench_admin.py [--runs 10]

Starts an embedded Postgres (or uses DATABASE_URL) and `spine local` in its own
process with a one-model configuration, records some usage so the dashboard has
numbers and charts, then loads `/admin/` in a new browser context per run (an empty
cache, the credential already in session storage, as after signing in) and reports:

- JavaScript transferred: the bytes on the wire of every script of the first load
  (gzip, as `spine local` and CloudFront serve them), and the same uncompressed;
- time to interactive: from navigation start to the later of (a) the dashboard's
  totals drawn from `GET /v1/usage` and (b) the end of the last long task (> 50 ms)
  on the main thread, both read from the page's own clock (`performance.now()`).

The issue's budget: at most 300 KB of compressed JavaScript, at most 1 s to
interactive. The command exits 1 when a median is over budget.
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
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_gateway import free_port, percentile, write_config  # noqa: E402

CHROMIUM = os.environ.get("SPINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
JS_BUDGET_BYTES = 300 * 1000
TTI_BUDGET_MS = 1000.0

# Runs before the app: the credential (as after signing in) and a long-task observer.
INIT_SCRIPT = """
sessionStorage.setItem("spine.credential", %s);
window.__lastLongTaskEnd = 0;
new PerformanceObserver((list) => {
  for (const task of list.getEntries()) {
    window.__lastLongTaskEnd = Math.max(window.__lastLongTaskEnd, task.startTime + task.duration);
  }
}).observe({ type: "longtask", buffered: true });
"""

TOTALS_DRAWN = """() => {
  const totals = document.querySelector('[data-testid="total-requests"]');
  return totals && totals.textContent !== "0" ? performance.now() : null;
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not (REPO / "admin" / "dist" / "index.html").is_file():
        print("admin/dist is missing: run `make admin`", file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="spine-bench-admin-"))
    upstream_port, api_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "instant_openai.py"), str(upstream_port), "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    write_config(folder, f"http://127.0.0.1:{upstream_port}/v1", model_extra="capabilities: [chat]")
    os.environ.update(
        {
            "SPINE_CONFIG": str(folder / "config.toml"),
            "SPINE_MODELS": str(folder / "models.yaml"),
            "SPINE_DATABASE__EMBEDDED_DIR": str(folder / "pgdata"),
        }
    )
    emulator: subprocess.Popen[bytes] | None = None
    try:
        from bench_ttfc import start_emulator

        from spine.settings import get_settings
        from spine.storage.migrate import ensure_database

        db_url = ensure_database(get_settings())
        key = admin_key(db_url)
        emulator = start_emulator(folder, api_port, db_url)
        base = f"http://127.0.0.1:{api_port}"
        record_usage(base, key)
        results = [load_once(base, key) for _ in range(args.runs + 1)][1:]  # first: warm-up
        return report(results)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=30)
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")


def admin_key(db_url: str) -> str:
    import asyncio

    import psycopg

    from spine.storage.api_keys import create_key

    async def go() -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            key, _ = await create_key(
                conn, "bench-admin", prefix="sk-spine-", principal="bench", scopes=["admin"]
            )
            return key

    return asyncio.run(go())


def record_usage(base: str, key: str, timeout: float = 120) -> None:
    """A few calls, once the emulator answers, so the dashboard draws real numbers."""
    deadline = time.monotonic() + timeout
    sent = 0
    while sent < 5:
        try:
            response = httpx.post(
                f"{base}/v1/chat/completions",
                json={"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        if response.status_code != 200:
            raise RuntimeError(f"the gateway answered {response.status_code}: {response.text}")
        sent += 1


def load_once(base: str, key: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            context.add_init_script(INIT_SCRIPT % json.dumps(key))
            page = context.new_page()
            scripts: list[Any] = []
            page.on(
                "requestfinished",
                lambda request: request.resource_type == "script" and scripts.append(request),
            )
            page.goto(f"{base}/admin/")
            drawn = float(page.wait_for_function(TOTALS_DRAWN, polling="raf").json_value())
            page.wait_for_timeout(300)  # long tasks that follow the first drawing
            last_long_task = float(page.evaluate("window.__lastLongTaskEnd"))
            navigation = page.evaluate(
                "JSON.stringify(performance.getEntriesByType('navigation')[0])"
            )
            wire = sum(r.sizes()["responseBodySize"] for r in scripts)
            raw = sum(len(r.response().body()) for r in scripts if r.response())
            context.close()
        finally:
            browser.close()
    return {
        "js_wire_bytes": wire,
        "js_raw_bytes": raw,
        "js_files": len(scripts),
        "totals_drawn_ms": drawn,
        "tti_ms": max(drawn, last_long_task),
        "dom_content_loaded_ms": json.loads(navigation)["domContentLoadedEventEnd"],
    }


def report(results: list[dict[str, Any]]) -> int:
    def column(name: str) -> list[float]:
        return [float(r[name]) for r in results]

    wire = statistics.median(column("js_wire_bytes"))
    raw = statistics.median(column("js_raw_bytes"))
    tti = column("tti_ms")
    print(f"runs: {len(results)} (after one warm-up), Chromium at {CHROMIUM}")
    print(f"first-load JavaScript: {results[0]['js_files']} file(s), {wire / 1000:.1f} KB on the")
    print(
        f"  wire (gzip), {raw / 1000:.1f} KB uncompressed; budget {JS_BUDGET_BYTES / 1000:.0f} KB"
    )
    for name in ("dom_content_loaded_ms", "totals_drawn_ms", "tti_ms"):
        values = column(name)
        print(
            f"{name}: median {statistics.median(values):.0f}, p90 {percentile(values, 90):.0f},"
            f" max {max(values):.0f}"
        )
    print(f"time to interactive budget: {TTI_BUDGET_MS:.0f} ms")
    over = wire > JS_BUDGET_BYTES or statistics.median(tti) > TTI_BUDGET_MS
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
