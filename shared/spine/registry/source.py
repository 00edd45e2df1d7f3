"""Where a running function gets its current registry from.

`FileRegistrySource` re-reads `models.yaml` when its modification time changes,
checked at most every `interval` seconds, so an operator's edit reaches a running
local stack without a restart. An edit that fails validation is never served: the
last good registry stays, and the problems are logged once per bad edit.
A source that cannot load a valid registry at start raises, so a function never
starts serving a bad config.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

from spine.errors import ConfigError
from spine.observability import emit_metric, get_logger
from spine.registry.loader import parse_registry
from spine.registry.resolve import Registry

logger = get_logger(__name__)


class RegistrySource(Protocol):
    def current(self) -> Registry: ...


class StaticRegistrySource:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def current(self) -> Registry:
        return self._registry


class FileRegistrySource:
    def __init__(self, path: Path, *, interval: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._registry = self._load()  # raises ConfigError: refuse to start
        self._checked_at = time.monotonic()
        self._rejected: tuple[int, int, int] | None = None

    def current(self) -> Registry:
        if time.monotonic() - self._checked_at >= self.interval:
            self._refresh()
        return self._registry

    def _stat(self) -> tuple[int, int, int]:
        # Nanosecond mtime, size and inode: editors that write a new file and rename
        # it over the old one change the inode even within one mtime tick.
        stat = self.path.stat()
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _load(self) -> Registry:
        text = self.path.read_text(encoding="utf-8")
        return parse_registry(text, source=self.path.name)

    def _refresh(self) -> None:
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                signature = self._stat()
            except OSError:
                logger.error("models file unreadable, keeping last good config")
                return
            if signature in (self._signature, self._rejected):
                return
            try:
                registry = self._load()
            except (ConfigError, OSError) as exc:
                self._rejected = signature
                problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
                logger.error(
                    "models file rejected, keeping last good config",
                    extra={"path": str(self.path), "problems": problems},
                )
                emit_metric("ConfigRejected", 1, "Count")
                return
            self._registry = registry
            self._signature = signature
            self._rejected = None
            logger.info(
                "models file reloaded",
                extra={"path": str(self.path), "models": len(registry.models)},
            )
