"""Where a running function gets its current registry from.

Every refreshing source shares one rule set (`RefreshingRegistrySource`):
- it asks its origin for a newer version at most every `interval` seconds, so
  requests in between pay nothing, and never re-parses a version it has seen;
- an edit that fails validation is never served: the last good registry stays, the
  problems are logged once per bad version and a `ConfigRejected` metric is emitted;
- an origin that cannot be read keeps the last good registry too
  (`ConfigSourceUnavailable`), and is asked again after the next interval;
- at start, a source with a `fallback` file (the `models.yaml` packaged with the
  function) serves that file when its origin is unreachable or invalid; without one,
  or when the fallback is invalid too, it raises ConfigError, so a function never
  starts serving a bad config.

`FileRegistrySource` watches a local file (modification time, size, inode); the S3
and AppConfig sources live in `spine.aws`, as they need boto3.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spine.errors import ConfigError
from spine.observability import emit_metric, get_logger
from spine.registry.loader import load_registry, parse_registry
from spine.registry.resolve import Registry

logger = get_logger(__name__)

Clock = Callable[[], float]


class RegistrySource(Protocol):
    def current(self) -> Registry: ...


class StaticRegistrySource:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def current(self) -> Registry:
        return self._registry


@dataclass(frozen=True)
class Fetched:
    """One version of the models file as its origin served it."""

    version: Hashable  # ETag, file signature or content digest
    content: bytes
    name: str  # how problems name the file: "models.yaml", "s3://bucket/models.yaml"


class RefreshingRegistrySource(ABC):
    """The last good registry of an origin that may change while the function runs.

    Subclasses implement `_fetch` and call `_start` at the end of their constructor.
    With `background=True` a due check runs on a daemon thread while requests keep
    getting the current registry; otherwise the request that finds it due waits.
    """

    kind: str = "file"  # the `source` field of logs and metrics

    def __init__(
        self,
        *,
        interval: float,
        origin: str,
        fallback: Path | None = None,
        background: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        self.interval = interval
        self.origin = origin
        self.fallback = fallback
        self.background = background
        self._clock = clock
        self._refresh_lock = threading.Lock()
        self._seen: Hashable | None = None  # last version fetched, served or rejected
        self._registry: Registry | None = None
        self._checked_at = clock()
        self.serving_fallback = False

    @abstractmethod
    def _fetch(self, seen: Hashable | None) -> Fetched | None:
        """The origin's current version, or None when it is still `seen`. Raises when
        the origin cannot be read."""

    def current(self) -> Registry:
        if self._clock() - self._checked_at >= self.interval:
            if self.background:
                self._refresh_in_background()
            else:
                self.refresh()
        assert self._registry is not None
        return self._registry

    def refresh(self) -> None:
        """Ask the origin now. A refresh already running elsewhere counts as this one."""
        if not self._refresh_lock.acquire(blocking=False):
            return
        try:
            self._checked_at = self._clock()
            try:
                fetched = self._fetch(self._seen)
            except Exception as exc:  # any failure to read: keep serving what we have
                self._unavailable(exc, "models source unreadable, keeping last good config")
                return
            if fetched is None or fetched.version == self._seen:
                return
            self._seen = fetched.version
            try:
                registry = self._parse(fetched, "models config rejected, keeping last good config")
            except ConfigError:
                return
            self._registry = registry
            self.serving_fallback = False
            logger.info(
                "models config reloaded",
                extra={**self._fields(fetched), "models": len(registry.models)},
            )
        finally:
            self._refresh_lock.release()

    def _start(self) -> None:
        """The first load, in the constructor: origin, else fallback, else raise."""
        self._checked_at = self._clock()
        try:
            fetched = self._fetch(None)
            if fetched is None:
                raise ConfigError([f"{self.origin}: no configuration available"])
        except Exception as exc:
            if self.fallback is None:
                raise _start_error(self.origin, exc) from exc
            self._unavailable(exc, "models source unreadable at start, serving the packaged file")
            self._serve_fallback()
            return
        self._seen = fetched.version
        try:
            self._registry = self._parse(fetched, "models config rejected at start")
        except ConfigError:
            if self.fallback is None:
                raise
            self._serve_fallback()

    def _serve_fallback(self) -> None:
        assert self.fallback is not None
        self._registry = load_registry(self.fallback)  # raises ConfigError: refuse to start
        self.serving_fallback = True

    def _parse(self, fetched: Fetched, rejected_event: str) -> Registry:
        """The registry of a fetched version; an invalid one is logged and counted."""
        try:
            return parse_registry(_decode(fetched), source=fetched.name)
        except ConfigError as exc:
            logger.error(rejected_event, extra={**self._fields(fetched), "problems": exc.problems})
            emit_metric("ConfigRejected", 1, "Count")
            raise

    def _unavailable(self, exc: Exception, event: str) -> None:
        logger.warning(
            event,
            extra={
                "source": self.kind,
                "origin": self.origin,
                "error_class": type(exc).__name__,
                "error": str(exc),
            },
        )
        emit_metric("ConfigSourceUnavailable", 1, "Count")

    def _refresh_in_background(self) -> None:
        if self._refresh_lock.locked():
            return
        # Claim the interval now, so the requests arriving meanwhile start no thread.
        self._checked_at = self._clock()
        threading.Thread(target=self.refresh, name="spine-registry-refresh", daemon=True).start()

    def _fields(self, fetched: Fetched) -> dict[str, object]:
        return {"source": self.kind, "origin": fetched.name, "version": str(fetched.version)}


class FileRegistrySource(RefreshingRegistrySource):
    """`models.yaml` on disk, re-read when its modification time, size or inode change."""

    def __init__(self, path: Path, *, interval: float = 2.0, clock: Clock = time.monotonic) -> None:
        self.path = path
        super().__init__(interval=interval, origin=str(path), clock=clock)
        self._start()

    def _fetch(self, seen: Hashable | None) -> Fetched | None:
        # Nanosecond mtime, size and inode: editors that write a new file and rename
        # it over the old one change the inode even within one mtime tick.
        stat = self.path.stat()
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == seen:
            return None
        return Fetched(signature, self.path.read_bytes(), self.path.name)


def _decode(fetched: Fetched) -> str:
    try:
        return fetched.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{fetched.name}:1: (file): not UTF-8 text ({exc.reason})"]) from exc


def _start_error(origin: str, exc: Exception) -> ConfigError:
    if isinstance(exc, ConfigError):
        return exc
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConfigError([f"{origin}: cannot read: {reason}"])
