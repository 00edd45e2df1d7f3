"""POST /v1/chat/completions with `session_id`: the chat call appended to a session.

Responses are the ordinary chat responses (JSON or event stream) with two headers:
`x-spine-session-id` and `x-spine-session-turns-dropped` (whole history turns left
out to fit the model's context window).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse, Response

from spine.api.routes.chat import call_headers, stream_headers
from spine.api.sse import EventStreamResponse
from spine.pipeline.context import CallContext
from spine.schemas.openai import ChatCompletionRequest
from spine.sessions.chat import complete_in_session, open_turn, stream_in_session
from spine.sessions.service import SessionTurn

SESSION_ID_HEADER = "x-spine-session-id"
TURNS_DROPPED_HEADER = "x-spine-session-turns-dropped"


def session_headers(turn: SessionTurn) -> dict[str, str]:
    return {
        SESSION_ID_HEADER: str(turn.session.id),
        TURNS_DROPPED_HEADER: str(turn.turns_dropped),
    }


async def session_chat_completion(body: ChatCompletionRequest, ctx: CallContext) -> Response:
    turn = await open_turn(body, ctx)
    if body.stream:
        stream = await stream_in_session(turn, ctx)
        return EventStreamResponse(
            stream, {**stream_headers(stream.result), **session_headers(turn)}
        )
    reply = await complete_in_session(turn, ctx)
    return JSONResponse(
        reply.completion.model_dump(mode="json"),
        headers={**call_headers(reply.result), **session_headers(turn)},
    )
