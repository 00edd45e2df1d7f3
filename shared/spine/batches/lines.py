"""One batch line through the same pipeline as a live request: the batch owner's
limits and budgets taken, the model's fallbacks and retries, exactly one usage row.

The line's request id is `<batch id>:<custom_id>` (`batch_…:request-1`): its usage
row is unique in the ledger, so a line run again (a redelivery after a crash) is
never billed twice. Failed attempts write their own rows under `…:attempt-N`, so a
later success is not shadowed by an earlier failure's row. Every row carries the
batch id in its metadata.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from spine.auth.principal import Principal
from spine.errors import InvalidRequestError, ServiceUnavailableError, SpineError, error_body
from spine.ledger.recorder import UsageEntry, UsageRecorder
from spine.limits.admission import Reservation
from spine.pipeline import run
from spine.pipeline.admitted import admit_together, reserved_call
from spine.pipeline.chain import is_retryable
from spine.pipeline.context import CallContext
from spine.pipeline.kinds import CHAT, COMPLETIONS, EMBEDDINGS
from spine.registry.resolve import Registry, ResolvedModel
from spine.responses import service as responses
from spine.schemas.embeddings import EmbeddingRequest
from spine.schemas.openai import ChatCompletionRequest, CompletionRequest
from spine.schemas.responses import ResponsesRequest
from spine.settings import Settings
from spine.storage.batches import BatchRow
from spine.storage.db import Database

REQUEST_TYPES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/v1/responses": ResponsesRequest,
}


@dataclass(frozen=True)
class Answered:
    """The line's output or error file line (JSON text); `ok`: an output line."""

    ok: bool
    line: str


@dataclass(frozen=True)
class TryAgain:
    """A transient failure (a rate limit, an upstream error): run the line later."""

    error: SpineError


class BatchRecorder:
    """Tags each usage row with its batch, and moves a failed attempt's row to an
    id of its own (`…:attempt-N`), keeping the line's id for the answer."""

    def __init__(self, inner: UsageRecorder, batch_id: str, attempt: int) -> None:
        self.inner = inner
        self.batch_id = batch_id
        self.attempt = attempt

    async def record(self, entry: UsageEntry) -> None:
        metadata = {**entry.metadata, "batch_id": self.batch_id}
        request_id = entry.request_id
        if entry.error is not None:
            request_id = f"{request_id}:attempt-{self.attempt}"
        await self.inner.record(replace(entry, request_id=request_id, metadata=metadata))


def owner_principal(batch: BatchRow) -> Principal:
    """The caller who created the batch, as admission and the ledger know them."""
    return Principal(
        subject=batch.owner,
        credential=batch.credential,
        api_key_id=None if batch.api_key_id is None else str(batch.api_key_id),
        tenant=batch.tenant or None,
        scopes=frozenset(batch.scopes),
        tier=batch.tier,
    )


def request_id(batch_id: str, custom_id: str) -> str:
    return f"{batch_id}:{custom_id}"


@dataclass(frozen=True)
class ParsedLine:
    """A line's body as its endpoint takes it, and the model it names."""

    parsed: BaseModel
    resolved: ResolvedModel
    request_bytes: int
    max_tokens: int | None


@dataclass(frozen=True)
class AdmittedLine:
    """A line admitted with its group (`admit_lines`): its share of the group's
    reservation (None: no limit applies)."""

    line: ParsedLine
    reservation: Reservation | None


def parse_line(endpoint: str, request: dict[str, Any], registry: Registry) -> ParsedLine:
    """The line's body parsed and its model resolved; a 400 or 404 SpineError else."""
    body = request.get("body") or {}
    try:
        parsed = REQUEST_TYPES[endpoint].model_validate(body)
    except ValidationError as exc:
        raise _invalid_body(exc) from exc
    max_tokens = getattr(parsed, "max_completion_tokens", None) or getattr(
        parsed, "max_tokens", None
    )
    return ParsedLine(
        parsed=parsed,
        resolved=registry.resolve(getattr(parsed, "model", "")),
        request_bytes=len(json.dumps(body)),
        max_tokens=max_tokens,
    )


