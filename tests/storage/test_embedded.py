"""The embedded Postgres: started on demand, data kept, stopped when its user exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from spine.storage.embedded import _forget_dead_handles

SPINE = str(Path(sys.executable).with_name("spine"))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: pgserver (as root) makes parent folders traversable.
    parent = Path(tempfile.mkdtemp(prefix="spine-embedded-"))
    path = parent / "pgdata"
    try:
        yield path
    finally:
        if (path / "postmaster.pid").exists():
            # The test failed with the server up: attach to it, stop it, delete it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pgserver.postgres_server import get_server

            server = get_server(path, cleanup_mode="delete")
            # Drop the pids of the test's dead subprocesses, else ours is not the
            # last handle and cleanup() leaves the server running.
            _forget_dead_handles(server)
            server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def _spine_migrate(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SPINE_DATABASE__EMBEDDED_DIR"] = str(data_dir)
    return subprocess.run(
        [SPINE, "migrate"],
        env=env,
        cwd=data_dir.parent,  # no config.toml there: settings from the environment
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_embedded_server_starts_keeps_data_and_stops_on_exit(data_dir: Path) -> None:
    # When `spine migrate` runs without DATABASE_URL
    first = _spine_migrate(data_dir)

    # Then it started the embedded server there, migrated it, and stopped it on exit
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    assert (data_dir / "PG_VERSION").exists()
    assert not (data_dir / "postmaster.pid").exists(), "server left running"

    # And the next run finds the data again, and still stops the server although a
    # process that used it died without cleaning up (SIGKILL leaves its pid listed)
    (data_dir / ".handle_pids.json").write_text(json.dumps([_dead_pid()]))
    second = _spine_migrate(data_dir)
    assert second.returncode == 0, second.stderr
    assert "nothing to apply" in second.stdout
    assert not (data_dir / "postmaster.pid").exists(), "server left running"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
