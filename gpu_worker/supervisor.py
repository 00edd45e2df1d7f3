"""The models the worker knows, their engines, and every state change between them.

States: unloaded -> loading -> ready, or -> failed (with the reason). Rules, taken from
llama-swap / Ollama and the issue:
- Concurrent requests for an unloaded model share one load (one task, shielded).
- At most `max_loaded_models` engines; a load that needs room unloads the least
  recently used *idle* model. A model with requests running or queued is never
  unloaded by the worker itself (idle TTL or eviction); an explicit unload of a busy
  model is refused with 409. Short requests that take no scheduler slot (tokenize)
  borrow the engine (`ModelManager.borrow`) and count as running for these rules.
- Idle TTL counts from the end of the model's last request.
- An engine that exits on its own is restarted; more than `_CRASH_LIMIT` exits within
  `_CRASH_WINDOW` seconds mark the model failed instead (no restart loop).
- A failed model is retried on demand at most every `_RETRY_AFTER_FAILURE` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gpu_worker.audit import AuditLog
from gpu_worker.config import WorkerSettings
from gpu_worker.engine import Engine, EngineStartError, engine_argv, free_port
from gpu_worker.errors import (
    ModelBusyError,
    ModelLoadError,
    NoCapacityError,
)
from gpu_worker.metrics import WorkerMetrics
from gpu_worker.paths import find_llama_server, resolve_engine_files
from gpu_worker.scheduler import MODE_POLICIES, FairScheduler
from spine.errors import ModelNotFoundError, SpineError
from spine.registry.schema import EngineConfig, ModelEntry

logger = logging.getLogger(__name__)

SYSTEM = "system"
_CRASH_LIMIT = 3
_CRASH_WINDOW = 60.0
_RETRY_AFTER_FAILURE = 5.0


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(eq=False)
class ManagedModel:
    entry: ModelEntry
    scheduler: FairScheduler
    state: ModelState = ModelState.UNLOADED
    engine: Engine | None = None
    last_used: float = 0.0
    last_error: str | None = None
    failure: SpineError | None = None
    failed_at: float = 0.0
    loaded_at: float | None = None
    load_task: asyncio.Task[Engine] | None = None
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=_CRASH_LIMIT + 1))
    # Requests using the engine without a scheduler slot (tokenize), see `borrow`.
    borrowers: int = 0

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def config(self) -> EngineConfig:
        assert self.entry.engine is not None  # the schema requires it for llamacpp
        return self.entry.engine

    @property
    def holds_engine(self) -> bool:
        return self.state in (ModelState.LOADING, ModelState.READY)

    @property
    def idle(self) -> bool:
        """Nothing running, queued or borrowing the engine: safe to unload."""
        return self.scheduler.idle and self.borrowers == 0


class ModelManager:
    def __init__(
        self,
        settings: WorkerSettings,
        entries: list[ModelEntry],
        metrics: WorkerMetrics,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.audit = audit
        self._model_dirs = settings.model_dir_roots()
        policy = MODE_POLICIES[settings.mode]
        aging = settings.aging_seconds or policy.aging_seconds
        self.models: dict[str, ManagedModel] = {}
        self._names: dict[str, str] = {}
        for entry in entries:
            assert entry.engine is not None
            slots = policy.slots(entry.engine.parallel)
            scheduler = FairScheduler(slots, settings.queue_size, aging)
            self.models[entry.id] = ManagedModel(entry, scheduler)
            for name in (entry.model, *entry.aliases):
                self._names.setdefault(name, entry.id)
            metrics.slots.labels(entry.id).set(slots)
        self._capacity = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # --- lookup ------------------------------------------------------------------------

    def lookup(self, name: str) -> ManagedModel:
        """By id, then by the provider model name or an alias."""
        model = self.models.get(name) or self.models.get(self._names.get(name, ""))
        if model is None:
            raise ModelNotFoundError(name)
        return model

    def touch(self, model: ManagedModel) -> None:
        model.last_used = time.monotonic()

    @contextlib.asynccontextmanager
    async def borrow(self, model: ManagedModel, actor: str = SYSTEM) -> AsyncIterator[Engine]:
        """The model's engine for a short request that takes no scheduler slot, loaded on
        demand. Cheap requests (tokenize) must not wait behind generations in the queue,
        but the engine must not be stopped under them either: while borrowed the model is
        not idle, so idle TTL, eviction and unload leave it alone. `unload` checks and
        takes the engine without an await in between, so a borrow that starts later
        simply loads the model again."""
        model.borrowers += 1
        try:
            engine = await self.ensure_ready(model, actor)
            self.touch(model)
            yield engine
        finally:
            model.borrowers -= 1
            self.touch(model)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.idle_ttl_seconds > 0:
            self._reaper = asyncio.create_task(self._reap_idle())

    async def ensure_ready(
        self, model: ManagedModel, actor: str = SYSTEM, action: str = "load_on_demand"
    ) -> Engine:
        """The model's running engine, loading it first when needed (shared load)."""
        while True:
            engine = model.engine
            if model.state is ModelState.READY and engine is not None and engine.running:
                return engine
            if model.load_task is None:
                if (
                    model.state is ModelState.FAILED
                    and model.failure is not None
                    and time.monotonic() - model.failed_at < _RETRY_AFTER_FAILURE
                ):
                    raise model.failure
                self._begin_load(model, actor, action)
            assert model.load_task is not None
            await asyncio.shield(model.load_task)

    async def load(self, model: ManagedModel, actor: str) -> Engine:
        """Explicit load: retries a failed model at once."""
        if model.load_task is None and not (
            model.state is ModelState.READY and model.engine and model.engine.running
        ):
            self._begin_load(model, actor, "load")
        return await self.ensure_ready(model, actor)

    async def unload(self, model: ManagedModel, actor: str, reason: str = "unload") -> bool:
        """Stop the model's engine. False when it was not loaded. Never while it is busy."""
        if model.load_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(model.load_task)
        if not model.idle:
            running = model.scheduler.active + model.borrowers
            raise ModelBusyError(
                f"The model '{model.id}' has {running} requests running and "
                f"{model.scheduler.queued} queued; unload it when they are done",
                param="model",
            )
        engine, model.engine = model.engine, None
        was_loaded = model.state is ModelState.READY
        model.state = ModelState.UNLOADED
        model.loaded_at = None
        self.metrics.loaded.labels(model.id).set(0)
        if engine is None:
            return False
        started = time.monotonic()
        await engine.stop(self.settings.grace_seconds)
        took = time.monotonic() - started
        self.metrics.unloads.labels(model.id, reason).inc()
        self.metrics.unload_seconds.labels(model.id).observe(took)
        self.audit.record(
            actor=actor, action=reason, model=model.id, result="ok", duration_s=took,
            pid=engine.pid,
        )  # fmt: skip
        logger.info("model unloaded", extra={"model": model.id, "reason": reason})
        return was_loaded

    async def reload(self, model: ManagedModel, actor: str) -> Engine:
        await self.unload(model, actor, "unload_for_reload")
        return await self.load(model, actor)

    async def shutdown(self) -> None:
        """Stop every engine (SIGTERM, then SIGKILL after the grace period)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for task in self._tasks:
            task.cancel()
        loads = [m.load_task for m in self.models.values() if m.load_task is not None]
        for load in loads:
            load.cancel()
        # A cancelled load stops the engine it was starting (see _load).
        await asyncio.gather(*loads, return_exceptions=True)
        engines = [m.engine for m in self.models.values() if m.engine is not None]
        for model in self.models.values():
            model.engine, model.state = None, ModelState.UNLOADED
        await asyncio.gather(
            *(e.stop(self.settings.grace_seconds) for e in engines), return_exceptions=True
        )

    async def engine_failed(self, model: ManagedModel, engine: Engine) -> None:
        """A request lost its connection to `engine`: restart it if the process is gone."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.wait(), 2.0)
        if not engine.running:
            self._on_exit(model, engine)

    # --- internals -----------------------------------------------------------------------

    def _begin_load(self, model: ManagedModel, actor: str, action: str) -> None:
        model.state = ModelState.LOADING
        task = asyncio.create_task(self._load(model, actor, action))
        model.load_task = task

        def done(t: asyncio.Task[Engine]) -> None:
            if model.load_task is t:
                model.load_task = None
            if not t.cancelled():
                t.exception()  # retrieved by waiters; silence "never retrieved"

        task.add_done_callback(done)

    async def _load(self, model: ManagedModel, actor: str, action: str) -> Engine:
        started = time.monotonic()
        engine: Engine | None = None
        try:
            async with self._capacity:
                try:
                    await self._make_room(model)
                except NoCapacityError:
                    # Transient, and no fault of the model: it is simply not loaded.
                    model.state = ModelState.UNLOADED
                    self.metrics.loads.labels(model.id, "no_capacity").inc()
                    raise
            files = resolve_engine_files(model.config, self._model_dirs)
            binary = find_llama_server(self.settings.llama_server)
            slots = model.scheduler.slots
            port = free_port()
            argv = engine_argv(
                binary=binary,
                model_id=model.id,
                engine=model.config,
                files=files,
                port=port,
                slots=slots,
            )
            engine = Engine(model.id, argv, port)
            try:
                await engine.start(self.settings.load_timeout_seconds)
            except EngineStartError as exc:
                raise ModelLoadError(
                    f"The engine could not load the model '{model.id}' ({Path(files.model).name}):"
                    f" {exc}: {exc.detail}",
                    param="model",
                ) from exc
        except NoCapacityError:
            raise
        except SpineError as exc:
            self._mark_failed(model, exc, actor, action, time.monotonic() - started)
            raise
        except asyncio.CancelledError:
            if engine is not None:
                await asyncio.shield(engine.stop(self.settings.grace_seconds))
            raise
        took = time.monotonic() - started
        model.engine, model.state = engine, ModelState.READY
        model.last_error, model.failure = None, None
        model.loaded_at = time.time()
        self.touch(model)
        self.metrics.loads.labels(model.id, "ok").inc()
        self.metrics.load_seconds.labels(model.id).observe(took)
        self.metrics.loaded.labels(model.id).set(1)
        self.audit.record(
            actor=actor, action=action, model=model.id, result="ok", duration_s=took,
            pid=engine.pid,
        )  # fmt: skip
        logger.info(
            "model loaded", extra={"model": model.id, "seconds": round(took, 3), "pid": engine.pid}
        )
        self._spawn(self._watch(model, engine))
        return engine

    def _mark_failed(
        self, model: ManagedModel, exc: SpineError, actor: str, action: str, took: float
    ) -> None:
        model.state, model.failure, model.last_error = ModelState.FAILED, exc, exc.message
        model.failed_at = time.monotonic()
        self.metrics.loads.labels(model.id, "error").inc()
        self.audit.record(
            actor=actor, action=action, model=model.id, result="error", duration_s=took,
            error=exc.message, code=exc.code,
        )  # fmt: skip
        logger.warning(
            "model load failed", extra={"model": model.id, "code": exc.code, "reason": exc.message}
        )

    async def _make_room(self, model: ManagedModel) -> None:
        others = [m for m in self.models.values() if m is not model and m.holds_engine]
        while len(others) >= self.settings.max_loaded_models:
            idle = [m for m in others if m.state is ModelState.READY and m.idle]
            if not idle:
                raise NoCapacityError(
                    f"Cannot load '{model.id}': {len(others)} models are loaded "
                    f"(max_loaded_models={self.settings.max_loaded_models}) and all are busy",
                    headers={"Retry-After": "5"},
                )
            victim = min(idle, key=lambda m: m.last_used)
            await self.unload(victim, SYSTEM, "evict_lru")
            others.remove(victim)

    async def _watch(self, model: ManagedModel, engine: Engine) -> None:
        await engine.wait()
        self._on_exit(model, engine)

    def _on_exit(self, model: ManagedModel, engine: Engine) -> None:
        if engine.stopping or model.engine is not engine or self._closed:
            return  # an unload, or already handled
        engine.stopping = True
        model.engine = None
        self.metrics.loaded.labels(model.id).set(0)
        now = time.monotonic()
        model.crashes.append(now)
        logger.error(
            "engine exited unexpectedly",
            extra={"model": model.id, "pid": engine.pid, "returncode": engine.returncode},
        )
        recent = [t for t in model.crashes if now - t < _CRASH_WINDOW]
        if len(recent) > _CRASH_LIMIT:
            reason = (
                f"The engine for '{model.id}' exited {len(recent)} times within "
                f"{_CRASH_WINDOW:.0f} s (last code {engine.returncode}); load it again to retry"
            )
            self._mark_failed(model, ModelLoadError(reason), SYSTEM, "restart", 0.0)
            return
        self.metrics.restarts.labels(model.id).inc()
        self._begin_load(model, SYSTEM, "restart_after_crash")

    async def _reap_idle(self) -> None:
        ttl = self.settings.idle_ttl_seconds
        interval = max(0.2, min(ttl / 4, 10.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for model in list(self.models.values()):
                if model.state is ModelState.READY and model.idle and now - model.last_used >= ttl:
                    with contextlib.suppress(ModelBusyError):
                        await self.unload(model, SYSTEM, "idle_ttl")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
