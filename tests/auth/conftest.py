"""Keys generated once per session, a local JWKS endpoint per test, clean caches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from spine.auth.jwks import clear_jwks_caches
from spine.settings import AuthSettings, Settings
from tests.auth.keys import SECRET, JwksServer, SigningKey, ec_key, jwks_server, rsa_key


@pytest.fixture(scope="session")
def rsa() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="session")
def ec() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture
def jwks(rsa: SigningKey, ec: SigningKey) -> Iterator[JwksServer]:
    with jwks_server(rsa, ec) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    clear_jwks_caches()
    yield
    clear_jwks_caches()


def settings_with(**auth: Any) -> Settings:
    return Settings(auth=AuthSettings(**auth))


@pytest.fixture
def idp(jwks: JwksServer) -> Settings:
    """An identity provider with a JWKS, as config.toml would configure it."""
    return settings_with(
        jwt_issuer="https://idp.example/",
        jwt_audience="spine-api",
        jwt_jwks_url=jwks.url,
        jwt_algorithms=["RS256", "ES256"],
        jwt_leeway_seconds=30,
    )
