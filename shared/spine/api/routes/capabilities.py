"""GenAI Spine's task routes: POST /v1/summarize, /v1/extract, /v1/classify,
/v1/rewrite, /v1/infer-title, /v1/generate-commit and /v1/translate.

Each route is one `spine.capabilities.tasks.Task` run the same way: parse the body
(after authentication), render the capability's prompt into a chat request, admit
that request against the caller's limits and budgets, run it through the pipeline,
shape the checked answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from spine.api.answer_headers import call_headers
from spine.api.body import parse_body
from spine.api.deps import PrincipalDep, RegistryDep, StateDep, context_with
from spine.api.limits import admit_built_call
from spine.api.openapi import json_body
from spine.capabilities import run, tasks

router = APIRouter()

ResponseT = TypeVar("ResponseT", bound=BaseModel)


async def _run(
    task: tasks.Task[Any, ResponseT],
    request: Request,
    response: Response,
    *,
    principal: PrincipalDep,
    state: StateDep,
    registry: RegistryDep,
) -> ResponseT:
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
    answered = await run.answer(prepared, ctx, lambda value: task.check(body, value))
    response.headers.update(
        call_headers(answered.result)
        | {"x-spine-prompt-version-id": str(prepared.prompt.version.id)}
    )
    return task.respond(body, answered)


def _endpoint(task: tasks.Task[Any, Any]) -> Callable[..., Awaitable[BaseModel]]:
    async def endpoint(
        request: Request,
        response: Response,
        principal: PrincipalDep,
        state: StateDep,
        registry: RegistryDep,
    ) -> BaseModel:
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
        openapi_extra=json_body(_task.request_type),
    )
