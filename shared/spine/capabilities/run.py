"""One capability call: its prompt rendered into a chat request, run through the one
pipeline (`spine.pipeline.run.answer`, so limits, budgets, fallbacks, the cache and
the usage row are chat's), the answer parsed and checked, with one repair attempt.

Structured answers use JSON Schema through `response_format` where the model has the
`json_schema` capability, otherwise the schema is part of the instructions; either
way the answer is validated here. An invalid answer is sent back once with what was
wrong; a second invalid answer is a 502 naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from spine.auth.principal import Principal
from spine.capabilities.prompts import CapabilityPrompt, capability_prompt
from spine.capabilities.seeds import Seed
from spine.errors import UpstreamError
from spine.pipeline import run
from spine.pipeline.cache import CacheControl
from spine.pipeline.context import CallContext, CallResult
from spine.pipeline.kinds import CHAT, EndpointKind
from spine.prompts.templates import render
from spine.registry.resolve import Registry, ResolvedModel
from spine.registry.schema import Capability
from spine.schemas.capabilities import CapabilityUsage
from spine.schemas.openai import ChatCompletion, ChatCompletionRequest
from spine.storage.db import Database

# The registry's name for "whatever the operator set as the default model".
DEFAULT_MODEL = "default"
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n\s*```\s*$", re.DOTALL)


class InvalidAnswer(Exception):
    """The model's answer does not have the capability's shape; the message says why
    (it is sent back to the model once, then to the client in a 502)."""


def capability_kind(name: str) -> EndpointKind[ChatCompletionRequest, ChatCompletion]:
    """Chat, under the capability's name: the usage row's `endpoint` (and the cache
    key) say `capability.<name>`. Each model of the serving chain gets the answer's
    schema its own way: as `response_format` where it takes JSON Schema, else in the
    instructions (so a fallback without `json_schema` still serves)."""
    return replace(CHAT, name=f"capability.{name}", prepare=_schema_for_model)


def _schema_for_model(
    request: ChatCompletionRequest, model: ResolvedModel, streaming: bool
) -> ChatCompletionRequest:
    fmt = request.response_format
    schema = fmt.json_schema.schema_ if fmt and fmt.json_schema else None
    if schema is not None and not model.entry.supports(Capability.JSON_SCHEMA):
        request = with_schema_in_instructions(request, schema)
    return CHAT.prepare(request, model, streaming)


def schema_instructions(schema: dict[str, Any]) -> str:
    return (
        "Answer with only a JSON object (no prose, no code fence) matching "
        f"this JSON Schema:\n{json.dumps(schema, separators=(',', ':'))}"
    )


def with_schema_in_instructions(
    request: ChatCompletionRequest, schema: dict[str, Any]
) -> ChatCompletionRequest:
    """`request` without `response_format`, its system message asking for the schema."""
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    instructions = schema_instructions(schema)
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{instructions}"
    else:
        messages.insert(0, {"role": "system", "content": instructions})
    fields = request.model_dump(exclude_unset=True, exclude={"response_format", "messages"})
    return ChatCompletionRequest.model_validate({**fields, "messages": messages})


@dataclass(frozen=True)
class Prepared:
    """A capability call ready to be admitted and run."""

    name: str
    seed: Seed
    prompt: CapabilityPrompt
    request: ChatCompletionRequest
    resolved: ResolvedModel


@dataclass(frozen=True)
class Answered:
    # The checked answer: the seed's answer model (or what the check made of it), or
    # the text.
    value: Any
    usage: CapabilityUsage
    result: CallResult


async def prepare(
    database: Database,
    principal: Principal,
    registry: Registry,
    *,
    name: str,
    seed: Seed,
    values: Mapping[str, str | int | float | bool],
    model: str | None,
) -> Prepared:
    """The chat request of the call: the prompt's system prompt and rendered template,
    on the request's model, else the prompt version's, else models.yaml's default for
    the capability, else the `default` alias."""
    chosen = await capability_prompt(database, principal, seed)
    version = chosen.version
    content = version.content()
    declared = {v.name for v in content.variables}
    text = render(content, {k: v for k, v in values.items() if k in declared})
    configured = (m for c, m in registry.parsed.capabilities.items() if c == name)
    model_name = model or version.model or next(configured, DEFAULT_MODEL)
    resolved = registry.resolve(model_name)
    system = version.system_prompt or ""
    fields: dict[str, Any] = dict(version.parameters)
    if seed.answer is not None:
        # As response_format; a model of the chain without JSON Schema output gets it
        # in its instructions instead (capability_kind).
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": name.replace("-", "_"),
                "schema": seed.answer.model_json_schema(),
            },
        }
    messages = [{"role": "user", "content": text}]
    if system.strip():
        messages.insert(0, {"role": "system", "content": system.strip()})
    request = ChatCompletionRequest.model_validate(
        {**fields, "model": model_name, "messages": messages}
    )
    return Prepared(name, seed, chosen, request, resolved)


async def answer(
    prepared: Prepared, ctx: CallContext, check: Callable[[Any], Any] = lambda value: value
) -> Answered:
    """Run the call; parse and `check` the answer (which raises InvalidAnswer); on an
    invalid answer, one repair call with the error, then a 502."""
    run_ctx = call_context(prepared, ctx)
    completion, result = await run.answer(
        capability_kind(prepared.name),
        prepared.request,
        run_ctx,
        cache=fit_to_keep(prepared, check),
    )
    return await settle(prepared, run_ctx, completion, result, check)


def fit_to_keep(prepared: Prepared, check: Callable[[Any], Any]) -> CacheControl:
    """The response cache's part: an invalid answer is never kept, nor served from it
    (it would be repaired again on every request)."""

    def fit(completion: Any) -> bool:
        try:
            check(_parse(prepared.seed, completion))
        except InvalidAnswer:
            return False
        return True

    return CacheControl(keep=fit)


def call_context(prepared: Prepared, ctx: CallContext) -> CallContext:
    """`ctx` with the prompt version the call runs, for its usage row."""
    return replace(ctx, prompt_version_id=str(prepared.prompt.version.id))


async def settle(
    prepared: Prepared,
    ctx: CallContext,
    completion: ChatCompletion,
    result: CallResult,
    check: Callable[[Any], Any],
) -> Answered:
    """The first answer (whole, or gathered from a stream) parsed and checked; if
    invalid, one repair call with the error, then a 502."""
    kind = capability_kind(prepared.name)
    results = [result]
    try:
        value = check(_parse(prepared.seed, completion))
    except InvalidAnswer as first:
        repair = _repair_request(prepared.request, completion, str(first))
        # Its own usage row: the ledger keeps one row per request id.
        repair_ctx = replace(ctx, request_id=f"{ctx.request_id}.repair")
        completion, result = await run.answer(
            kind, repair, repair_ctx, cache=fit_to_keep(prepared, check)
        )
        results.append(result)
        try:
            value = check(_parse(prepared.seed, completion))
        except InvalidAnswer as second:
            raise UpstreamError(
                f"The model's answer was invalid, also after one repair attempt: {second}",
                code="invalid_model_output",
            ) from second
    return Answered(value, _usage(prepared, results), result)


def _parse(seed: Seed, completion: ChatCompletion) -> Any:
    if not completion.choices:
        raise InvalidAnswer("the answer had no choices")
    message = completion.choices[0].message
    if message.refusal:
        raise InvalidAnswer(f"the model refused: {message.refusal[:300]}")
    text = (message.content or "").strip()
    if not text:
        raise InvalidAnswer("the answer was empty")
    if seed.answer is None:
        return text
    return parse_json(text, seed.answer)


def parse_json(text: str, shape: type[BaseModel]) -> BaseModel:
    """`text` (a JSON object, maybe in a code fence) as `shape`."""
    fenced = _FENCE.match(text)
    raw = fenced.group("body") if fenced else text
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"the answer is not JSON ({exc.msg} at character {exc.pos})") from exc
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the answer"
        raise InvalidAnswer(f"'{where}': {first['msg']}") from exc


def _repair_request(
    request: ChatCompletionRequest, completion: ChatCompletion, error: str
) -> ChatCompletionRequest:
    said = completion.choices[0].message.content if completion.choices else None
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    messages.append({"role": "assistant", "content": said or "(no answer)"})
    messages.append(
        {
            "role": "user",
            "content": f"That answer is invalid: {error}. Answer again, correcting it, in "
            "exactly the format asked for.",
        }
    )
    return request.model_copy(
        update={
            "messages": request.model_validate(
                {"model": request.model, "messages": messages}
            ).messages
        }
    )


def _usage(prepared: Prepared, results: list[CallResult]) -> CapabilityUsage:
    prompt_tokens = sum(r.usage.prompt_tokens for r in results)
    completion_tokens = sum(r.usage.completion_tokens for r in results)
    return CapabilityUsage(
        model=results[-1].resolved.entry.id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        cost_usd=float(sum(r.cost for r in results)),
        latency_ms=round(sum(r.latency_ms for r in results), 3),
        prompt=prepared.prompt.prompt.slug,
        prompt_version=prepared.prompt.version.version,
        prompt_is_system=prepared.prompt.prompt.is_system,
        repaired=len(results) > 1,
    )
