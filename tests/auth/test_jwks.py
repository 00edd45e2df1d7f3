"""The JWKS cache: one fetch per container and TTL, an early refresh for a rotated
key, and never a fetch storm from made-up kids."""

from __future__ import annotations

from typing import Any

import pytest

from spine.auth.jwks import JwksCache, parse_keys
from spine.errors import AuthenticationError, ServiceUnavailableError
from tests.auth.keys import JwksServer, SigningKey, ec_key, jwks_server, rsa_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_for(server: JwksServer, clock: Clock, **kw: Any) -> JwksCache:
    options: dict[str, Any] = {"ttl_seconds": 600, "min_refresh_seconds": 30, "timeout_seconds": 2}
    options.update(kw)
    return JwksCache(server.url, clock=clock, **options)


async def test_keys_are_fetched_once_and_served_from_cache(
    jwks: JwksServer, rsa: SigningKey, ec: SigningKey
) -> None:
    cache = cache_for(jwks, Clock())
    for _ in range(20):
        assert (await cache.key(rsa.kid)).key_type == "RSA"
        assert (await cache.key(ec.kid)).algorithm == "ES256"
    assert jwks.requests == 1


async def test_rotated_key_is_fetched_on_first_sight(jwks: JwksServer, rsa: SigningKey) -> None:
    clock = Clock()
    cache = cache_for(jwks, clock)
    await cache.key(rsa.kid)
    # Given the provider publishes a new key a while later
    new = ec_key("ec-rotated")
    jwks.publish(rsa, new)
    clock.now += 31
    # Then a token naming it triggers one refresh and is served
    assert (await cache.key(new.kid)).kid == "ec-rotated"
    assert jwks.requests == 2


async def test_flood_of_unknown_kids_fetches_once_per_interval(
    jwks: JwksServer, rsa: SigningKey
) -> None:
    clock = Clock()
    cache = cache_for(jwks, clock, min_refresh_seconds=30)
    await cache.key(rsa.kid)
    clock.now += 60
    # When 200 tokens name random kids within the interval
    for n in range(200):
        with pytest.raises(AuthenticationError) as caught:
            await cache.key(f"random-{n}")
        assert caught.value.code == "unknown_key"
        clock.now += 0.1
    # Then the provider saw one refresh for all of them
    assert jwks.requests == 2
    # And one more once the interval has passed
    clock.now += 30
    with pytest.raises(AuthenticationError):
        await cache.key("random-again")
    assert jwks.requests == 3
    # Known keys were served throughout
    assert (await cache.key(rsa.kid)).kid == rsa.kid


async def test_keys_are_refetched_after_the_ttl(jwks: JwksServer, rsa: SigningKey) -> None:
    clock = Clock()
    cache = cache_for(jwks, clock, ttl_seconds=600)
    await cache.key(rsa.kid)
    clock.now += 599
    await cache.key(rsa.kid)
    assert jwks.requests == 1
    clock.now += 2
    await cache.key(rsa.kid)
    assert jwks.requests == 2


async def test_unreachable_jwks_on_cold_start_is_503_and_not_hammered(rsa: SigningKey) -> None:
    clock = Clock()
    with jwks_server(rsa) as server:
        server.status = 500
        cache = cache_for(server, clock)
        for _ in range(5):
            with pytest.raises(ServiceUnavailableError) as caught:
                await cache.key(rsa.kid)
            assert caught.value.code == "jwks_unavailable"
        assert server.requests == 1
        # Once the provider is back and the interval passed, keys are served.
        server.status = 200
        clock.now += 30
        assert (await cache.key(rsa.kid)).kid == rsa.kid


async def test_failed_refresh_keeps_serving_the_previous_keys(rsa: SigningKey) -> None:
    clock = Clock()
    with jwks_server(rsa) as server:
        cache = cache_for(server, clock, ttl_seconds=60)
        await cache.key(rsa.kid)
        server.status = 503
        clock.now += 61
        assert (await cache.key(rsa.kid)).kid == rsa.kid
        assert server.requests == 2


async def test_non_jwks_documents_are_not_keys(rsa: SigningKey) -> None:
    with jwks_server(rsa) as server:
        server.document = {"not_keys": []}
        with pytest.raises(ServiceUnavailableError):
            await cache_for(server, Clock()).key(rsa.kid)


def test_only_public_signing_keys_are_kept() -> None:
    rsa = rsa_key("good")
    private = rsa.jwk() | {"kid": "private", "d": "AQAB"}
    entries: list[Any] = [
        rsa.jwk(),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},  # would be an HMAC secret
        rsa.jwk() | {"kid": "enc", "use": "enc"},
        rsa.jwk() | {"kid": ""},
        private,
        {"kty": "RSA", "kid": "broken", "n": "x", "e": "y"},
        "not an object",
    ]
    assert sorted(parse_keys(entries, "test")) == ["good"]
    # An RSA key that does not name its algorithm may serve any RSA algorithm.
    assert parse_keys([rsa.jwk(with_alg=False)], "test")["good"].algorithm is None
