"""FastAPI dependencies as `Annotated` aliases (full-stack-fastapi-template style)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from spine.api.app import AppState
from spine.api.limits import admit_built_call, admit_call, authenticate_and_admit_call
from spine.api.middleware import RESERVATION_STATE_KEY
from spine.auth.authenticate import authenticate, bearer_token
from spine.auth.principal import ANONYMOUS, Principal
from spine.errors import PermissionDeniedError
from spine.ledger.recorder import SettlingRecorder
from spine.pipeline.context import CallContext
from spine.registry.resolve import Registry, ResolvedModel
from spine.schemas.openai import ChatCompletionRequest

if TYPE_CHECKING:
    from spine.limits.admission import Reservation

# Every dependency is `async def`, even the trivial ones: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per dependency per request.


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.spine
    return state


StateDep = Annotated[AppState, Depends(app_state)]


async def current_registry(state: StateDep) -> Registry:
    return state.registry.current()


RegistryDep = Annotated[Registry, Depends(current_registry)]


# Where a request's principal is kept once known, so that a route depending on both
# the principal and the call context authenticates once, whichever runs first.
PRINCIPAL_STATE_KEY = "principal"


async def current_principal(request: Request, state: StateDep) -> Principal:
    known: Principal | None = getattr(request.state, PRINCIPAL_STATE_KEY, None)
    if known is not None:
        return known
    principal = (
        await authenticate(credential(request), state.settings, state.database)
        if state.verify_jwt
        else ANONYMOUS
    )
    setattr(request.state, PRINCIPAL_STATE_KEY, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def credential(request: Request) -> str | None:
    """The request's credential as an Authorization value: its bearer token, else an
    `x-api-key` header (how Anthropic's clients, Claude Code among them, send a key)."""
    authorization = request.headers.get("authorization")
    if authorization:
        return authorization
    api_key = request.headers.get("x-api-key", "").strip()
    return f"Bearer {api_key}" if api_key else None


def require_scope(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits only principals holding `scope` ("admin" holds every
    scope): `AdminDep`, or `Annotated[Principal, Depends(require_scope("prompts:write"))]`.
    The anonymous principal of a `verify_jwt = false` function holds none."""

    async def scoped_principal(principal: PrincipalDep) -> Principal:
        if not principal.has_scope(scope):
            raise PermissionDeniedError(
                f"This request needs the '{scope}' scope, which your credential does not hold.",
                code="insufficient_scope",
            )
        return principal

    return scoped_principal


# Admin routes: key management, prompt writes, other principals' usage.
AdminDep = Annotated[Principal, Depends(require_scope("admin"))]


async def call_context(request: Request, state: StateDep, registry: RegistryDep) -> CallContext:
    # Rate limits and budgets are taken here, with auth and before any provider
    # call; the reservation is settled to the real usage by the recorder, and what no
    # provider call used (a request refused as invalid) is given back by the request
    # middleware when the response is done. Not a `yield` dependency: FastAPI's exit
    # stack for those costs more per request than the rest of this function.
    # An API key not yet authenticated is looked up in the admission's own statement:
    # one database round trip for both.

    token = _unauthenticated_api_key(request, state)
    if token is not None:
        admitted = await authenticate_and_admit_call(
            request, state.settings, state.database, token, registry
        )
        setattr(request.state, PRINCIPAL_STATE_KEY, admitted.principal)
    else:
        principal = await current_principal(request, state)
        admitted = await admit_call(request, state.settings, state.database, principal, registry)
    return context_with(
        request,
        state,
        admitted.principal,
        registry,
        admitted.reservation,
        resolved=admitted.resolved,
    )


def context_with(
    request: Request,
    state: AppState,
    principal: Principal,
    registry: Registry,
    reservation: Reservation | None,
    *,
    resolved: ResolvedModel | None = None,
) -> CallContext:
    """The call context of an admitted request: its usage rows settle `reservation`,
    which the request middleware releases if no provider call used it; `resolved` is
    the model as admission resolved it, so the pipeline does not resolve it again."""

    recorder = state.recorder
    if reservation is not None:
        recorder = SettlingRecorder(recorder, reservation, state.database)
        setattr(request.state, RESERVATION_STATE_KEY, reservation)
    return CallContext(
        request_id=request.state.request_id,
        principal=principal,
        settings=state.settings,
        registry=registry,
        recorder=recorder,
        database=state.database,
        resolved=resolved,
    )


CallContextDep = Annotated[CallContext, Depends(call_context)]


async def built_call_context(
    request: Request,
    state: AppState,
    principal: Principal,
    registry: Registry,
    built: ChatCompletionRequest,
) -> CallContext:
    """The call context of a chat call a service built from the request (a session's
    turn with its history, a stored prompt's execution, a Responses call with its
    earlier turns): admitted on what the model will be sent, not on the body."""
    resolved = registry.resolve(built.model)
    reservation = await admit_built_call(
        request,
        state.settings,
        state.database,
        principal,
        built,
        resolved=resolved,
        max_tokens=built.output_limit(),
    )
    return context_with(request, state, principal, registry, reservation, resolved=resolved)


def _unauthenticated_api_key(request: Request, state: AppState) -> str | None:
    """The request's Spine API key, when auth is on and nothing has looked it up yet."""
    if not state.verify_jwt or hasattr(request.state, PRINCIPAL_STATE_KEY):
        return None
    token = bearer_token(credential(request))
    return token if token.startswith(state.settings.auth.api_key_prefix) else None
