"""Run Lambda handlers in this process the way the Lambda runtime does.

Containers. Lambda gives each container one request at a time. Each function here
gets a pool of `pool_size` container threads; a request waits for a free one. Every
container thread owns one asyncio event loop for its whole life (set with
`asyncio.set_event_loop`), because Mangum runs the app on `asyncio.get_event_loop()`
and the database layer keeps one connection per event loop, just as a warm Lambda
container keeps its loop and connection between requests.

Modules. A function's entry module is imported once, on its first request (a cold
start) or at start with eager warm containers, from its file path under a name
unique to the function, so three `app.py` files do not collide. All containers of
a function share that module, and all functions share the installed `spine`
package (one interpreter: `get_settings()` is read once for the process). The code
folder is not put on `sys.path`: entry modules import only from the layer.

Web adapter. A function behind Lambda Web Adapter names an ASGI app instead of a
handler (see `FunctionSpec.web_adapter`). Its app runs in a container thread too:
event invocations go through Mangum (the adapter's buffered mode: event in, proxy
result out), and `submit_asgi` runs one HTTP request through the app on the
container's loop, for the server to relay a streamed response as it is produced.

Environment: see `spine_tools.local.environment`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TypeVar

from spine_tools.local.environment import patched_environ
from spine_tools.local.intrinsics import LOCAL_ACCOUNT_ID, LOCAL_REGION
from spine_tools.local.template import FunctionSpec

LoadedT = TypeVar("LoadedT")
logger = logging.getLogger("spine_tools.local")

Handler = Callable[[dict[str, Any], Any], Any]
AsgiApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

DEFAULT_POOL_SIZE = 4
# Serializes imports that apply per-function variables to the process environment.
_IMPORT_LOCK = threading.Lock()


# --- context ------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """The context object of the Python Lambda runtime (awslambdaric's fields)."""

    function_name: str
    memory_limit_in_mb: str  # a string in the real runtime, read from the environment
    invoked_function_arn: str
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float  # time.monotonic() at which Lambda would stop the invocation
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None

    @classmethod
    def for_invocation(cls, spec: FunctionSpec, deadline: float) -> LambdaContext:
        return cls(
            function_name=spec.function_name,
            memory_limit_in_mb=str(spec.memory_mb),
            invoked_function_arn=(
                f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{spec.function_name}"
            ),
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{spec.function_name}",
            log_stream_name=(f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"),
            deadline=deadline,
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# --- invocation outcomes ----------------------------------------------------------------


@dataclass(frozen=True)
class Succeeded:
    result: Any


@dataclass(frozen=True)
class Failed:
    """The handler (or its module's import) raised: Lambda reports an error."""

    error_type: str
    message: str
    stack: list[str]

    def as_lambda_error(self) -> dict[str, Any]:
        return {
            "errorMessage": self.message,
            "errorType": self.error_type,
            "stackTrace": self.stack,
        }


@dataclass(frozen=True)
class TimedOut:
    """`by_gateway`: API Gateway's 29 s gave up first; else the function's Timeout."""

    seconds: float
    by_gateway: bool = False

    def as_lambda_error(self) -> dict[str, Any]:
        return {
            "errorMessage": f"Task timed out after {self.seconds:.2f} seconds",
            "errorType": "Sandbox.Timedout",
        }


Outcome = Succeeded | Failed | TimedOut


# --- functions ----------------------------------------------------------------------


def _module_name(spec: FunctionSpec) -> str:
    return "_spine_local_fn_" + re.sub(r"\W", "_", f"{spec.logical_id}__{spec.module_name}")


# How long a container's loop may go on finishing a request's leftover tasks.
LEFTOVER_GRACE_SECONDS = 1.0


async def _settle(grace: float) -> None:
    """Run until no other task is left on this loop, for at most `grace` seconds."""
    deadline = time.monotonic() + grace
    quiet_rounds = 0
    while quiet_rounds < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0)  # lets collected generators schedule their closing
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        if not pending:
            quiet_rounds += 1
            continue
        quiet_rounds = 0
        await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))


def _new_container_loop() -> None:
    # Runs once in each container thread: its own loop for the thread's whole life.
    asyncio.set_event_loop(asyncio.new_event_loop())


@dataclass
class _Invocation:
    """What the server needs to watch one invocation: when it started, on which loop."""

    on_start: Callable[[], object] | None = None
    started: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    loop: asyncio.AbstractEventLoop | None = None


