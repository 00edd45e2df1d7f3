"""CORS: browser pages on allowed origins may call the API (config.toml [cors]); the
preflight of every path is answered by the function that serves the path (template.yaml
routes its OPTIONS there)."""

from __future__ import annotations

import pytest

from spine.settings import get_settings
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

APP = "https://app.example.com"


def _allow(monkeypatch: pytest.MonkeyPatch, *origins: str) -> None:
    monkeypatch.setenv("SPINE_CORS__ALLOW_ORIGINS", "[" + ",".join(f'"{o}"' for o in origins) + "]")
    get_settings.cache_clear()


def _preflight(gateway: Gateway, path: str, origin: str, method: str = "POST") -> Result:
    return gateway.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            # What the official openai client sends from a browser.
            "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os",
        },
    )


def test_every_routed_path_has_a_preflight_on_its_own_function(gateway: Gateway) -> None:
    # Given which function serves each path the template routes
    owners = {
        (e.path, spec.logical_id)
        for spec in gateway.template.functions.values()
        for e in spec.events
        if e.method != "OPTIONS"
    }
    # Then each path has one OPTIONS event, sent to that same function (one function
    # for them all would pass Lambda's 20 KB resource-policy limit as paths grow)
    preflights = [
        (e.path, spec.logical_id)
        for spec in gateway.template.functions.values()
        for e in spec.events
        if e.method == "OPTIONS"
    ]
    assert len(preflights) == len(set(preflights))
    assert set(preflights) == owners


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/prompts/p1/labels/prod", "/v1/models/a/b"]
)
def test_an_allowed_origin_gets_its_preflight(
    gateway: Gateway, env: Env, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # Given an allow-list
    _allow(monkeypatch, APP, "https://other.example.com")
    # When a page on an allowed origin asks before its call
    result = _preflight(gateway, path, APP)
    # Then the call is allowed, for that origin only, with the client's headers
    assert result.status == 200
    headers = result.headers
    assert headers["access-control-allow-origin"] == APP
    assert "POST" in headers["access-control-allow-methods"]
    allowed = headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-stainless-os"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert headers["access-control-max-age"] == "600"


def test_an_origin_outside_the_list_is_refused(
    gateway: Gateway, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _allow(monkeypatch, APP)
    result = _preflight(gateway, "/v1/chat/completions", "https://evil.example.net")
    assert result.status == 400
    assert "access-control-allow-origin" not in result.headers


def test_without_an_allow_list_no_origin_is_allowed(gateway: Gateway, env: Env) -> None:
    # Given the default: no [cors] origins
    result = _preflight(gateway, "/v1/chat/completions", APP)
    # Then the preflight is OpenAI's 404 for a route nothing answers, with no CORS header
    assert result.status == 404
    assert "access-control-allow-origin" not in result.headers
    assert result.error["message"] == "Invalid URL (OPTIONS /v1/chat/completions)"


def test_answers_and_errors_carry_the_headers_a_page_may_read(
    gateway: Gateway, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _allow(monkeypatch, APP)
    key = env.create_key()
    # When a page calls a function with a key, and without one
    ok = gateway.request("GET", "/v1/models", key=key, headers={"Origin": APP})
    refused = gateway.request("GET", "/v1/models", headers={"Origin": APP})
    # Then both carry the origin, and x-request-id is readable by the page
    assert ok.status == 200
    assert refused.status == 401
    for result in (ok, refused):
        assert result.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in result.headers["access-control-expose-headers"]
