"""Where the database is: DATABASE_URL, a Secrets Manager secret, or an embedded
Postgres 16 from the `pgserver` package (the local default; `pip install spine[local]`).

The embedded server keeps its data under `settings.database.embedded_dir`, so keys and
usage survive restarts. It listens on a Unix socket inside that folder only (no TCP
port), so it is reachable from this machine alone.

How it stops: pgserver records the pid of every process using a data folder in
`<dir>/.handle_pids.json` and registers an `atexit` hook in each; when the last of
them exits normally, the hook runs `pg_ctl stop`. Ctrl-C (`make dev`) raises
KeyboardInterrupt, Python exits normally and the server stops; a one-shot command
(`spine keys list`) run while `make dev` is up leaves it running, since `make dev`'s
pid is still listed. `atexit` does not run on SIGKILL, nor on SIGTERM unless the
process turns it into an exit: the postmaster then stays up and the next start
reuses it. The dead pid would stay listed and keep the server up for ever after, so
`start` drops the pids of processes that no longer exist.

When run as root, pgserver runs Postgres as a system user `pgserver` (created with
useradd) and makes the folders above the data folder world-traversable.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from spine.errors import ServiceUnavailableError
from spine.settings import Settings

_lock = threading.Lock()
_started: dict[Path, Any] = {}  # data folder -> pgserver.PostgresServer


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, else the URL in `database.url_secret`, else the
    embedded server under `database.embedded_dir` (started, or reused if running)."""
    if settings.database_url:
        return settings.database_url
    if settings.database.url_secret:
        return _secret_url(settings.database.url_secret)
    return start(settings.resolve_path(settings.database.embedded_dir))


def start(data_dir: str | Path) -> str:
    """Start (or reuse) the embedded server keeping its data in `data_dir`; its URL.

    Blocking: about a second for a new server, a few ms when already running.
    """
    path = Path(data_dir).expanduser().resolve()
    with _lock:
        server = _started.get(path)
        if server is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            pgserver = _import_pgserver()
            try:
                # cleanup_mode="stop": stopped (data kept) when the last user exits.
                server = pgserver.get_server(path, cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError) as exc:
                raise ServiceUnavailableError(
                    "database unavailable: the embedded Postgres did not start "
                    f"(see {path / 'log'}): {exc}",
                    code="database_unavailable",
                ) from exc
            _forget_dead_handles(server)
            _started[path] = server
        uri: str = server.get_uri()
        return uri


def stop(data_dir: str | Path) -> None:
    """Release this process's handle now; the server stops if it was the last one."""
    path = Path(data_dir).expanduser().resolve()
    with _lock:
        server = _started.pop(path, None)
    if server is not None:
        _follow_restarts(server, path)
        server.cleanup()


def _follow_restarts(server: Any, path: Path) -> None:
    """Point the handle at the postmaster running now. pgserver remembers the one
    it found at start and stops only that one: a server restarted meanwhile (stopped
    by hand, then started again by `spine migrate` or a test) would be left running
    when the last handle goes. Relies on pgserver 0.1.4 internals, like
    `_forget_dead_handles`."""
    from pgserver.utils import PostmasterInfo  # noqa: PLC0415 - optional (the local extra)

    running = PostmasterInfo.read_from_pgdata(path)
    if running is not None and running.is_running():
        server._postmaster_info = running


def _import_pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI);
            # pgserver only keeps a lock file there.
            warnings.simplefilter("ignore")
            import pgserver  # noqa: PLC0415 - optional (the local extra) and slow to import
    except ImportError as exc:
        raise ServiceUnavailableError(
            "database unavailable: DATABASE_URL is not set and the embedded Postgres "
            "(pgserver) is not installed; set DATABASE_URL or install spine[local]",
            code="database_unavailable",
        ) from exc
    return pgserver


def _forget_dead_handles(server: Any) -> None:
    # Relies on pgserver 0.1.4 internals (its inter-process lock and pid list); both
    # are plain attributes, checked here so a pgserver upgrade fails loudly in tests.
    handles = server.global_process_id_list
    with server._lock:
        pids = handles.get()
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            handles.put(alive)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _secret_url(name: str) -> str:
    """A secret holding either the URL itself or an RDS-style JSON object
    (`host`, `port`, `username`, `password`, `dbname`)."""
    # Imported here: only deployed functions read a secret, only they need boto3.

    from spine.aws.secrets import get_secret  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

    raw = get_secret(name).strip()
    if not raw.startswith("{"):
        return raw
    fields = json.loads(raw)
    if "url" in fields:
        return str(fields["url"])
    return make_conninfo(
        host=fields.get("host"),
        port=fields.get("port"),
        user=fields.get("username"),
        password=fields.get("password"),
        dbname=fields.get("dbname", "postgres"),
    )
