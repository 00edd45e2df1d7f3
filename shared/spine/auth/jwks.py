"""An identity provider's signing keys (JWKS), cached per container.

- Fetched on first use, then served for `auth.jwks_cache_seconds`.
- A token naming an unknown `kid` triggers one early fetch (the provider rotated its
  keys), but fetches are never closer together than `auth.jwks_min_refresh_seconds`:
  a flood of tokens with made-up kids costs the provider one request per interval.
- When a refresh fails the previous keys stay in use; with none at all the request
  gets 503 (the provider is down, not the client wrong).

Only public signature keys are kept: symmetric (`oct`) and encryption (`use: enc`)
keys are dropped, so nothing from the JWKS can ever act as an HMAC secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError, PyJWTError

from spine.errors import AuthenticationError, ServiceUnavailableError
from spine.observability import get_logger
from spine.settings import AuthSettings

logger = get_logger(__name__)

# A JWKS is a few kilobytes; anything far larger is not one.
MAX_JWKS_BYTES = 1_048_576
_SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class JwksFetchError(Exception):
    """The JWKS could not be fetched or parsed (the message is for the log)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key_type: str  # "RSA" | "EC" | "OKP"
    # The one algorithm the key may verify: as the JWK declares it, or implied by an
    # EC key's curve (P-256 -> ES256); None for an RSA key that does not say.
    algorithm: str | None
    key: Any  # the `cryptography` public key


class JwksCache:
    """The keys of one JWKS URL. Thread-safe: the local emulator serves several
    functions from one process, each on its own event loop."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        min_refresh_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self.fetch_count = 0  # successful fetches, for logs and tests

    async def key(self, kid: str) -> SigningKey:
        """The key named `kid`; AuthenticationError when the provider has none."""
        if self._is_stale():
            await self._refresh("expired" if self._keys else "cold start")
        key = self._keys.get(kid)
        if key is None and self._keys:
            # Rotation: the provider may have published a key we have not seen yet.
            await self._refresh("unknown kid")
            key = self._keys.get(kid)
        if not self._keys:
            raise ServiceUnavailableError(
                "The identity provider's signing keys cannot be fetched right now.",
                code="jwks_unavailable",
            )
        if key is None:
            raise AuthenticationError(
                "The token names a signing key (kid) the identity provider does not publish.",
                code="unknown_key",
            )
        return key

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.ttl_seconds

    def _claim_attempt(self) -> bool:
        """Whether this caller may fetch now (and, if so, marks the attempt)."""
        with self._lock:
            now = self._clock()
            if (
                self._last_attempt is not None
                and now - self._last_attempt < self.min_refresh_seconds
            ):
                return False
            self._last_attempt = now
            return True

    async def _refresh(self, reason: str) -> None:
        if not self._claim_attempt():
            return
        try:
            keys = await self._fetch()
        except JwksFetchError as exc:
            logger.warning(
                "jwks fetch failed",
                extra={"url": self.url, "reason": reason, "error": str(exc)},
            )
            return
        with self._lock:
            self._keys = keys
            self._fetched_at = self._clock()
            self.fetch_count += 1
        logger.info("jwks fetched", extra={"url": self.url, "reason": reason, "keys": sorted(keys)})

    async def _fetch(self) -> dict[str, SigningKey]:
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds, follow_redirects=False
            ) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise JwksFetchError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise JwksFetchError(f"status {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise JwksFetchError(f"{len(response.content)} bytes is too large for a JWKS")
        try:
            document = response.json()
        except ValueError as exc:
            raise JwksFetchError("not JSON") from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JwksFetchError("no 'keys' list")
        return parse_keys(entries, self.url)


def parse_keys(entries: list[Any], url: str) -> dict[str, SigningKey]:
    """Public signing keys by kid; entries that are not one are skipped and logged."""
    keys: dict[str, SigningKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            logger.warning("jwks key skipped", extra={"url": url, "why": "no kid"})
            continue
        if entry.get("kty") not in _SIGNING_KEY_TYPES or entry.get("use", "sig") != "sig":
            logger.warning(
                "jwks key skipped",
                extra={"url": url, "kid": kid, "why": "not a public signing key"},
            )
            continue
        if any(private in entry for private in ("d", "p", "q")):
            # A private key published by mistake: verifying with it would work, but
            # the provider is compromised; refuse it loudly.
            logger.error("jwks key skipped", extra={"url": url, "kid": kid, "why": "private key"})
            continue
        try:
            parsed = PyJWK(entry)
        except (PyJWKError, PyJWTError, ValueError) as exc:
            logger.warning("jwks key skipped", extra={"url": url, "kid": kid, "why": str(exc)})
            continue
        declared = entry.get("alg")
        keys[kid] = SigningKey(
            kid=kid,
            key_type=str(entry["kty"]),
            algorithm=parsed.algorithm_name if declared or entry["kty"] == "EC" else None,
            key=parsed.key,
        )
    return keys


_caches: dict[tuple[str, float, float, float], JwksCache] = {}
_caches_lock = threading.Lock()


def jwks_cache(auth: AuthSettings) -> JwksCache:
    """The container's cache for the configured JWKS URL."""
    if auth.jwt_jwks_url is None:
        raise ValueError("auth.jwt_jwks_url is not set")
    ident = (
        auth.jwt_jwks_url,
        auth.jwks_cache_seconds,
        auth.jwks_min_refresh_seconds,
        auth.jwks_timeout_seconds,
    )
    with _caches_lock:
        cache = _caches.get(ident)
        if cache is None:
            cache = _caches[ident] = JwksCache(
                auth.jwt_jwks_url,
                ttl_seconds=auth.jwks_cache_seconds,
                min_refresh_seconds=auth.jwks_min_refresh_seconds,
                timeout_seconds=auth.jwks_timeout_seconds,
            )
        return cache


def clear_jwks_caches() -> None:
    """Forget every cached JWKS (tests; a container never needs to)."""
    with _caches_lock:
        _caches.clear()
