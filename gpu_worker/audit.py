"""Audit trail of lifecycle actions: one JSON object per line, appended.

Each line says who (token id, and the user header when set), what (load, unload,
reload, and the worker's own evictions and restarts as `system`), which model, when,
the result and how long it took.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self,
        *,
        actor: str,
        action: str,
        model: str,
        result: str,
        duration_s: float,
        **detail: Any,
    ) -> None:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "unix": round(time.time(), 3),
            "actor": actor,
            "action": action,
            "model": model,
            "result": result,
            "duration_s": round(duration_s, 3),
            **detail,
        }
        logger.info("audit", extra={k: v for k, v in entry.items() if k not in ("ts", "unix")})
        if self.path is None:
            return
        line = json.dumps(entry, default=str) + "\n"
        # One write per line on an O_APPEND descriptor: lines never interleave.
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
