"""A chat call that appends to a session: load and trim the history, run the normal
chat path (`spine.pipeline.run` / `spine.pipeline.stream`: retries, fallbacks, usage
row), then store the new messages and the reply in one statement.

Database cost on top of the plain chat path: two round trips, the load before the
provider call and the store after it. A provider failure raises before the store,
so it leaves the session exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from spine.pipeline import run
from spine.pipeline.context import CallContext, CallResult
from spine.pipeline.kinds import CHAT
from spine.schemas.openai import AssistantMessage, ChatCompletion, ChatCompletionRequest
from spine.sessions.service import SessionTurn, build_turn, load_session, store_turn
from spine.sessions.stream import SessionStream
from spine.storage.sessions import MessageRow


@dataclass(frozen=True)
class SessionReply:
    completion: ChatCompletion
    result: CallResult
    turn: SessionTurn
    stored: list[MessageRow]  # the new messages then the reply, as stored


async def open_turn(request: ChatCompletionRequest, ctx: CallContext) -> SessionTurn:
    """The session named by `request.session_id`, loaded (one round trip) and its
    history fitted into the request's model."""
    assert request.session_id is not None
    loaded = await load_session(
        ctx.database, ctx.principal, request.session_id, history=ctx.settings.limits.max_messages
    )
    return build_turn(ctx.principal, loaded, request, ctx.registry)


async def complete_in_session(turn: SessionTurn, ctx: CallContext) -> SessionReply:
    completion, result = await run.answer(CHAT, turn.request, ctx)
    reply = completion.choices[0].message if completion.choices else AssistantMessage(content="")
    stored = await store_turn(
        ctx.database,
        turn,
        reply,
        completion_tokens=completion.usage.completion_tokens
        if completion.usage.total_tokens
        else None,
        request_id=ctx.request_id,
    )
    return SessionReply(completion, result, turn, stored)


async def stream_in_session(turn: SessionTurn, ctx: CallContext) -> SessionStream:
    return SessionStream(await run.stream(CHAT, turn.request, ctx), turn)
