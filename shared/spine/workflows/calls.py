"""The model calls of a run's steps, made as the principal that started the run: each
admitted against that caller's rate limits and budgets, run through the one pipeline
(fallbacks, the cache), and written as one usage row under the step's request id, so
a step run again after its instance died is never billed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from spine.auth.principal import Principal
from spine.capabilities import run as capability_run
from spine.capabilities import tasks
from spine.ledger.recorder import UsageRecorder
from spine.pipeline import run
from spine.pipeline.admitted import admitted_call
from spine.pipeline.kinds import CHAT
from spine.prompts import service as prompts
from spine.prompts.templates import declare, render
from spine.registry.resolve import Registry, ResolvedModel
from spine.schemas.openai import ChatCompletion, ChatCompletionRequest, Usage
from spine.schemas.prompt_content import PromptContent
from spine.schemas.prompts import ExecutePromptRequest
from spine.settings import Settings
from spine.storage.db import Database
from spine.workflows.expressions import as_text
from spine.workflows.steps import StepFailedError


def principal_json(principal: Principal) -> dict[str, Any]:
    """What a run keeps of who started it (its key's limits are read again)."""
    return {
        "subject": principal.subject,
        "credential": principal.credential,
        "api_key_id": principal.api_key_id,
        "tenant": principal.tenant,
        "scopes": sorted(principal.scopes),
        "tier": principal.tier,
    }


def principal_from(stored: dict[str, Any]) -> Principal:
    return Principal(
        subject=str(stored["subject"]),
        credential=str(stored["credential"]),
        api_key_id=stored.get("api_key_id"),
        tenant=stored.get("tenant"),
        scopes=frozenset(stored.get("scopes") or ()),
        tier=str(stored.get("tier") or "standard"),
    )


@dataclass
class PipelineCalls:
    """`spine.workflows.steps.ModelCalls` for real: capabilities, stored prompts, chat."""

    database: Database
    settings: Settings
    registry: Registry
    recorder: UsageRecorder
    principal: Principal

    async def capability(
        self, name: str, fields: dict[str, Any], model: str | None, request_id: str
    ) -> tuple[Any, Usage]:
        task = tasks.TASKS[name]
        try:
            body = task.request_type.model_validate(
                {**fields, **({"model": model} if model else {})}
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "with"
            raise StepFailedError(
                f"The {name} capability's '{where}': {first['msg']}", code="invalid_step_input"
            ) from exc
        prepared = await capability_run.prepare(
            self.database,
            self.principal,
            self.registry,
            name=task.name,
            seed=task.seed(body),
            values=task.values(body),
            model=body.model,
        )
        answered = await self._admitted(
            prepared.request,
            prepared.resolved,
            request_id,
            lambda ctx: capability_run.answer(prepared, ctx, lambda v: task.check(body, v)),
        )
        output = task.respond(body, answered).model_dump(mode="json")
        usage = answered.usage
        return output, Usage.of(usage.prompt_tokens, usage.completion_tokens)

    async def prompt(
        self, slug: str, label: str, variables: dict[str, Any], model: str | None, request_id: str
    ) -> tuple[str, Usage]:
        body = ExecutePromptRequest(
            prompt=slug, label=label, variables=_scalars(variables), model=model
        )
        execution = await prompts.prepare_execution(self.database, self.principal, body)
        resolved = self.registry.resolve(execution.request.model)
        completion, result = await self._admitted(
            execution.request, resolved, request_id, lambda ctx: prompts.execute(execution, ctx)
        )
        return _text(completion), result.usage

    async def chat(
        self, model: str, system: str | None, template: str, values: dict[str, Any], request_id: str
    ) -> tuple[str, Usage]:
        text = render(PromptContent(template, declare(template, None)), _scalars(values))
        messages = [{"role": "user", "content": text}]
        if system:
            system_text = render(PromptContent(system, declare(system, None)), _scalars(values))
            messages.insert(0, {"role": "system", "content": system_text})
        request = ChatCompletionRequest.model_validate({"model": model, "messages": messages})
        resolved = self.registry.resolve(model)
        completion, result = await self._admitted(
            request, resolved, request_id, lambda ctx: run.answer(CHAT, request, ctx)
        )
        return _text(completion), result.usage

    async def _admitted(
        self, request: ChatCompletionRequest, resolved: ResolvedModel, request_id: str, call: Any
    ) -> Any:
        """`call(ctx)` admitted on what the model is sent, as the run's principal; an
        estimate no provider call settled is given back."""
        async with admitted_call(
            database=self.database,
            settings=self.settings,
            registry=self.registry,
            recorder=self.recorder,
            principal=self.principal,
            resolved=resolved,
            request_id=request_id,
            request_bytes=len(request.model_dump_json(exclude_none=True)),
            max_tokens=request.output_limit(),
        ) as ctx:
            return await call(ctx)


def _scalars(values: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """Template values: scalars as they are, anything else as JSON text."""
    return {
        k: v if isinstance(v, str | int | float | bool) else as_text(v) for k, v in values.items()
    }


def _text(completion: ChatCompletion) -> str:
    return (completion.choices[0].message.content or "") if completion.choices else ""
