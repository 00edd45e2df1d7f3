"""OpenAI's Responses API (the chat function): `POST /v1/responses` answered through
the chat pipeline (`spine.responses`), and the stored responses: get, delete, list
their input items. A response belongs to its principal: anyone else gets 404.
"""

from __future__ import annotations

from typing import Literal, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from spine.api.answer_headers import call_headers, stream_headers
from spine.api.body import parse_body, read_json
from spine.api.deps import PrincipalDep, RegistryDep, StateDep, built_call_context
from spine.api.openapi import EVENT_STREAM_ANSWER, json_body, query_params
from spine.api.query import known_query, list_page, page_limit
from spine.api.sse import EventStreamResponse, SseWire, named_event
from spine.errors import InvalidRequestError
from spine.responses import service
from spine.responses.stream import ResponsesStream, open_stream
from spine.schemas.response_object import InputItemList, ResponseDeleted, ResponseObject
from spine.schemas.responses import ResponsesRequest

router = APIRouter()

_ITEMS_QUERY = query_params(
    limit="page size (1 to 100)",
    after="the last item id of the previous page",
    order="asc or desc (the default: newest first)",
)


@router.post(
    "/v1/responses",
    response_model=ResponseObject,
    responses=EVENT_STREAM_ANSWER,
    openapi_extra=json_body(ResponsesRequest),
)
async def create_response(
    request: Request, principal: PrincipalDep, state: StateDep, registry: RegistryDep
) -> Response:
    # Text Spine keeps may not hold NUL (Postgres cannot): checked only when it keeps it.
    fields = (await read_json(request)).fields or {}
    body = await parse_body(request, ResponsesRequest, stored=fields.get("store") is not False)
    registry.resolve(body.model)  # an unknown model: 404 before any other work
    call = await service.open_call(state.database, principal, body)
    ctx = await built_call_context(request, state, principal, registry, call.request)
    if body.stream:
        stream = await open_stream(call, ctx)
        return EventStreamResponse(stream, stream_headers(stream.result), wire=_wire(stream))
    response, result = await service.answer(call, ctx)
    return JSONResponse(response.model_dump(mode="json"), headers=call_headers(result))


@router.get("/v1/responses/{response_id}", response_model=ResponseObject)
async def get_response(
    response_id: str, request: Request, principal: PrincipalDep, state: StateDep
) -> Response:
    known_query(request, ())
    found = await service.get_response(state.database, principal, response_id)
    return JSONResponse(found)


@router.delete("/v1/responses/{response_id}")
async def delete_response(
    response_id: str, principal: PrincipalDep, state: StateDep
) -> ResponseDeleted:
    await service.delete_response(state.database, principal, response_id)
    return ResponseDeleted(id=response_id)


@router.get(
    "/v1/responses/{response_id}/input_items",
    response_model=InputItemList,
    openapi_extra=_ITEMS_QUERY,
)
async def list_input_items(
    response_id: str, request: Request, principal: PrincipalDep, state: StateDep
) -> Response:
    query = known_query(request, {"limit", "after", "order"})
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError(
            f"'order' must be 'asc' or 'desc', got '{order[:32]}'.",
            param="order",
            code="invalid_value",
        )
    items, has_more = await service.list_input_items(
        state.database,
        principal,
        response_id,
        limit=page_limit(query),
        after=query.get("after"),
        order=cast(Literal["asc", "desc"], order),
    )
    return JSONResponse(list_page(items, has_more))


def _wire(stream: ResponsesStream) -> SseWire:
    """Typed events, no `[DONE]`; a failure mid-stream as the Responses `error` event."""
    return SseWire(event=named_event, error=lambda exc: named_event(stream.error_event(exc)))
