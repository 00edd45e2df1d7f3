"""The request headers that steer the response cache (docs/cache.md).

- `x-spine-cache: force` caches a request that is not deterministic (no temperature
  0, no seed); `auto` (the default) caches only deterministic ones.
- `Cache-Control: no-cache` skips the lookup but keeps the fresh answer (a refresh);
  `Cache-Control: no-store` leaves the cache out entirely (no lookup, nothing kept).
  Other Cache-Control directives are ignored, as HTTP caches ignore unknown ones.
"""

from __future__ import annotations

from starlette.requests import Request

from spine.errors import InvalidRequestError
from spine.pipeline.cache import CacheControl

CACHE_MODE_HEADER = "x-spine-cache"
_MODES = ("auto", "force")


def cache_control(request: Request) -> CacheControl:
    mode = request.headers.get(CACHE_MODE_HEADER, "auto").strip().lower()
    if mode not in _MODES:
        raise InvalidRequestError(
            f"Invalid value for header '{CACHE_MODE_HEADER}': {mode!r}. "
            f"Use one of: {', '.join(_MODES)}.",
            param=CACHE_MODE_HEADER,
            code="invalid_value",
        )
    directives = {
        part.split("=", 1)[0].strip().lower()
        for part in request.headers.get("cache-control", "").split(",")
    }
    no_store = "no-store" in directives
    return CacheControl(
        force=mode == "force",
        read=not (no_store or "no-cache" in directives),
        write=not no_store,
    )
