"""One Postgres connection per warm container.

A Lambda container serves one event at a time and keeps its event loop between
events (Mangum: one loop per thread), so the connection is cached per running event
loop. The local emulator runs several "containers" as threads in one process, each
with its own loop, and gets one connection each. In production a pooler (RDS Proxy,
Supavisor) sits in front, so thousands of containers do not mean thousands of
server backends.

Connections are in autocommit mode: a single statement commits by itself, and code
that needs several statements to be atomic says so with `transaction()`. Since the
connection is shared by everything on its loop, a loop must run one logical request
at a time (Lambda's model); `transaction()` serializes transactions on the loop.

Failures to reach the server become `ServiceUnavailableError` (HTTP 503) with a
"database unavailable: ..." message, never a raw driver traceback.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

import psycopg
from psycopg.rows import TupleRow

from spine.errors import ServiceUnavailableError
from spine.settings import get_settings
from spine.storage import embedded

Connection: TypeAlias = psycopg.AsyncConnection[TupleRow]
T = TypeVar("T")

# A container frozen between events (or idle behind a proxy) may hold a connection
# the server or proxy has since dropped, and psycopg only learns that on the next
# query. Past this idle time a `SELECT 1` checks it before handing it out.
IDLE_CHECK_SECONDS = 30.0
_APPLICATION_NAME = "spine"


@dataclass
class _Slot:
    """The connection of one event loop."""

    conn: Connection | None = None
    connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    transaction_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = 0.0


@dataclass
class _State:
    url: str | None = None  # None: resolved from settings on each (re)connect
    connect_timeout: float | None = None  # None: settings.database.connect_timeout_seconds
    slots: dict[asyncio.AbstractEventLoop, _Slot] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def configure(url: str | None = None, *, connect_timeout: float | None = None) -> None:
    """Point the module at `url` (None: DATABASE_URL, the secret, or the embedded
    server, from settings). Closes the cached connections."""
    reset()
    _state.url = url
    _state.connect_timeout = connect_timeout


def reset() -> None:
    """Forget every cached connection, closing it (tests; configuration changes).

    `AsyncConnection.close()` does no I/O: it only finishes the libpq handle, which
    is done here directly, so connections of other loops (or of closed ones) are
    closed from any thread. Not for use while those loops are running queries.
    """
    with _state.guard:
        slots = list(_state.slots.values())
        _state.slots.clear()
    for slot in slots:
        if slot.conn is not None and not slot.conn.closed:
            slot.conn.pgconn.finish()


# Seconds a client is told to wait after a 503 for the database (a restart or
# failover takes a few).
RETRY_AFTER_SECONDS = 2

# libpq's messages name the host or socket path, the user and the database: they go
# to the log, and the client (and the CLI) see one of these causes instead.
_CAUSES = (
    ("refused", "connection refused"),
    ("no such file or directory", "no server is listening"),
    ("terminating connection", "the server shut the connection down"),
    ("shutting down", "the server is shutting down"),
    ("starting up", "the server is starting up"),
    ("authentication failed", "authentication failed"),
    ("does not exist", "the database or role does not exist"),
    ("too many", "too many connections"),
)


def unavailable(exc: BaseException) -> ServiceUnavailableError:
    """The 503 for a driver error, naming its cause without the server's address,
    user or password (libpq's message stays in `__cause__`, which the HTTP layer
    logs)."""
    lowered = str(exc).lower()
    if isinstance(exc, TimeoutError | psycopg.errors.ConnectionTimeout):
        reason = "connection timed out"
    elif isinstance(exc, psycopg.ProgrammingError):
        # An invalid connection string: libpq quotes pieces of it, which may include
        # the password, so say only what is wrong.
        reason = "invalid connection string (check DATABASE_URL)"
    else:
        reason = next((cause for word, cause in _CAUSES if word in lowered), "connection lost")
    error = ServiceUnavailableError(
        f"database unavailable: {reason}",
        code="database_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
    error.__cause__ = exc
    return error


def as_service_error(exc: BaseException) -> ServiceUnavailableError | None:
    """The 503 for an error of the database link that reached the HTTP layer (a
    statement on a connection that died), else None. Installed by spine.api.app."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return unavailable(exc)
    return None


