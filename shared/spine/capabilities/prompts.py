"""Which prompt version gives a capability its instructions: the caller's own prompt
of the capability's slug when it has one (an override), else its tenant's shared
prompt of that slug, else the system prompt, seeded on first use. Of that prompt, the
version labelled `production`, else the newest."""

from __future__ import annotations

from dataclasses import dataclass

from spine.auth.principal import Principal
from spine.capabilities.seeds import CATEGORY, Seed
from spine.errors import NotFoundError
from spine.prompts.service import readable_owners
from spine.prompts.templates import declare
from spine.schemas.prompt_content import PromptContent
from spine.storage import prompts as store
from spine.storage.db import Connection, Database
from spine.storage.owner import SYSTEM_OWNER
from spine.storage.prompts import PromptRow, PromptVersionRow

PRODUCTION_LABEL = "production"


@dataclass(frozen=True)
class CapabilityPrompt:
    prompt: PromptRow
    version: PromptVersionRow


async def capability_prompt(
    database: Database, principal: Principal, seed: Seed
) -> CapabilityPrompt:
    conn = await database.connection()
    prompt = None
    # The caller's own prompt of the slug, else its tenant's shared one, else the
    # system prompt (seeded on first use).
    for owner in readable_owners(principal)[:-1]:
        prompt = prompt or await store.get_prompt(conn, owner, slug=seed.slug)
    if prompt is None:
        prompt = await _system_prompt(conn, seed)
    number = await store.label_version(conn, prompt.id, PRODUCTION_LABEL)
    version = await store.get_version(conn, prompt.id, number or prompt.latest_version)
    if version is None:  # deleted between the two reads
        raise NotFoundError(f"The prompt '{seed.slug}' was deleted while this request ran.")
    return CapabilityPrompt(prompt, version)


async def _system_prompt(conn: Connection, seed: Seed) -> PromptRow:
    prompt = await store.get_prompt(conn, SYSTEM_OWNER, slug=seed.slug)
    if prompt is not None:
        return prompt
    # First use (or an admin deleted it): seed it. Concurrent cold starts race on
    # the unique key; the loser's insert does nothing and it reads the winner's row.
    seeded = await store.seed_system_prompt(
        conn,
        slug=seed.slug,
        name=seed.name,
        description=seed.description,
        category=CATEGORY,
        tags=(CATEGORY, seed.slug),
        content=seed_content(seed),
    )
    prompt = seeded or await store.get_prompt(conn, SYSTEM_OWNER, slug=seed.slug)
    if prompt is None:
        raise NotFoundError(f"The system prompt '{seed.slug}' could not be seeded.")
    return prompt


def seed_content(seed: Seed) -> PromptContent:
    return PromptContent(
        template=seed.template,
        variables=declare(seed.template, None),
        system_prompt=seed.system_prompt,
        output_schema=None if seed.answer is None else seed.answer.model_json_schema(),
    )
