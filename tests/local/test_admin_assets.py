"""`spine local` serving the admin app's build under /admin/ (no browser needed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from spine_tools.local.admin_assets import CONTENT_SECURITY_POLICY, admin_routes


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    build = tmp_path / "dist"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_text("<!doctype html><title>app</title>")
    (build / "assets" / "index-abc.js").write_text("console.log('app');" * 50)
    (tmp_path / "secret.txt").write_text("outside the build")
    return build


def client(dist: Path) -> TestClient:
    return TestClient(Starlette(routes=admin_routes(dist)))


def test_index_and_assets_carry_the_security_headers(dist: Path) -> None:
    app = client(dist)
    index = app.get("/admin/")
    assert index.status_code == 200
    assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert index.headers["cache-control"] == "no-cache"
    assert index.headers["x-frame-options"] == "DENY"
    script = app.get("/admin/assets/index-abc.js")
    assert script.status_code == 200
    assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "immutable" in script.headers["cache-control"]


def test_policy_allows_only_the_own_origin() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_gzip_when_the_client_accepts_it(dist: Path) -> None:
    raw = client(dist).get("/admin/assets/index-abc.js", headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.text.startswith("console.log")  # decoded by the client
    plain = client(dist).get("/admin/assets/index-abc.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert len(gzip.compress(plain.content)) < len(plain.content)


@pytest.mark.parametrize(
    "path",
    ["/admin/../secret.txt", "/admin/%2e%2e/secret.txt", "/admin/assets/..%2f..%2fsecret.txt"],
)
def test_nothing_outside_the_build_is_served(dist: Path, path: str) -> None:
    response = client(dist).get(path)
    assert "outside the build" not in response.text


def test_missing_asset_is_404_and_other_paths_are_the_app(dist: Path) -> None:
    app = client(dist)
    assert app.get("/admin/assets/gone.js").status_code == 404
    fallback = app.get("/admin/prompts")
    assert fallback.status_code == 200 and "<title>app</title>" in fallback.text
    redirect = app.get("/admin", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"] == "/admin/"
    assert app.post("/admin/").status_code == 405


def test_unbuilt_app_says_how_to_build_it(tmp_path: Path) -> None:
    response = client(tmp_path / "nothing").get("/admin/")
    assert response.status_code == 404
    assert "make admin" in response.text