async def admit_lines(
    batch: BatchRow,
    requests: Mapping[int, dict[str, Any]],
    *,
    settings: Settings,
    registry: Registry,
    database: Database,
) -> dict[int, AdmittedLine]:
    """A group's lines (by line number) admitted together: one admission per model
    they name, so one round trip where each line would take one. A line left out
    (its body refused, or its model's lines not fitting the limits together) is
    admitted on its own when it runs, which answers or retries it as a live request."""
    by_model: dict[str, list[tuple[int, ParsedLine]]] = {}
    for number, request in requests.items():
        try:
            line = parse_line(batch.endpoint, request, registry)
        except SpineError:
            continue
        by_model.setdefault(line.resolved.entry.id, []).append((number, line))
    admitted: dict[int, AdmittedLine] = {}
    principal = owner_principal(batch)
    for lines in by_model.values():
        try:
            reservations = await admit_together(
                database,
                settings,
                principal,
                lines[0][1].resolved,
                [(line.request_bytes, line.max_tokens) for _, line in lines],
            )
        except SpineError:  # over a limit together: one by one, as they run
            continue
        for (number, line), reservation in zip(lines, reservations, strict=True):
            admitted[number] = AdmittedLine(line, reservation)
    return admitted


async def run_line(
    batch: BatchRow,
    custom_id: str,
    request: dict[str, Any],
    *,
    admitted: AdmittedLine | None = None,
    attempt: int,
    last_attempt: bool,
    settings: Settings,
    registry: Registry,
    database: Database,
    recorder: UsageRecorder,
) -> Answered | TryAgain:
    """Run one line (`admitted` with its group, or admitted here); its answer, or
    TryAgain for a transient failure that is not the line's last attempt (the last
    one's error goes to the error file)."""
    rid = request_id(batch.id, custom_id)
    try:
        line = admitted.line if admitted else parse_line(batch.endpoint, request, registry)
        principal = owner_principal(batch)
        if admitted is not None:
            reservation = admitted.reservation
        else:
            (reservation,) = await admit_together(
                database,
                settings,
                principal,
                line.resolved,
                [(line.request_bytes, line.max_tokens)],
            )
        async with reserved_call(
            reservation,
            database=database,
            settings=settings,
            registry=registry,
            recorder=recorder,
            principal=principal,
            resolved=line.resolved,
            request_id=rid,
            wrap=lambda settling: BatchRecorder(settling, batch.id, attempt),
        ) as ctx:
            answer = await _answer(batch.endpoint, line.parsed, ctx, database, principal)
    except SpineError as exc:
        transient = is_retryable(exc) or isinstance(exc, ServiceUnavailableError)
        if transient and not last_attempt:
            return TryAgain(exc)
        body = error_body(exc.message, exc.error_type, exc.param, exc.code)
        return Answered(False, result_line(custom_id, rid, exc.status_code, body))
    return Answered(True, result_line(custom_id, rid, 200, answer))


async def _answer(
    endpoint: str, parsed: BaseModel, ctx: CallContext, database: Database, principal: Principal
) -> dict[str, Any]:
    if isinstance(parsed, ResponsesRequest):
        call = await responses.open_call(database, principal, parsed)
        response, _ = await responses.answer(call, ctx)
        return response.model_dump(mode="json")
    if isinstance(parsed, ChatCompletionRequest):
        chat, _ = await run.answer(CHAT, parsed, ctx)
        return chat.model_dump(mode="json")
    if isinstance(parsed, CompletionRequest):
        text, _ = await run.answer(COMPLETIONS, parsed, ctx)
        return text.model_dump(mode="json")
    assert isinstance(parsed, EmbeddingRequest), endpoint
    vectors, _ = await run.answer(EMBEDDINGS, parsed, ctx)
    return vectors.model_dump(mode="json")


def result_line(custom_id: str, rid: str, status: int, body: dict[str, Any]) -> str:
    """A line of the output or error file, in OpenAI's format."""
    return json.dumps(
        {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": rid, "body": body},
            "error": None,
        },
        separators=(",", ":"),
    )


def unrun_line(custom_id: str, code: str, message: str) -> str:
    """An error file line for a request that never ran (expired, cancelled)."""
    return json.dumps(
        {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        },
        separators=(",", ":"),
    )


def _invalid_body(exc: ValidationError) -> InvalidRequestError:
    """The 400 of a line whose body its endpoint refuses, naming the fields."""
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False)[:5]
    ]
    first = exc.errors(include_url=False)[0]["loc"] if exc.errors() else ()
    return InvalidRequestError(
        "Invalid request body: " + "; ".join(problems),
        param=".".join(str(p) for p in first) or None,
        code="invalid_value",
    )
