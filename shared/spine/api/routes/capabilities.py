"""GenAI Spine's task routes: POST /v1/summarize, /v1/extract, /v1/classify,
/v1/rewrite, /v1/infer-title, /v1/generate-commit and /v1/translate.

Each route is one `spine.capabilities.tasks.Task` run the same way: parse the body
(after authentication), render the capability's prompt into a chat request, admit
that request against the caller's limits and budgets, run it through the pipeline,
shape the checked answer. The text capabilities also stream (`stream: true`):
`delta` events of the text, then a `result` event with the same checked response
(spine.capabilities.stream), sent as they are made: the function answers through
Lambda Web Adapter, as chat does (docs/capabilities.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from spine.api.answer_headers import call_headers, stream_headers
from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep, context_with
from spine.api.limits import admit_built_call
from spine.api.openapi import EVENT_STREAM_ANSWER, json_body
from spine.api.sse import EventStreamResponse, SseWire, named_event
from spine.capabilities import run, tasks
from spine.capabilities.stream import CapabilityStream, open_stream
from spine.errors import SpineError, error_body

router = APIRouter()

ResponseT = TypeVar("ResponseT", bound=BaseModel)


def _error_event(exc: SpineError) -> bytes:
    body = error_body(exc.message, exc.error_type, exc.param, exc.code)
    return named_event({"type": "error", **body})


# Typed events (`event: delta|result|error`), no `[DONE]`: the result event ends it.
CAPABILITY_EVENTS = SseWire(event=named_event, error=_error_event)


async def _run(
    task: tasks.Task[Any, ResponseT],
    request: Request,
    response: Response,
    *,
    principal: PrincipalDep,
    state: StateDep,
    registry: RegistryDep,
) -> ResponseT | Response:
    body = await parse_body(request, task.request_type)
    prepared = await run.prepare(
        state.database,
        principal,
        registry,
        name=task.name,
        seed=task.seed(body),
        values=task.values(body),
        model=body.model,
    )
    # Admitted on what runs: the rendered prompt on the chosen model.
    reservation = await admit_built_call(
        request,
        state.settings,
        state.database,
        principal,
        prepared.request,
        resolved=prepared.resolved,
        max_tokens=prepared.request.output_limit(),
    )
    ctx = context_with(request, state, principal, registry, reservation, resolved=prepared.resolved)
    if task.streams and body.stream:
        inner = await open_stream(prepared, ctx)
        stream = CapabilityStream(
            inner,
            prepared,
            check=lambda value: task.check(body, value),
            respond=lambda answered: task.respond(body, answered),
        )
        headers = stream_headers(inner.result) | _version_header(prepared)
        return EventStreamResponse(stream, headers, CAPABILITY_EVENTS)
    answered = await run.answer(prepared, ctx, lambda value: task.check(body, value))
    response.headers.update(call_headers(answered.result) | _version_header(prepared))
    return task.respond(body, answered)


def _version_header(prepared: run.Prepared) -> dict[str, str]:
    return {"x-spine-prompt-version-id": str(prepared.prompt.version.id)}


def _endpoint(task: tasks.Task[Any, Any]) -> Callable[..., Awaitable[BaseModel | Response]]:
    async def endpoint(
        request: Request,
        response: Response,
        principal: PrincipalDep,
        state: StateDep,
        registry: RegistryDep,
    ) -> BaseModel | Response:
        return await _run(
            task, request, response, principal=principal, state=state, registry=registry
        )

    endpoint.__name__ = task.name.replace("-", "_")
    return endpoint


# One route per task, declared by the task: POST /v1/<name>.
for _task in tasks.TASKS.values():
    router.add_api_route(
        f"/v1/{_task.name}",
        _endpoint(_task),
        methods=["POST"],
        response_model=_task.response_type,
        responses=EVENT_STREAM_ANSWER if _task.streams else None,
        openapi_extra=json_body(_task.request_type),
    )
