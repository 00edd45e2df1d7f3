"""`spine migrate` and `spine keys ...`, in-process and as a shell user runs them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from spine.storage.api_keys import hash_key
from spine_tools.cli import main

SPINE = str(Path(sys.executable).with_name("spine"))
KEY = re.compile(r"sk-spine-[0-9A-Za-z]{43}")


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def _spine(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [SPINE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_migrate_on_a_migrated_database_applies_nothing(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "nothing to apply" in out


def test_migrate_applies_to_an_empty_database(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    assert main(["migrate"]) == 0
    assert "applied 0001_initial" in capsys.readouterr().out


def test_keys_create_list_revoke(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Create: the key is printed once, with its id
    assert main(["keys", "create", "--name", "ci bot", "--scopes", "chat,models", "admin"]) == 0
    out = capsys.readouterr().out
    keys = KEY.findall(out)
    assert len(keys) == 1
    key_id = re.search(r"id:\s+([0-9a-f-]{36})", out)
    assert key_id is not None
    with psycopg.connect(cli_db) as conn:
        row = conn.execute(
            "SELECT name, scopes, key_hash FROM api_keys WHERE id = %s", (key_id[1],)
        ).fetchone()
    assert row == ("ci bot", ["chat", "models", "admin"], hash_key(keys[0]))

    # List: a table with the prefix, never the key
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].split() == ["ID", "NAME", "PREFIX", "CREATED", "REVOKED"]
    assert key_id[1] in listing
    assert keys[0][:15] + "…" in listing
    assert keys[0] not in listing

    # Revoke: by id, then the listing says when
    assert main(["keys", "revoke", key_id[1]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    revoked_line = capsys.readouterr().out.splitlines()[1]
    assert revoked_line.rstrip().split()[-1] != "-"


def test_keys_limits_sets_keeps_and_clears(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--name", "limited"]) == 0
    key_id = re.search(r"id:\s+([0-9a-f-]{36})", capsys.readouterr().out)
    assert key_id is not None

    assert main(["keys", "limits", key_id[1], "--rpm", "60", "--daily-budget", "2.5"]) == 0
    assert "rpm:            60" in capsys.readouterr().out
    # Options left out keep their value; 'default' clears, 0 lifts
    assert main(["keys", "limits", key_id[1], "--rpm", "default", "--tpm", "0"]) == 0
    out = capsys.readouterr().out
    assert "rpm:            default" in out and "tpm:            unlimited" in out
    with psycopg.connect(cli_db) as conn:
        row = conn.execute(
            "SELECT rpm, tpm, daily_budget_usd, monthly_budget_usd FROM api_keys WHERE id = %s",
            (key_id[1],),
        ).fetchone()
    assert row == (None, 0, Decimal("2.5"), None)


def test_keys_limits_refuses_bad_values_and_unknown_keys(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["keys", "limits", "00000000-0000-0000-0000-000000000000", "--rpm", "-3"])
    assert exited.value.code == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["keys", "limits", "00000000-0000-0000-0000-000000000000", "--rpm", "5"]) == 1
    assert "no API key with id" in capsys.readouterr().err
    assert main(["keys", "limits", "sk-spine-abc", "--rpm", "5"]) == 1
    assert "is not a key id" in capsys.readouterr().err


def test_keys_revoke_unknown_fails(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "revoke", "00000000-0000-0000-0000-000000000000"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no API key matches" in captured.err


def test_quiet_create_prints_only_the_key_for_scripts(db_url: str) -> None:
    result = _spine("keys", "create", "--name", "script", "--quiet", database_url=db_url)

    assert result.returncode == 0, result.stderr
    assert KEY.fullmatch(result.stdout.rstrip("\n"))
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT key_hash FROM api_keys").fetchall()
    assert stored == [(hash_key(result.stdout.strip()),)]


def test_revoke_unknown_exit_code(db_url: str) -> None:
    result = _spine("keys", "revoke", "sk-spine-nothere", database_url=db_url)
    assert result.returncode == 1
    assert "no API key matches 'sk-spine-nothere'" in result.stderr


@pytest.mark.parametrize("command", [["migrate"], ["keys", "list"]])
def test_unreachable_database_is_one_clear_line_and_exit_1(command: list[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()

    result = _spine(*command, database_url=f"postgresql://spine:pw@127.0.0.1:{port}/spine")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("spine: database unavailable: ")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 15


def test_keys_on_an_unmigrated_database_says_to_migrate(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    assert main(["keys", "list"]) == 1
    assert "run `spine migrate` first" in capsys.readouterr().err
