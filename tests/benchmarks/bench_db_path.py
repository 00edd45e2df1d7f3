"""Per-request database cost on the chat path: API-key auth + rate-limit/budget
admission + (after the provider call) settlement and the usage row.

    uv run python tests/benchmarks/bench_db_path.py [--requests 2000]

Runs the same storage and limit functions the chat function runs, in order, on one
connection (as a warm Lambda container does), against an embedded Postgres (or
DATABASE_URL). Round trips are counted by a cursor class that counts `execute`
calls: every statement here is one round trip (autocommit, no pipelining). Two
configurations: no limits configured, and every limit on (rpm, tpm, daily and
monthly budget, a per-model rpm/tpm), each without and with a chat session
(`session_id`: the session and its history loaded in one statement before the
provider call, the user turn and the reply stored in one statement after it; the
sessions hold 20 to 40 turns).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[2]


class CountingCursor(psycopg.AsyncCursor[Any]):
    executes = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.executes += 1
        return await super().execute(*args, **kwargs)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


SESSIONS = 100
SESSION_TURNS = 20
# Loaded per request at most ([limits] max_messages, the default).
HISTORY_LIMIT = 2048


async def one_request(
    conn: Any, plaintext: str, limits: Any, entry: Any, session: Any = None
) -> None:
    from spine.limits.admission import admit_api_key_request, settlement
    from spine.storage import sessions
    from spine.storage.limits import settle_and_record_usage
    from spine.storage.usage import UsageRecord

    # The key lookup and the admission in one statement, as the chat function runs
    # them (spine.api.deps.call_context).
    principal, reservation = await admit_api_key_request(
        conn, plaintext, limits, entry, tokens=300, cost_usd=Decimal("0.0001")
    )
    if session is not None:
        loaded = await sessions.load_session(
            conn, session, SESSION_ID[session], history=HISTORY_LIMIT
        )
        assert loaded is not None
    # The provider call happens here; then the settlement and the usage row are one
    # statement (spine.ledger.recorder.SettlingRecorder).
    adjustments = (
        settlement(reservation, tokens=120, cost_usd=Decimal("0.00005"))
        if reservation is not None
        else []
    )
    await settle_and_record_usage(
        conn,
        adjustments,
        UsageRecord(
            request_id=f"req_{uuid.uuid4().hex}",
            api_key_id=principal.api_key_id,
            principal=principal.subject,
            tenant=None,
            model="gpt-bench",
            resolved_model="gpt-bench",
            provider="openai",
            deployment="default",
            endpoint="chat.completions",
            status="ok",
            http_status=200,
            error_code=None,
            prompt_tokens=100,
            completion_tokens=20,
            cached_tokens=0,
            reasoning_tokens=0,
            cost_usd=Decimal("0.00005"),
            latency_ms=1.0,
            cache_hit=False,
            prompt_version_id=None,
            metadata={},
        ),
    )
    if session is not None:
        stored = await sessions.append_messages(
            conn, session, SESSION_ID[session], TURN, request_id=f"req_{uuid.uuid4().hex}"
        )
        assert len(stored) == 2


SESSION_ID: dict[Any, uuid.UUID] = {}
TURN: list[Any] = []


async def create_sessions(conn: Any) -> list[Any]:
    """SESSIONS sessions of SESSION_TURNS turns each, one owner per session."""
    from spine.storage import sessions
    from spine.storage.owner import Owner

    TURN[:] = [
        sessions.NewMessage(role="user", content="What is the capital of France? " * 4, tokens=30),
        sessions.NewMessage(
            role="assistant", content="The capital of France is Paris. " * 6, tokens=42
        ),
    ]
    owners = []
    for i in range(SESSIONS):
        owner = Owner(tenant="bench", subject=f"user-{i}")
        row = await sessions.create_session(
            conn, owner, title="t", model="gpt-bench", system_prompt="Be brief."
        )
        SESSION_ID[owner] = row.id
        for _ in range(SESSION_TURNS):
            await sessions.append_messages(conn, owner, row.id, TURN, request_id="seed")
        owners.append(owner)
    return owners


async def measure(
    db_url: str, requests: int, *, limited: bool, with_session: bool
) -> dict[str, float]:
    from spine.registry.schema import ModelEntry
    from spine.settings import LimitsSettings
    from spine.storage.api_keys import create_key

    conn = await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, prepare_threshold=None, cursor_factory=CountingCursor
    )
    plaintext, _ = await create_key(conn, "bench", prefix="sk-spine-")
    if limited:
        limits = LimitsSettings(
            default_rpm=10**9, default_tpm=10**12, daily_budget_usd=1e9, monthly_budget_usd=1e9
        )
        model_limits = {"rpm": 10**9, "tpm": 10**12}
    else:
        limits, model_limits = LimitsSettings(), {}
    entry = ModelEntry.model_validate(
        {
            "id": "gpt-bench",
            "provider": "openai",
            "model": "m",
            "context_window": 8000,
            "pricing": {"input": 0.15, "output": 0.6},
            "limits": model_limits,
        }
    )
    owners = await create_sessions(conn) if with_session else [None]
    for i in range(50):  # warm up
        await one_request(conn, plaintext, limits, entry, owners[i % len(owners)])
    CountingCursor.executes = 0
    timings = []
    for i in range(requests):
        session = owners[i % len(owners)]
        started = time.perf_counter()
        await one_request(conn, plaintext, limits, entry, session)
        timings.append((time.perf_counter() - started) * 1000)
    await conn.close()
    return {
        "round_trips": CountingCursor.executes / requests,
        "p50_ms": statistics.median(timings),
        "p99_ms": percentile(timings, 99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "shared"))
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("SPINE_DATABASE__EMBEDDED_DIR", str(Path(folder) / "pgdata"))
        from spine.settings import get_settings
        from spine.storage import embedded
        from spine.storage.migrate import ensure_database

        try:
            db_url = ensure_database(get_settings())
            for with_session in (False, True):
                for limited in (False, True):
                    result = asyncio.run(
                        measure(db_url, args.requests, limited=limited, with_session=with_session)
                    )
                    label = "every limit on" if limited else "no limits configured"
                    label += " + session" if with_session else ""
                    print(
                        f"{label:32}: {result['round_trips']:.2f} round trips/request, "
                        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
                        f"({args.requests} requests)"
                    )
        finally:
            embedded.stop(Path(folder) / "pgdata")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
