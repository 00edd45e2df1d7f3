"""`spine migrate`, `spine maintenance` and `spine keys create|list|revoke|limits`.

The database is DATABASE_URL when set, else the embedded server (started for the
command and stopped when it exits, unless another process such as `make dev` still
uses it). Results go to stdout, problems to stderr; exit 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from spine.errors import ConfigError, SpineError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from spine.settings import Settings

# Storage modules are imported inside the handlers: building the parser must not
# import psycopg for `spine models validate`.

T = TypeVar("T")


class _CommandError(Exception):
    """A problem the user can fix; printed as one line."""


def register(subparsers: Any) -> None:
    migrate = subparsers.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(handler=_migrate)

    maintenance = subparsers.add_parser(
        "maintenance",
        help="delete expired limit windows and cache entries, and usage past retention",
    )
    maintenance.set_defaults(handler=_maintenance)

    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="create a key; it is shown only once")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--scopes",
        nargs="+",
        default=[],
        metavar="SCOPE",
        help="scopes granted (space- or comma-separated)",
    )
    create.add_argument("--tier", default="standard", help="limits tier (default: standard)")
    create.add_argument("--principal", default=None, help="identity the key acts as")
    create.add_argument("--tenant", default=None, help="tenant the key belongs to")
    create.add_argument("--quiet", "-q", action="store_true", help="print only the key")
    create.set_defaults(handler=_create)

    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--active", action="store_true", help="hide revoked keys")
    listing.set_defaults(handler=_list)

    revoke = sub.add_parser("revoke", help="revoke a key; exit 1 if there is no such key")
    revoke.add_argument("key", metavar="ID", help="key id, listed prefix, or the key itself")
    revoke.set_defaults(handler=_revoke)

    limits = sub.add_parser(
        "limits",
        help="set a key's rate limits and budgets",
        description="Set a key's overrides of the [limits] defaults. Each value is a "
        "number, 0 for no limit, or 'default' to hand it back to config.toml; options "
        "left out keep their value. Without options, show the key's limits.",
    )
    limits.add_argument("key", metavar="ID", help="key id")
    limits.add_argument("--rpm", type=_count_or_default, help="requests per minute")
    limits.add_argument("--tpm", type=_count_or_default, help="tokens per minute")
    limits.add_argument("--daily-budget", type=_usd_or_default, help="USD per day")
    limits.add_argument("--monthly-budget", type=_usd_or_default, help="USD per month")
    limits.set_defaults(handler=_limits)


def _migrate(args: argparse.Namespace) -> int:
    from spine.storage import migrate

    def work() -> int:
        settings = _settings()
        url = _database_url(settings)
        applied = migrate.apply_migrations(
            url, connect_timeout=settings.database.connect_timeout_seconds
        )
        for migration in applied:
            _out(f"applied {migration.label}")
        total = len(migrate.load_migrations())
        if applied:
            _out(f"database is up to date ({total} migrations, {len(applied)} applied now)")
        else:
            _out(f"database is up to date ({total} migrations, nothing to apply)")
        return 0

    return _guard(work, migrate.MigrationError)


def _maintenance(args: argparse.Namespace) -> int:
    from spine.maintenance import run_maintenance

    def work() -> int:
        settings = _settings()

        async def op(conn: AsyncConnection[Any]) -> dict[str, int]:
            return await run_maintenance(conn, settings)

        for table, deleted in _with_connection(settings, op).items():
            _out(f"{table}: {deleted} rows deleted")
        return 0

    return _guard(work)


def _create(args: argparse.Namespace) -> int:
    from spine.storage import api_keys

    scopes = [s for chunk in args.scopes for s in chunk.split(",") if s.strip()]

    def work() -> int:
        settings = _settings()

        async def op(conn: AsyncConnection[Any]) -> tuple[str, api_keys.ApiKeyRow]:
            return await api_keys.create_key(
                conn,
                args.name,
                prefix=settings.auth.api_key_prefix,
                principal=args.principal,
                tenant=args.tenant,
                scopes=[s.strip() for s in scopes],
                tier=args.tier,
            )

        plaintext, row = _with_connection(settings, op)
        if args.quiet:
            _out(plaintext)
            return 0
        _out(f"id:     {row.id}")
        _out(f"name:   {row.name}")
        if row.scopes:
            _out(f"scopes: {', '.join(row.scopes)}")
        _out(f"tier:   {row.tier}")
        _out(f"key:    {plaintext}")
        _out("Store the key now: it is not stored and cannot be shown again.")
        return 0

    return _guard(work)


def _list(args: argparse.Namespace) -> int:
    from spine.storage import api_keys

    def work() -> int:
        settings = _settings()

        async def op(conn: AsyncConnection[Any]) -> list[api_keys.ApiKeyRow]:
            return await api_keys.list_keys(conn, include_revoked=not args.active)

        rows = _with_connection(settings, op)
        table = [["ID", "NAME", "PREFIX", "CREATED", "REVOKED"]]
        for row in rows:
            table.append(
                [
                    str(row.id),
                    row.name,
                    row.display_prefix,
                    f"{row.created_at:%Y-%m-%d %H:%M}",
                    f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "-",
                ]
            )
        _print_table(table)
        return 0

    return _guard(work)


def _revoke(args: argparse.Namespace) -> int:
    from spine.storage import api_keys

    def work() -> int:
        settings = _settings()

        async def op(conn: AsyncConnection[Any]) -> api_keys.ApiKeyRow | None:
            return await api_keys.revoke_key(conn, args.key)

        row = _with_connection(settings, op)
        if row is None:
            _err(f"spine: no API key matches '{args.key}'")
            return 1
        _out(f"revoked {row.id} ({row.name}, {row.display_prefix})")
        return 0

    return _guard(work)


_DEFAULT = "default"


def _limits(args: argparse.Namespace) -> int:
    import uuid

    from spine.storage import api_keys

    given = {
        "rpm": args.rpm,
        "tpm": args.tpm,
        "daily_budget_usd": args.daily_budget,
        "monthly_budget_usd": args.monthly_budget,
    }
    changes = api_keys.KeyChanges(
        limits={name: None if v == _DEFAULT else v for name, v in given.items() if v is not None}
    )
    try:
        key_id = uuid.UUID(args.key)
    except ValueError:
        _err(f"spine: '{args.key}' is not a key id (see `spine keys list`)")
        return 1

    def work() -> int:
        settings = _settings()

        async def op(conn: AsyncConnection[Any]) -> api_keys.ApiKeyRow | None:
            return await api_keys.update_key(conn, key_id, changes)

        row = _with_connection(settings, op)
        if row is None:
            _err(f"spine: no API key with id '{args.key}'")
            return 1

        def shown(value: object) -> str:
            return "default" if value is None else ("unlimited" if value == 0 else str(value))

        _out(f"key:            {row.id} ({row.name})")
        _out(f"rpm:            {shown(row.rpm)}")
        _out(f"tpm:            {shown(row.tpm)}")
        _out(f"daily budget:   {shown(row.daily_budget_usd)}")
        _out(f"monthly budget: {shown(row.monthly_budget_usd)}")
        return 0

    return _guard(work)


def _count_or_default(text: str) -> int | str:
    if text == _DEFAULT:
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number or 'default': {text!r}") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"out of range: {text}")
    return value


def _usd_or_default(text: str) -> Decimal | str:
    if text == _DEFAULT:
        return text
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not an amount or 'default': {text!r}") from None
    if not value.is_finite() or not 0 <= value < 10**12:
        raise argparse.ArgumentTypeError(f"out of range: {text}")
    return value


# --- helpers -------------------------------------------------------------------------


def _settings() -> Settings:
    from spine.settings import load_settings

    return load_settings()


def _database_url(settings: Settings) -> str:
    from spine.storage import embedded

    return embedded.database_url(settings)


def _with_connection(
    settings: Settings, operation: Callable[[AsyncConnection[Any]], Awaitable[T]]
) -> T:
    """Run `operation` on a fresh connection to the configured database."""
    import psycopg

    from spine.storage import db

    url = _database_url(settings)
    timeout = settings.database.connect_timeout_seconds

    async def main() -> T:
        conn = await db.connect(url, connect_timeout=timeout)
        async with conn:
            return await operation(conn)

    try:
        return asyncio.run(main())
    except psycopg.errors.UndefinedTable as exc:
        raise _CommandError("the database has no Spine tables; run `spine migrate` first") from exc
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
            raise db.unavailable(exc) from exc  # the connection broke
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _CommandError(f"database error: {first_line}") from exc


def _guard(work: Callable[[], int], *expected: type[Exception]) -> int:
    """Turn the failures a shell user can act on into one line on stderr, exit 1."""
    try:
        return work()
    except ConfigError as exc:
        for problem in exc.problems:
            _err(problem)
        return 1
    except SpineError as exc:
        _err(f"spine: {exc.message}")
        return 1
    except _CommandError as exc:
        _err(f"spine: {exc}")
        return 1
    except expected as exc:
        _err(f"spine: {exc}")
        return 1


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
