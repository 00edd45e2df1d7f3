"""Export a prompt with every version and label as one JSON document, and import
such a document as new prompts of the caller (all or nothing)."""

from __future__ import annotations

from spine.auth.principal import Principal
from spine.prompts.service import check_parameters, find_prompt, owner_of
from spine.prompts.templates import declare, variables_of
from spine.schemas.prompt_content import PromptContent
from spine.schemas.prompt_transfer import ExportedPrompt, ExportedVersion, PromptExport
from spine.schemas.prompts import VariableSpec
from spine.storage import prompts as store
from spine.storage.db import Database
from spine.storage.prompts import PromptRow, PromptVersionRow


async def export_prompt(database: Database, principal: Principal, ref: str) -> PromptExport:
    prompt = await find_prompt(database, principal, ref)
    conn = await database.connection()
    versions = await store.list_versions(conn, prompt.id, limit=prompt.latest_version)
    return PromptExport(
        prompts=[
            _exported(
                prompt,
                sorted(versions, key=lambda v: v.version),
                await store.labels(conn, prompt.id),
            )
        ]
    )


async def import_prompts(
    database: Database, principal: Principal, document: PromptExport
) -> list[PromptRow]:
    """Create every prompt of `document` with its versions and labels, in one
    transaction: a slug the caller already uses (409) or a bad version (400) imports
    nothing."""
    owner = owner_of(principal)
    contents = [[_content(v) for v in p.versions] for p in document.prompts]
    conn = await database.connection()
    created: list[PromptRow] = []
    async with conn.transaction():
        for exported, versions in zip(document.prompts, contents, strict=True):
            created.append(
                await store.import_prompt(
                    conn,
                    owner,
                    slug=exported.slug,
                    name=exported.name,
                    description=exported.description,
                    category=exported.category,
                    tags=tuple(exported.tags),
                    versions=[
                        (c, v.rolled_back_from)
                        for c, v in zip(versions, exported.versions, strict=True)
                    ],
                    labels=exported.labels,
                )
            )
    return created


def _content(version: ExportedVersion) -> PromptContent:
    parameters = dict(version.parameters)
    check_parameters(parameters)
    return PromptContent(
        version.template,
        declare(version.template, variables_of(version.variables)),
        version.model,
        parameters,
        system_prompt=version.system_prompt,
        output_schema=version.output_schema,
    )


def _exported(
    prompt: PromptRow, versions: list[PromptVersionRow], labels: dict[str, int]
) -> ExportedPrompt:
    return ExportedPrompt(
        slug=prompt.slug,
        name=prompt.name,
        description=prompt.description,
        category=prompt.category,
        tags=list(prompt.tags),
        labels=labels,
        versions=[
            ExportedVersion(
                version=v.version,
                template=v.template,
                variables=[VariableSpec.model_validate(x) for x in v.variables],
                model=v.model,
                parameters=v.parameters,
                system_prompt=v.system_prompt,
                output_schema=v.output_schema,
                rolled_back_from=v.rolled_back_from,
            )
            for v in versions
        ],
    )
