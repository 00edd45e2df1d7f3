"""FastAPI dependencies as `Annotated` aliases (full-stack-fastapi-template style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from spine.api.app import AppState
from spine.auth import api_keys
from spine.auth.principal import ANONYMOUS, Principal
from spine.chat.service import CallContext
from spine.registry.resolve import Registry


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.spine
    return state


StateDep = Annotated[AppState, Depends(app_state)]


def current_registry(state: StateDep) -> Registry:
    return state.registry.current()


RegistryDep = Annotated[Registry, Depends(current_registry)]


async def current_principal(request: Request, state: StateDep) -> Principal:
    if not state.verify_jwt:
        return ANONYMOUS
    return await api_keys.authenticate(request.headers.get("authorization"), state.settings)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def call_context(
    request: Request, state: StateDep, principal: PrincipalDep, registry: RegistryDep
) -> CallContext:
    return CallContext(
        request_id=request.state.request_id,
        principal=principal,
        settings=state.settings,
        registry=registry,
        recorder=state.recorder,
    )


CallContextDep = Annotated[CallContext, Depends(call_context)]
