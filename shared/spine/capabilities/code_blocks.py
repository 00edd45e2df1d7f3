"""Fenced code blocks kept byte for byte through a rewrite or a translation: each is
replaced by a placeholder before the call and put back after, once each placeholder
is found exactly once in the answer (otherwise the answer is invalid)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from spine.capabilities.run import InvalidAnswer

# A fence of three or more backticks or tildes at a line start, up to the same fence
# (or the end of the text: an unclosed block is still code).
_BLOCK = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^(?P=fence)[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)


def placeholder(index: int) -> str:
    return f"[[CODE_BLOCK_{index}]]"


@dataclass(frozen=True)
class Protected:
    text: str  # the content with every block replaced by its placeholder
    blocks: tuple[str, ...]

    def restore(self, answer: str) -> str:
        """`answer` with each placeholder replaced by its block; InvalidAnswer when a
        placeholder is missing or repeated."""
        for index in range(len(self.blocks)):
            count = answer.count(placeholder(index))
            if count != 1:
                problem = "is missing" if count == 0 else f"appears {count} times"
                raise InvalidAnswer(
                    f"placeholder {placeholder(index)} {problem}; keep each exactly once"
                )
        return re.sub(
            r"\[\[CODE_BLOCK_(\d+)\]\]",
            lambda m: self._block(int(m.group(1)), m.group(0)),
            answer,
        )

    def _block(self, index: int, literal: str) -> str:
        return self.blocks[index] if index < len(self.blocks) else literal


def protect(content: str) -> Protected:
    blocks: list[str] = []

    def swap(match: re.Match[str]) -> str:
        blocks.append(match.group(0))
        return placeholder(len(blocks) - 1)

    return Protected(_BLOCK.sub(swap, content), tuple(blocks))


def unprotected(content: str) -> Protected:
    """Nothing replaced (preserve_code_blocks false)."""
    return Protected(content, ())
