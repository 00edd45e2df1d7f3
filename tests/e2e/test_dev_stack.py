"""`spine dev` end to end: the README's promise on a fresh checkout.

Starts the whole local stack (embedded Postgres, the worker with the bundled
SmolLM2 model, the emulator), uses the two printed exports with the official
`openai` client, then Ctrl-C (SIGINT) and checks that nothing is left running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every live process under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A fresh folder outside pytest's own: pgserver (as root) runs Postgres as its own
    user, which must traverse every parent folder, and pytest keeps its base folder
    private (and other pytest runs may reset it), as tests/fixtures/postgres.py notes."""
    folder = Path(tempfile.mkdtemp(prefix="spine-e2e-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.worker
@pytest.mark.usefixtures("llama_server", "model_file")  # skip only when the engine is absent
def test_make_dev_stack_answers_the_openai_client_and_stops_clean(tmp_path: Path) -> None:
    # Given a fresh state folder and free ports
    api_port, worker_port = free_port(), free_port()
    env = {
        **os.environ,
        "SPINE_STATE_DIR": str(tmp_path / "state"),
        "SPINE_DATABASE__EMBEDDED_DIR": str(tmp_path / "pgdata"),
        "SPINE_WORKER__URL": f"http://127.0.0.1:{worker_port}",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    env.pop("DATABASE_URL", None)
    env.pop("SPINE_WORKER_TOKEN", None)
    dev = subprocess.Popen(
        [sys.executable, "-m", "spine_tools.cli", "dev", "--port", str(api_port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(dev.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        # When it is ready, it prints the two exports
        deadline = time.monotonic() + 240
        while not any("Press Ctrl-C to stop." in line for line in output):
            assert dev.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        text = "".join(output)
        base_url = re.search(r"^export OPENAI_BASE_URL=(\S+)$", text, re.M)
        api_key = re.search(r"^export OPENAI_API_KEY=(sk-spine-\S+)$", text, re.M)
        assert base_url and api_key, text
        assert base_url.group(1) == f"http://127.0.0.1:{api_port}/v1"
        running = descendants(dev.pid)
        postmaster = int((tmp_path / "pgdata" / "postmaster.pid").read_text().split()[0])

        # Then the official client gets a real answer from the local model
        client = OpenAI(base_url=base_url.group(1), api_key=api_key.group(1), max_retries=0)
        answer = client.chat.completions.create(
            model="default",
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            max_tokens=24,
            temperature=0,
        )
        assert "Paris" in (answer.choices[0].message.content or "")
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        assert {m.id for m in client.models.list()} >= {"smollm2-135m", "default"}

        # And the admin app's address is printed and served with its CSP (when built)
        admin_url = f"http://127.0.0.1:{api_port}/admin/"
        assert f"Admin app: {admin_url}" in text
        if (REPO / "admin" / "dist" / "index.html").is_file():
            page = httpx.get(admin_url)
            assert page.status_code == 200
            assert "script-src 'self'" in page.headers["content-security-policy"]
    finally:
        # When Ctrl-C
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(timeout=60)
        reader.join(timeout=5)
    # Then nothing it started is left: API, worker, its engines, Postgres
    leftover = [pid for pid in (*running, postmaster) if alive(pid)]
    assert leftover == [], leftover
    assert dev.returncode == 0, "".join(output)
