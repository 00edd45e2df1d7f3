"""Postgres: connections, migrations, API keys and the usage ledger.

Kept light on purpose: importing `spine.storage` imports no driver. Import the module
you need (`from spine.storage import db`), which pulls in psycopg then.

- `db`: one connection per event loop (warm container), `ping`, `transaction`.
- `embedded`: DATABASE_URL, the URL secret, or the embedded pgserver Postgres.
- `migrate`: versioned SQL migrations; `ensure_database()` for local entry points.
- `api_keys`, `usage`: the two tables' queries.
"""
