"""Cold start in two phases, with and without SnapStart's priming.

    uv run python tests/benchmarks/bench_snapstart.py [--runs 10]

Each run is a fresh process that does what a Lambda instance does:

- **init**: load the function's entry module (imports, settings, the app), and with
  SnapStart run its before-snapshot hook (`spine.snapstart.prime`). This is what the
  snapshot holds: paid once per published version with SnapStart, by every cold
  instance without it;
- **restore** (SnapStart only): the after-restore hook (`spine.snapstart.refresh`);
- **first event**: one real API Gateway event through the Lambda handler, against the
  embedded Postgres (a new connection, the key lookup, the usage row) and, for chat, an
  instant OpenAI-compatible upstream. This is what a restored instance pays.

The runtime's `snapshot_restore_py` is stood in by a module that records the hooks and
runs them where Lambda would. Modes and functions are interleaved per round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parents[1]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_gateway import (  # noqa: E402
    create_key,
    free_port,
    percentile,
    write_config,
)

ONE_INSTANCE = """
import json, sys, time, types, importlib.util
snapstart = sys.argv[3] == "snapstart"
hooks = {"before": [], "after": []}
if snapstart:
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_before_snapshot = hooks["before"].append
    runtime.register_after_restore = hooks["after"].append
    sys.modules["snapshot_restore_py"] = runtime
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("entry", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for hook in hooks["before"]:
    hook()
t1 = time.perf_counter()
for hook in hooks["after"]:
    hook()
t2 = time.perf_counter()
from spine_tools.local.runtime import LambdaContext
class Spec:
    function_name = "bench"; memory_mb = 1024
event = json.loads(sys.argv[2])
profile = None
if len(sys.argv) > 4:
    import cProfile
    profile = cProfile.Profile()
    profile.enable()
before = set(sys.modules)
result = module.handler(event, LambdaContext.for_invocation(Spec, time.monotonic() + 30))
t3 = time.perf_counter()
new_modules = sorted(set(sys.modules) - before)
if profile is not None:
    profile.disable()
    profile.dump_stats(sys.argv[4])
assert result["statusCode"] == 200, result
result = module.handler(event, LambdaContext.for_invocation(Spec, time.monotonic() + 30))
t4 = time.perf_counter()
print(json.dumps({"init_ms": (t1 - t0) * 1000, "restore_ms": (t2 - t1) * 1000,
                  "first_event_ms": (t3 - t2) * 1000, "warm_event_ms": (t4 - t3) * 1000,
                  "new_modules": new_modules}))
"""


def instance(
    entry: Path, event: dict[str, object], mode: str, profile: Path | None = None
) -> dict[str, Any]:
    """One fresh process: init (and priming), restore, two events; milliseconds, and
    the modules the first event imported."""
    extra = [str(profile)] if profile is not None else []
    out = subprocess.run(
        [sys.executable, "-c", ONE_INSTANCE, str(entry), json.dumps(event), mode, *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also write a cProfile of one primed chat instance's first event (pstats)",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="spine-bench-snapstart-"))
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "instant_openai.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    write_config(folder, f"http://127.0.0.1:{port}/v1")
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
    try:
        return run(args.runs, args.profile)
    finally:
        upstream.terminate()
        upstream.wait()
        from spine.storage import embedded

        embedded.stop(folder / "pgdata")


def run(runs: int, profile: Path | None) -> int:
    from tests.integration.gateway import Gateway

    from spine.settings import get_settings
    from spine.storage.migrate import ensure_database

    db_url = ensure_database(get_settings())
    os.environ["DATABASE_URL"] = db_url
    key = create_key(db_url)
    gateway = Gateway()
    chat_body = {"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]}
    cases = {
        "chat": (
            REPO / "functions/chat/app.py",
            gateway.request("POST", "/v1/chat/completions", json_body=chat_body, key=key).event,
        ),
        "models": (
            REPO / "functions/models/app.py",
            gateway.request("GET", "/v1/models", key=key).event,
        ),
    }
    gateway.close()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.monotonic()
    for _ in range(runs):
        for name, (entry, event) in cases.items():
            for mode in ("plain", "snapstart"):
                results.setdefault((name, mode), []).append(instance(entry, event, mode))
    report(results, runs, time.monotonic() - started)
    if profile is not None:
        entry, event = cases["chat"]
        instance(entry, event, "snapstart", profile)
    return 0


def report(results: dict[tuple[str, str], list[dict[str, Any]]], runs: int, seconds: float) -> None:
    print(f"{runs} fresh processes per row, {seconds:.0f} s in all; milliseconds, p50 (p90)")
    print("| function | mode | init | after restore | first event | second event |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (name, mode), rows in results.items():
        cells = []
        for key in ("init_ms", "restore_ms", "first_event_ms", "warm_event_ms"):
            values = [row[key] for row in rows]
            cells.append(f"{percentile(values, 50):.1f} ({percentile(values, 90):.1f})")
        print(f"| {name} | {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
