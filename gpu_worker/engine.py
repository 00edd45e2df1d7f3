"""One llama-server process: its command line, start, health, stop, memory.

Process hygiene: an engine must never outlive the control plane. Each engine starts in
its own session (a Ctrl-C on the terminal reaches only the control plane, which stops
engines in order) and, on Linux, with PR_SET_PDEATHSIG=SIGKILL, so the kernel kills it
if the control plane dies without cleaning up (SIGKILL, OOM). The parent-death signal
fires when the *thread* that forked exits; asyncio forks from the event-loop thread,
which lives as long as the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx

from gpu_worker.paths import EngineFiles
from spine.registry.schema import EngineConfig

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STDERR_TAIL_LINES = 60
# llama-server lines worth quoting back when a model fails to load.
_ERROR_MARKERS = ("error", "failed", "invalid", "corrupt", "unable", "exception")


def free_port() -> int:
    """A loopback port free right now (llama-server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_argv(
    *,
    binary: Path,
    model_id: str,
    engine: EngineConfig,
    files: EngineFiles,
    port: int,
    slots: int,
) -> list[str]:
    """The llama-server command line (flags checked against the pinned build's --help).

    `-c` is the *total* KV size: with explicit `-np` (and the unified KV cache off)
    llama-server splits it evenly across slots, so we pass context_size * slots and every
    request keeps the full `context_size` the registry promises.
    """
    argv = [
        str(binary),
        "--model", str(files.model),
        "--alias", model_id,  # responses then name the registry id, not the file
        "--host", "127.0.0.1",
        "--port", str(port),
        "--parallel", str(slots),
        "--ctx-size", str(engine.context_size * slots),
        "--no-kv-unified",
        "--n-gpu-layers", "all" if engine.gpu_layers < 0 else str(engine.gpu_layers),
        "--metrics",
        "--slots",
        "--no-webui",
        "--offline",  # never reach the network for a model
    ]  # fmt: skip
    if engine.threads:
        argv += ["--threads", str(engine.threads)]
    if files.lora:
        argv += ["--lora-scaled", ",".join(f"{path}:{scale}" for path, scale in files.lora)]
    if files.draft is not None:
        argv += ["--model-draft", str(files.draft)]
        if "--spec-type" not in engine.extra_args:
            argv += ["--spec-type", "draft-simple"]
    if engine.chat_template:
        argv += ["--chat-template", engine.chat_template]
    if engine.embeddings:
        argv += ["--embeddings"]
    if engine.pooling:
        argv += ["--pooling", engine.pooling]
    argv += list(engine.extra_args)
    return argv


def _parent_death_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child die with this process (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, not in the child
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return hook


class EngineStartError(Exception):
    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class Engine:
    def __init__(self, model_id: str, argv: list[str], port: int) -> None:
        self.model_id = model_id
        self.argv = argv
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.started_at: float | None = None
        self.stopping = False
        self._process: asyncio.subprocess.Process | None = None
        self._output: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def output_tail(self) -> list[str]:
        return list(self._output)

    def failure_reason(self) -> str:
        """The most telling lines of llama-server's output, for a load error message."""
        lines = [line for line in self._output if any(m in line.lower() for m in _ERROR_MARKERS)]
        return "; ".join((lines or list(self._output))[-3:]) or "no output"

    async def start(self, load_timeout: float) -> None:
        """Spawn, then wait until `/health` says the model is loaded."""
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_hook(),
        )
        self._drain = asyncio.create_task(self._read_output(self._process))
        self.started_at = time.monotonic()
        logger.info("engine started", extra={"model": self.model_id, "pid": self.pid})
        deadline = time.monotonic() + load_timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if not self.running:
                    await self._drain_done()
                    raise EngineStartError(
                        f"llama-server exited with code {self.returncode} while loading",
                        self.failure_reason(),
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    await self.stop(grace=2.0)
                    raise EngineStartError(
                        f"llama-server did not become ready within {load_timeout:.0f} s",
                        self.failure_reason(),
                    )
                await asyncio.sleep(0.1)

    async def wait(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is reaped."""
        self.stopping = True
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "engine ignored sigterm, killing",
                    extra={"model": self.model_id, "pid": self.pid},
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await self._drain_done()
        logger.info(
            "engine stopped",
            extra={"model": self.model_id, "pid": self.pid, "returncode": process.returncode},
        )

    def rss_bytes(self) -> int | None:
        """Resident memory of the engine process, from /proc (None where unavailable)."""
        if not self.running:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        # Draining is required: a full pipe would block llama-server's logging.
        assert process.stdout is not None
        while line := await process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._output.append(text)
                logger.debug("engine output", extra={"model": self.model_id, "line": text})

    async def _drain_done(self) -> None:
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 2.0)