async def connect(url: str, *, connect_timeout: float) -> Connection:
    """A new autocommit connection to `url`; the caller closes it.

    Server-side prepared statements are off: transaction-mode poolers (RDS Proxy,
    Supavisor, pgbouncer) hand each transaction to any backend, where a statement
    prepared on another one does not exist.
    """
    # libpq counts whole seconds, at least 2; the outer timeout also bounds the DNS
    # lookup, which psycopg's own timeout does not cover.
    seconds = max(2, math.ceil(connect_timeout))
    try:
        async with asyncio.timeout(seconds + 1):
            return await psycopg.AsyncConnection.connect(
                url,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=seconds,
                application_name=_APPLICATION_NAME,
            )
    except (psycopg.Error, TimeoutError, OSError) as exc:
        raise unavailable(exc) from exc


async def connection() -> Connection:
    """This loop's connection, (re)connected when missing, closed or broken."""
    slot = _slot()
    async with slot.connect_lock:
        conn = slot.conn
        if conn is not None and not conn.closed and _idle_for(slot) > IDLE_CHECK_SECONDS:
            await _check_alive(conn)
        if conn is None or conn.closed:
            slot.conn = conn = await connect(await _url(), connect_timeout=_timeout())
        slot.last_used = time.monotonic()
        return conn


async def run(operation: Callable[[Connection], Awaitable[T]]) -> T:
    """Run `operation` on this loop's connection; if the connection turns out to be
    broken (server restart, proxy timeout), reconnect and run it once more.

    Only for idempotent operations: a statement that failed because the link broke
    may or may not have been applied.
    """
    conn = await connection()
    try:
        return await operation(conn)
    except psycopg.OperationalError as exc:
        if not conn.broken:
            raise  # the server answered; the connection is fine
        first = exc
    conn = await connection()
    try:
        return await operation(conn)
    except psycopg.OperationalError as exc:
        if conn.broken:
            raise unavailable(exc) from first
        raise


@asynccontextmanager
async def transaction() -> AsyncIterator[Connection]:
    """`async with db.transaction() as conn:` several statements, all or nothing.

    Do not nest it (it holds this loop's transaction lock); for a savepoint inside,
    use `conn.transaction()` on the connection it gives.
    """
    slot = _slot()
    async with slot.transaction_lock:
        conn = await connection()
        async with conn.transaction():
            yield conn


async def ping() -> None:
    """Raise `ServiceUnavailableError` unless the database answers."""

    async def select_one(conn: Connection) -> None:
        await conn.execute("SELECT 1")

    try:
        await run(select_one)
    except psycopg.Error as exc:
        raise unavailable(exc) from exc


async def close() -> None:
    """Close this loop's connection (shutdown)."""
    loop = asyncio.get_running_loop()
    with _state.guard:
        slot = _state.slots.pop(loop, None)
    if slot is not None and slot.conn is not None:
        await slot.conn.close()


def _slot() -> _Slot:
    loop = asyncio.get_running_loop()
    with _state.guard:
        slot = _state.slots.get(loop)
        if slot is None:
            # Threads come and go in the emulator; drop connections of dead loops.
            for old in [lp for lp in _state.slots if lp.is_closed()]:
                stale = _state.slots.pop(old)
                if stale.conn is not None and not stale.conn.closed:
                    stale.conn.pgconn.finish()
            slot = _state.slots[loop] = _Slot()
        return slot


def _idle_for(slot: _Slot) -> float:
    return time.monotonic() - slot.last_used


async def _check_alive(conn: Connection) -> None:
    try:
        await conn.execute("SELECT 1")
    except psycopg.Error:
        # Leaves it closed; the caller reconnects.
        await conn.close()


def _timeout() -> float:
    if _state.connect_timeout is not None:
        return _state.connect_timeout
    return get_settings().database.connect_timeout_seconds


async def _url() -> str:
    if _state.url is not None:
        return _state.url
    # Resolved on every (re)connect so a rotated secret is picked up; in a thread
    # because the first call may start the embedded server or fetch a secret.
    return await asyncio.to_thread(embedded.database_url, get_settings())
