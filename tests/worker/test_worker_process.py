"""Worker-level behaviour that needs its own control plane: start-up refusals, idle TTL,
LRU eviction, modes, shutdown, and no orphan engines when the control plane dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.worker.conftest import WorkerProcess, free_port, pid_alive

pytestmark = pytest.mark.worker


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPINE_WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "gpu_worker", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


def test_refuses_to_start_without_a_token(tmp_path: Path, model_file: Path) -> None:
    proc = WorkerProcess(tmp_path, [{"id": "m"}], [model_file.parent], token=None)
    result = run_cli(proc.argv[3:], {}, tmp_path)
    assert result.returncode == 2
    assert "--insecure-no-auth" in result.stderr and "SPINE_WORKER_TOKEN" in result.stderr


def test_missing_llama_server_is_a_clear_start_error(tmp_path: Path, model_file: Path) -> None:
    proc = WorkerProcess(tmp_path, [{"id": "m"}], [model_file.parent])
    result = run_cli(
        [*proc.argv[3:], "--llama-server", str(tmp_path / "nope")], {"SPINE_WORKER_TOKEN": "t"},
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "build_llama_server.sh" in result.stderr


def test_insecure_mode_serves_without_a_token_and_says_so(
    tmp_path: Path, llama_server: Path, model_file: Path
) -> None:
    proc = WorkerProcess(
        tmp_path, [{"id": "m"}], [model_file.parent], "--insecure-no-auth", "--no-preload",
        token=None, env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    proc.start()
    try:
        assert httpx.get(proc.url + "/v1/models/list").status_code == 200
        assert "auth disabled" in proc.log_path.read_text()
    finally:
        proc.stop()


def test_token_from_secrets_manager_end_to_end(
    tmp_path: Path, llama_server: Path, model_file: Path
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        import boto3

        boto3.client(
            "secretsmanager", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ).create_secret(Name="spine/worker", SecretString='{"token": "vaulted"}')  # fmt: skip
        proc = WorkerProcess(
            tmp_path, [{"id": "m"}], [model_file.parent], "--no-preload", token=None,
            env={**aws, "SPINE_WORKER_TOKEN_SECRET": "spine/worker",
                 "SPINE_LLAMA_SERVER": str(llama_server)},
        )  # fmt: skip
        proc.start()
        try:
            ok = httpx.get(proc.url + "/v1/models", headers={"Authorization": "Bearer vaulted"})
            assert ok.status_code == 200
            assert httpx.get(proc.url + "/v1/models").status_code == 401
        finally:
            proc.stop()
    finally:
        server.stop()


@pytest.fixture
def lru_worker(tmp_path: Path, llama_server: Path, model_file: Path) -> Iterator[WorkerProcess]:
    """One engine at most, 2 s idle TTL, throughput mode (slots = 2 x parallel)."""
    entries = [
        {"id": "alpha", "engine": {"parallel": 1, "context_size": 1024}},
        {"id": "beta", "engine": {"parallel": 1, "context_size": 1024}},
    ]
    proc = WorkerProcess(
        tmp_path, entries, [model_file.parent],
        "--max-loaded-models", "1", "--idle-ttl", "2", "--mode", "throughput", "--no-preload",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    proc.start()
    yield proc
    proc.stop()


async def test_lru_eviction_ttl_and_busy_models(lru_worker: WorkerProcess) -> None:
    w = lru_worker
    # Mode throughput doubles the slots, and the engine really has them
    assert w.chat("alpha").status_code == 200
    alpha = w.models()["alpha"]
    assert alpha["slots"] == 2
    async with httpx.AsyncClient() as engine:
        assert len((await engine.get(f"http://127.0.0.1:{alpha['port']}/slots")).json()) == 2

    # A load that needs room evicts the least recently used idle model
    assert w.chat("beta").status_code == 200
    models = w.models()
    assert models["alpha"]["state"] == "unloaded" and models["beta"]["state"] == "ready"
    assert not pid_alive(alpha["pid"])
    evictions = [e for e in w.audit() if e["action"] == "evict_lru"]
    assert evictions and evictions[-1]["model"] == "alpha" and evictions[-1]["actor"] == "system"

    # While beta streams for longer than its TTL it is neither unloaded nor evicted
    body = {"model": "beta", "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 400, "stream": True, "temperature": 1.0, "ignore_eos": True}  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=w.url, headers=w.headers, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        started = time.monotonic()
        refused = await client.post(
            "/v1/chat/completions",
            json={"model": "alpha", "messages": [{"role": "user", "content": "x"}]},
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_capacity"
        async for _ in stream.aiter_lines():
            if time.monotonic() - started > 3.0:
                break
        assert w.models()["beta"]["state"] == "ready"
        assert w.models()["alpha"]["state"] == "unloaded"  # refused for capacity, not failed
        ended = time.time()
    # Once idle, the TTL (counted from the end of the last request) unloads it
    w.wait_until(lambda: any(e["action"] == "idle_ttl" for e in w.audit()), 10)
    ttl = [e for e in w.audit() if e["action"] == "idle_ttl"]
    assert ttl[-1]["model"] == "beta" and ttl[-1]["actor"] == "system"
    assert ttl[-1]["unix"] - ended >= 1.5  # counted from the end of the stream, not its start
    assert w.models()["beta"]["state"] == "unloaded"
    await asyncio.sleep(0)


def test_sigterm_stops_every_engine(tmp_path: Path, llama_server: Path, model_file: Path) -> None:
    proc = WorkerProcess(
        tmp_path, [{"id": "m"}], [model_file.parent],
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    proc.start(wait_ready=True)
    pid = proc.models()["m"]["pid"]
    assert pid_alive(pid)
    # uvicorn shuts down gracefully, then re-raises the signal (so the status is -15)
    assert proc.stop() in (0, -signal.SIGTERM)
    assert not pid_alive(pid)
    log = proc.log_path.read_text()
    assert "worker stopping, stopping engines" in log and '"engine stopped"' in log


def test_no_orphan_engine_when_the_control_plane_is_killed(
    tmp_path: Path, llama_server: Path, model_file: Path
) -> None:
    proc = WorkerProcess(
        tmp_path, [{"id": "m"}], [model_file.parent],
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    proc.start(wait_ready=True)
    pid = proc.models()["m"]["pid"]
    assert proc.process is not None
    # The engine runs in its own session (a terminal's Ctrl-C reaches only the worker)
    assert os.getsid(pid) != os.getsid(proc.process.pid)
    # When the control plane dies without any cleanup ...
    proc.process.send_signal(signal.SIGKILL)
    proc.process.wait(10)
    # ... the kernel's parent-death signal takes the engine with it.
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)
    proc.client.close()
