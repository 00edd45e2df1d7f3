"""Apply the SQL migrations under `spine/storage/migrations/`.

Each pending migration runs in its own transaction together with its row in
`schema_migrations`, so a migration is applied entirely or not at all. Every such
transaction first takes a transaction-scoped advisory lock: several processes (two
`spine migrate`, the emulator and a test run) can migrate one database at once, one
waits for the other and then finds the work done. Re-running is a no-op.

A file edited after it was applied is refused (its checksum differs): an applied
migration is history; change the schema with a new file.

Synchronous on purpose: it runs from the command line, `make dev` and test setup,
never on a request path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg.rows import TupleRow

from spine.settings import Settings, get_settings
from spine.storage import embedded
from spine.storage.db import unavailable

MIGRATIONS_PACKAGE = "spine.storage.migrations"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Any fixed 64-bit number shared by every Spine process: "SPINEMIG" in ASCII.
_ADVISORY_LOCK_KEY = int.from_bytes(b"SPINEMIG", "big", signed=True)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migration files or the recorded history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str  # "initial"
    sql: str
    checksum: str  # SHA-256 of the file

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def load_migrations() -> list[Migration]:
    """The shipped migrations, in version order."""
    found: dict[str, Migration] = {}
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        data = entry.read_bytes()
        migration = Migration(
            version=match["version"],
            name=match["name"],
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
        if migration.version in found:
            raise MigrationError(
                f"two migrations share version {migration.version}: "
                f"{found[migration.version].label}, {migration.label}"
            )
        found[migration.version] = migration
    return [found[version] for version in sorted(found)]


def apply_migrations(url: str, *, connect_timeout: float = 5.0) -> list[Migration]:
    """Apply the pending migrations to the database at `url`; those it applied.

    Raises `ServiceUnavailableError` when the database cannot be reached and
    `MigrationError` when the history does not match the files.
    """
    migrations = load_migrations()
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            # No server-side prepared statements (psycopg prepares a query from its
            # sixth run, and the history lookup runs once per migration): through a
            # transaction-mode pooler the next transaction may land on a backend
            # where the statement does not exist. As in spine.storage.db.connect.
            prepare_threshold=None,
            connect_timeout=max(2, round(connect_timeout)),
            application_name="spine-migrate",
        )
    except psycopg.Error as exc:
        raise unavailable(exc) from exc
    with conn:
        try:
            return _apply_pending(conn, migrations)
        except psycopg.OperationalError as exc:
            if conn.broken:
                raise unavailable(exc) from exc
            raise


def _apply_pending(
    conn: psycopg.Connection[TupleRow], migrations: list[Migration]
) -> list[Migration]:
    applied: list[Migration] = []
    for migration in migrations:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            # Created under the lock: two concurrent CREATE TABLE IF NOT EXISTS
            # can both miss the table and one then fails on the catalog.
            conn.execute(_CREATE_TABLE)
            row = conn.execute(
                "SELECT checksum FROM schema_migrations WHERE version = %s",
                (migration.version,),
            ).fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.label} was edited after it was "
                        "applied; add a new migration instead"
                    )
                continue
            _run_file(conn, migration)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied.append(migration)
    return applied


def _run_file(conn: psycopg.Connection[TupleRow], migration: Migration) -> None:
    try:
        # No parameters: psycopg sends the file as one simple query, so it may hold
        # several statements.
        conn.execute(migration.sql.encode())
    except psycopg.Error as exc:
        if conn.broken:
            raise
        raise MigrationError(f"migration {migration.label} failed: {exc}") from exc


def ensure_database(settings: Settings | None = None) -> str:
    """The database URL, migrated: DATABASE_URL (or the secret), else the embedded
    server, started if needed. For `make dev` and other local entry points."""
    settings = settings if settings is not None else get_settings()
    url = embedded.database_url(settings)
    apply_migrations(url, connect_timeout=settings.database.connect_timeout_seconds)
    return url