class FunctionRuntime:
    """One function: its handler, loaded once, and its pool of container threads."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        import_environment: Mapping[str, str] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.spec = spec
        self.pool_size = pool_size
        self._import_environment = dict(import_environment or {})
        self._handler: Handler | None = None
        self._app: AsgiApp | None = None  # web-adapter functions only
        self._load_lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=pool_size,
            thread_name_prefix=f"container-{spec.logical_id}",
            initializer=_new_container_loop,
        )

    def load(self) -> Handler:
        """Import the entry module (once; retried after a failed import, as Lambda
        retries a failed init on the next request)."""
        with self._load_lock:
            if self._handler is None:
                self._handler = self._import_handler()
            return self._handler

    def _import_handler(self) -> Handler:
        spec = self.spec
        path = spec.module_path
        if not path.is_file():
            raise ImportError(f"{spec.logical_id}: handler module {path} does not exist")
        name = _module_name(spec)
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module: ModuleType = importlib.util.module_from_spec(module_spec)
        started = time.perf_counter()
        with _IMPORT_LOCK, patched_environ(self._import_environment):
            # Registered first, as `import` does: dataclasses and pydantic look the
            # defining module up in sys.modules while it executes.
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        handler = getattr(module, spec.handler_name, None)
        if not callable(handler):
            raise ImportError(f"{spec.logical_id}: {path} has no callable {spec.handler_name!r}")
        logger.info(
            "function %s loaded in %.0f ms", spec.logical_id, (time.perf_counter() - started) * 1e3
        )
        if spec.web_adapter:
            from mangum import Mangum

            self._app = handler
            # Event invocations: what the adapter does in buffered mode.
            return Mangum(handler, lifespan="off")
        return handler  # type: ignore[no-any-return]

    def load_app(self) -> AsgiApp:
        """The ASGI app of a web-adapter function (imported once, as `load`)."""
        if not self.spec.web_adapter:
            raise TypeError(f"{self.spec.logical_id} is not served through Lambda Web Adapter")
        self.load()
        assert self._app is not None
        return self._app

    def _begin(self, invocation: _Invocation, load: Callable[[], LoadedT]) -> LoadedT | Failed:
        """Load the function (a cold start: like Lambda's init phase, not counted in
        the Timeout; the gateway's clock keeps running, as it does in AWS), then start
        the invocation's clock."""
        invocation.loop = asyncio.get_event_loop()
        loaded: LoadedT | Failed
        try:
            loaded = load()
        except Exception as exc:
            loaded = self._failed(exc)
        invocation.started_at = time.monotonic()
        invocation.started.set()
        if invocation.on_start is not None:
            invocation.on_start()
        return loaded

    def _run(self, event: dict[str, Any], invocation: _Invocation) -> Outcome:
        handler = self._begin(invocation, self.load)
        if isinstance(handler, Failed):
            return handler
        context = LambdaContext.for_invocation(
            self.spec, invocation.started_at + self.spec.timeout_seconds
        )
        try:
            return Succeeded(handler(event, context))
        except Exception as exc:
            return self._failed(exc)

    def _failed(self, exc: Exception) -> Failed:
        logger.error(
            "function %s raised %s", self.spec.logical_id, type(exc).__name__, exc_info=exc
        )
        return Failed(type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__))

    def invoke(self, event: dict[str, Any]) -> Outcome:
        """Run one invocation and wait for it (the function's Timeout applies)."""
        invocation = _Invocation()
        future = self._pool.submit(self._run, event, invocation)
        invocation.started.wait()
        remaining = invocation.started_at + self.spec.timeout_seconds - time.monotonic()
        try:
            return future.result(timeout=max(0.0, remaining))
        except concurrent.futures.TimeoutError:
            self._abandon(invocation)
            return TimedOut(self.spec.timeout_seconds)

    async def invoke_async(self, event: dict[str, Any], gateway_timeout: float) -> Outcome:
        """As `invoke`, from an event loop, also bounded by API Gateway's integration
        timeout, which counts the wait for a free container too."""
        gateway_deadline = time.monotonic() + gateway_timeout
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        invocation = _Invocation(on_start=lambda: loop.call_soon_threadsafe(started.set))
        future: asyncio.Future[Outcome] = asyncio.wrap_future(
            self._pool.submit(self._run, event, invocation)
        )
        waiting: asyncio.Future[Any] = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait(
                {future, waiting},
                timeout=gateway_deadline - time.monotonic(),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiting.cancel()
        if future.done():
            return future.result()
        if not invocation.started.is_set():
            future.cancel()  # still queued: it never reaches a container
            return TimedOut(gateway_timeout, by_gateway=True)
        function_deadline = invocation.started_at + self.spec.timeout_seconds
        deadline = min(function_deadline, gateway_deadline)
        done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - time.monotonic()))
        if done:
            return future.result()
        self._abandon(invocation)
        if gateway_deadline < function_deadline:
            return TimedOut(gateway_timeout, by_gateway=True)
        return TimedOut(self.spec.timeout_seconds)

    def submit_asgi(
        self, call: Callable[[AsgiApp], Awaitable[None]], on_start: Callable[[], object]
    ) -> tuple[concurrent.futures.Future[Outcome], _Invocation]:
        """Run `call(app)` on a free container's loop (a web-adapter function). The
        future holds Succeeded(None) or Failed; `on_start` runs in the container once the
        function is loaded, as for event invocations."""
        invocation = _Invocation(on_start=on_start)
        return self._pool.submit(self._run_asgi, call, invocation), invocation

    def _run_asgi(
        self, call: Callable[[AsgiApp], Awaitable[None]], invocation: _Invocation
    ) -> Outcome:
        app = self._begin(invocation, self.load_app)
        if isinstance(app, Failed):
            return app
        loop = asyncio.get_event_loop()
        try:
            loop.run_until_complete(call(app))
        except asyncio.CancelledError:
            return TimedOut(self.spec.timeout_seconds)
        except Exception as exc:
            return self._failed(exc)
        finally:
            # Let the loop finish what the request left behind, as uvicorn's loop,
            # which keeps running, does behind the web adapter: an SDK's nested stream
            # generators (google-genai's) are closed by tasks the loop schedules when
            # they are collected, and closing their HTTP responses takes I/O. Without
            # this, a stream the client left stayed open upstream until the
            # container's next request.
            loop.run_until_complete(_settle(LEFTOVER_GRACE_SECONDS))
        return Succeeded(None)

    def abandon(self, invocation: _Invocation) -> None:
        self._abandon(invocation)

    def _abandon(self, invocation: _Invocation) -> None:
        """Lambda would kill the container; a thread cannot be killed, so cancel what
        runs on its loop (async handlers stop at their next await)."""
        logger.error("function %s timed out", self.spec.logical_id)
        loop = invocation.loop
        if loop is not None and not loop.is_closed():

            def cancel_all() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()

            loop.call_soon_threadsafe(cancel_all)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
