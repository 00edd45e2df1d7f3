"""Entity offsets are Spine's, not the model's: each entity the model names is
located in the content, and one whose text is not there is dropped, with why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spine.schemas.capabilities import DroppedEntity, Entity, EntityAnswer

CONTEXT_CHARS = 40


@dataclass(frozen=True)
class Located:
    entities: list[Entity]
    dropped: list[DroppedEntity]


def locate(
    content: str,
    named: Sequence[EntityAnswer],
    *,
    types: Sequence[str],
    include_context: bool,
) -> Located:
    """Each named entity at its real offsets in `content`: the first occurrence not
    already taken by an earlier entity of the same text (so a name mentioned twice is
    found twice); a case-insensitive match takes the content's own spelling. Entities
    of a type not asked for, or whose text is not in the content, are dropped."""
    folded = content.casefold() if len(content.casefold()) == len(content) else None
    taken: dict[str, int] = {}
    entities: list[Entity] = []
    dropped: list[DroppedEntity] = []
    for item in named:
        text = item.text.strip()
        if item.type not in types:
            dropped.append(
                DroppedEntity(text=item.text, type=item.type, reason="type not requested")
            )
            continue
        start = _find(content, folded, text, taken.get(text.casefold(), 0))
        if start is None:
            dropped.append(
                DroppedEntity(text=item.text, type=item.type, reason="not found in content")
            )
            continue
        end = start + len(text)
        taken[text.casefold()] = end
        entities.append(
            Entity(
                text=content[start:end],
                type=item.type,
                start=start,
                end=end,
                confidence=item.confidence,
                context=_context(content, start, end) if include_context else None,
            )
        )
    entities.sort(key=lambda e: (e.start, e.end))
    return Located(entities, dropped)


def _find(content: str, folded: str | None, text: str, after: int) -> int | None:
    if not text:
        return None
    exact = content.find(text, after)
    if exact < 0 and after:
        exact = content.find(text)
    if exact >= 0:
        return exact
    if folded is None:  # casefold changed lengths: offsets would not map back
        return None
    loose = folded.find(text.casefold(), after)
    if loose < 0 and after:
        loose = folded.find(text.casefold())
    return loose if loose >= 0 else None


def _context(content: str, start: int, end: int) -> str:
    return content[max(0, start - CONTEXT_CHARS) : end + CONTEXT_CHARS]
