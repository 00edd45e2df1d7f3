"""Fixtures for the llama.cpp worker tests.

Integration tests run the real control plane (`python -m gpu_worker` in a subprocess on
a free loopback port) with the real llama-server and the bundled SmolLM2 model. They
skip, saying how to get them, only when the binary or the model file is absent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from gpu_worker.config import cache_root
from gpu_worker.errors import LlamaServerNotFoundError
from gpu_worker.paths import find_llama_server

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKEN = "test-worker-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _missing(reason: str) -> NoReturn:
    """Skip when the engine is absent, except under `make test` (SPINE_REQUIRE_ENGINE),
    which builds it first: there a missing engine is a failure, not a silent skip."""
    if os.environ.get("SPINE_REQUIRE_ENGINE"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server() -> Path:
    explicit = os.environ.get("SPINE_LLAMA_SERVER")
    try:
        return find_llama_server(Path(explicit) if explicit else None)
    except LlamaServerNotFoundError as exc:
        _missing(exc.message)


@pytest.fixture(scope="session")
def model_file() -> Path:
    path = cache_root() / "models" / MODEL_FILE
    if not path.is_file():
        _missing(f"{path} is missing: run gpu_worker/scripts/fetch_model.sh")
    return path


def models_yaml(entries: list[dict[str, Any]]) -> str:
    """A models.yaml with the given llamacpp entries (JSON is valid YAML)."""
    models = []
    for entry in entries:
        engine = {"context_size": 2048, "parallel": 2, **entry.pop("engine", {})}
        engine.setdefault("gguf", {"file": MODEL_FILE})
        models.append(
            {
                "provider": "llamacpp",
                "model": entry["id"],
                "context_window": engine["context_size"],
                "max_output_tokens": 256,
                **entry,
                "engine": engine,
            }
        )
    return json.dumps({"version": 1, "models": models}, indent=2)


class WorkerProcess:
    """A real control plane in a subprocess; ended by its own pid only."""

    def __init__(
        self,
        tmp: Path,
        entries: list[dict[str, Any]],
        model_dirs: list[Path],
        *args: str,
        token: str | None = TOKEN,
        env: dict[str, str] | None = None,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.audit_path = tmp / "audit.jsonl"
        self.log_path = tmp / "worker.log"
        (tmp / "models.yaml").write_text(models_yaml([dict(e) for e in entries]))
        self.argv = [
            sys.executable, "-m", "gpu_worker",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--models", str(tmp / "models.yaml"),
            "--audit-log", str(self.audit_path),
            "--grace", "5",
            *(arg for d in model_dirs for arg in ("--model-dir", str(d))),
            *args,
        ]  # fmt: skip
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_WORKER_")}
        if token is not None:
            self.env["SPINE_WORKER_TOKEN"] = token
        self.env.update(env or {})
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=60)

    def start(self, wait_ready: bool = False) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=self.tmp, env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("worker did not start")
        if wait_ready:
            self.wait_until(lambda: self.client.get("/ready").status_code == 200, 60)
        return self

    def models(self) -> dict[str, dict[str, Any]]:
        data = self.client.get("/v1/models/list").json()["data"]
        return {m["id"]: m for m in data}

    def wait_until(self, condition: Any, timeout: float = 30, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s")

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def chat(self, model: str, content: str = "Hi", **params: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **params}
        body.setdefault("max_tokens", 4)
        return self.client.post("/v1/chat/completions", json=body)

    def stop(self) -> int | None:
        self.client.close()
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def broken_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir with files that must be refused, and a secret file outside it."""
    root = tmp_path_factory.mktemp("broken")
    models = root / "models"
    models.mkdir()
    outside = root / "outside.gguf"
    outside.write_bytes(b"GGUF" + b"\0" * 64)  # valid magic: only confinement can refuse it
    (models / "escape-link.gguf").symlink_to(outside)
    (models / "not-gguf.gguf").write_text("this is a text file, not a model\n")
    # Right magic, nonsense after it: only the engine can tell, and must fail cleanly.
    (models / "corrupt.gguf").write_bytes(b"GGUF" + os.urandom(4096))
    return models


SHARED_ENTRIES: list[dict[str, Any]] = [
    {"id": "smollm2-135m", "aliases": ["smollm2"]},
    {"id": "smollm2-serial", "engine": {"parallel": 1, "context_size": 1024}},
    {
        "id": "smollm2-embed",
        "capabilities": ["embeddings"],
        "engine": {"embeddings": True, "pooling": "mean", "parallel": 1},
    },
    {"id": "smollm2-draft", "engine": {"draft": {"file": MODEL_FILE}, "parallel": 1}},
    {"id": "broken-missing", "engine": {"gguf": {"file": "no-such-model.gguf"}}},
    {"id": "broken-not-gguf", "engine": {"gguf": {"file": "not-gguf.gguf"}}},
    {"id": "broken-corrupt", "engine": {"gguf": {"file": "corrupt.gguf"}}},
    {"id": "broken-dotdot", "engine": {"gguf": {"file": "../outside.gguf"}}},
    {"id": "broken-symlink", "engine": {"gguf": {"file": "escape-link.gguf"}}},
    {"id": "broken-absolute", "engine": {"gguf": {"file": "/etc/hostname"}}},
]


@pytest.fixture(scope="session")
def worker(
    llama_server: Path,
    model_file: Path,
    broken_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """One worker shared by the API tests (queue of 3 per model, 5 engines at most,
    aging too slow to matter)."""
    process = WorkerProcess(
        tmp_path_factory.mktemp("shared-worker"),
        SHARED_ENTRIES,
        [model_file.parent, broken_models_dir],
        "--max-loaded-models", "5",
        "--queue-size", "3",
        "--idle-ttl", "0",
        # Strict priorities: on a loaded machine a long generation can outlast the
        # default 10 s aging step, and aging (tested in the scheduler's own tests)
        # would then rightly serve a long-waiting low-priority request first.
        "--aging", "600",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    process.start(wait_ready=True)
    yield process
    process.stop()
