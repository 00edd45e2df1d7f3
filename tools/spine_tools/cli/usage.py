"""`spine usage prune --older-than 90d`: the ledger's retention.

Deletes usage rows older than the given age in bounded batches (see
spine.storage.usage.delete_usage_before), so it can run against a live database
from cron, a CI schedule or an EventBridge-triggered task without long locks.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import AsyncConnection

_AGE = re.compile(r"^(\d+)([hdw])$")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
# Never delete the last day by accident: `--older-than 0d` would empty the ledger.
MIN_AGE = timedelta(days=1)


def parse_age(text: str) -> timedelta:
    """'90d', '12w', '36h' -> timedelta (argparse type: errors become usage errors)."""
    match = _AGE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid age '{text}': use a number and a unit, e.g. 90d, 12w or 48h"
        )
    age = int(match.group(1)) * _UNIT[match.group(2)]
    if age < MIN_AGE:
        raise argparse.ArgumentTypeError(f"age '{text}' is under the minimum of 1 day")
    return age


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return value


def register(subparsers: Any) -> None:
    usage = subparsers.add_parser("usage", help="usage ledger maintenance")
    sub = usage.add_subparsers(dest="usage_command", metavar="ACTION", required=True)
    prune = sub.add_parser("prune", help="delete usage rows older than an age, in batches")
    prune.add_argument(
        "--older-than",
        required=True,
        type=parse_age,
        metavar="AGE",
        help="age of the rows to delete: 90d, 12w or 48h (at least 1 day)",
    )
    prune.add_argument(
        "--batch-size",
        type=_positive,
        default=5000,
        metavar="N",
        help="rows per DELETE statement (default 5000)",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="count the rows that would be deleted"
    )
    prune.set_defaults(handler=_prune)


def _prune(args: argparse.Namespace) -> int:
    from spine.storage.usage import count_usage_before, delete_usage_before
    from spine_tools.cli.db import _guard, _out, _settings, _with_connection

    cutoff = datetime.now(UTC) - args.older_than

    def work() -> int:
        settings = _settings()

        async def op(conn: AsyncConnection[Any]) -> int:
            if args.dry_run:
                return await count_usage_before(conn, cutoff)
            return await delete_usage_before(conn, cutoff, batch_size=args.batch_size)

        count = _with_connection(settings, op)
        verb = "would delete" if args.dry_run else "deleted"
        _out(f"{verb} {count} usage rows created before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
        return 0

    return _guard(work)
