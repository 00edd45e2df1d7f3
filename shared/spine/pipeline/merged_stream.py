"""Several prompts streamed by a provider that answers one prompt per call (a chat
model answering `/v1/completions`): one stream per prompt, all at once, merged into
the one stream OpenAI sends for a list of prompts. Each chunk's choice carries its
prompt's index, every chunk the first stream's id, and the streams' usage chunks
become one, summed, at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import suppress
from typing import Any

from spine.schemas.openai import Usage

Chunk = dict[str, Any]
_ENDED = object()


async def merged_prompt_streams(
    streams: list[AsyncGenerator[Chunk, None]],
) -> AsyncGenerator[Chunk, None]:
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncGenerator[Chunk, None]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
        except Exception as exc:  # raised in the merged stream, by its consumer
            await queue.put((index, exc))
            return
        await queue.put((index, _ENDED))

    pumps = [asyncio.ensure_future(pump(i, stream)) for i, stream in enumerate(streams)]
    usages: list[Usage] = []
    first: Chunk | None = None
    running = len(pumps)
    try:
        while running:
            index, item = await queue.get()
            if item is _ENDED:
                running -= 1
                continue
            if isinstance(item, Exception):
                raise item
            first = first or item
            if item.get("usage") and not item.get("choices"):
                usages.append(Usage.model_validate(item["usage"]))
                continue
            choices = [{**choice, "index": index} for choice in item.get("choices") or []]
            yield {**item, "id": first["id"], "choices": choices, "usage": None}
        if first is not None and usages:
            yield {**first, "choices": [], "usage": _summed(usages).model_dump()}
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for stream in streams:  # each closes its upstream call
            with suppress(Exception):
                await stream.aclose()


def _summed(usages: list[Usage]) -> Usage:
    return Usage.of(
        sum(u.prompt_tokens for u in usages),
        sum(u.completion_tokens for u in usages),
        cached=sum(u.cached_tokens for u in usages),
    )
