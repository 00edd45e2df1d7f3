"""require_scope / AdminDep: admin routes admit only principals holding the scope."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from spine.api.app import create_app
from spine.api.deps import AdminDep, require_scope
from spine.auth.jwt import issue_token
from spine.auth.principal import Principal
from spine.registry.source import FileRegistrySource
from spine.settings import FunctionSettings, Settings

MODELS = """\
version: 1
models:
  - id: m
    provider: openai
    model: gpt-4o-mini
    api_key: {env: UNUSED_KEY}
    context_window: 8000
"""

router = APIRouter()
PromptWriterDep = Annotated[Principal, Depends(require_scope("prompts:write"))]


@router.post("/admin-only")
async def admin_only(principal: AdminDep) -> dict[str, str]:
    return {"subject": principal.subject}


@router.post("/prompts-write")
async def prompts_write(principal: PromptWriterDep) -> dict[str, str]:
    return {"subject": principal.subject}


def app_for(tmp_path: Path, *, verify_jwt: bool = True) -> FastAPI:
    (tmp_path / "models.yaml").write_text(MODELS)
    settings = Settings(functions={"scoped": FunctionSettings(verify_jwt=verify_jwt)})
    return create_app(
        "scoped",
        [router],
        settings=settings,
        registry=FileRegistrySource(tmp_path / "models.yaml", interval=0),
    )


def bearer(*scopes: str) -> dict[str, str]:
    principal = Principal(subject="caller", credential="api_key", scopes=frozenset(scopes))
    return {"Authorization": f"Bearer {issue_token(principal, Settings()).token}"}


@pytest.mark.parametrize(
    ("path", "scopes", "status"),
    [
        ("/admin-only", ("admin",), 200),
        ("/admin-only", ("chat", "prompts:write"), 403),
        ("/admin-only", (), 403),
        ("/prompts-write", ("prompts:write",), 200),
        ("/prompts-write", ("admin",), 200),  # admin holds every scope
        ("/prompts-write", ("prompts:read",), 403),
    ],
)
def test_scopes_gate_routes(
    tmp_path: Path, path: str, scopes: tuple[str, ...], status: int
) -> None:
    with TestClient(app_for(tmp_path)) as client:
        response = client.post(path, headers=bearer(*scopes))
    assert response.status_code == status, response.text
    if status == 403:
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("permission_error", "insufficient_scope")


def test_unauthenticated_is_401_not_403(tmp_path: Path) -> None:
    with TestClient(app_for(tmp_path)) as client:
        assert client.post("/admin-only").status_code == 401


def test_public_function_is_never_admin(tmp_path: Path) -> None:
    # verify_jwt = false: every caller is anonymous, and anonymous holds no scope.
    with TestClient(app_for(tmp_path, verify_jwt=False)) as client:
        response = client.post("/admin-only", headers=bearer("admin"))
    assert response.status_code == 403
