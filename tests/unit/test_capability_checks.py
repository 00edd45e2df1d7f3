"""The capabilities' own checks of a model's answer: code blocks kept through a
placeholder, entity offsets located in the content."""

from __future__ import annotations

import pytest

from spine.capabilities.code_blocks import protect
from spine.capabilities.offsets import locate
from spine.capabilities.run import InvalidAnswer
from spine.schemas.capabilities import EntityAnswer


def test_every_fence_kind_is_protected_and_restored_byte_for_byte() -> None:
    # Given backtick, tilde, longer and unclosed fences
    content = "a\n```js\nx  =\t1\n```\nb\n~~~\ny\n~~~\n````\n```inner```\n````\nc\n```\nopen"
    protected = protect(content)
    # Then each block is a placeholder, and coming back restores the exact bytes
    assert len(protected.blocks) == 4
    assert "x  =" not in protected.text and "open" not in protected.text
    assert protected.restore(protected.text) == content


@pytest.mark.parametrize(
    ("answer", "problem"),
    [("no blocks", "is missing"), ("[[CODE_BLOCK_0]] [[CODE_BLOCK_0]]", "appears 2 times")],
)
def test_a_missing_or_repeated_placeholder_is_invalid(answer: str, problem: str) -> None:
    protected = protect("```\ncode\n```")
    with pytest.raises(InvalidAnswer, match=problem):
        protected.restore(answer)


def test_content_without_blocks_passes_through() -> None:
    assert protect("plain `inline` text").restore("rewritten") == "rewritten"


def entity(text: str, kind: str = "PERSON") -> EntityAnswer:
    return EntityAnswer(text=text, type=kind, confidence=0.5)


def test_repeated_names_get_successive_offsets_and_unknown_ones_are_dropped() -> None:
    content = "Bob met Alice. Later bob met ALICE again."
    located = locate(
        content,
        [entity("Alice"), entity("alice"), entity("Bob"), entity("Carol"), entity("Bob", "ORG")],
        types=["PERSON"],
        include_context=False,
    )
    spans = [(e.text, e.start, e.end) for e in located.entities]
    assert spans == [("Bob", 0, 3), ("Alice", 8, 13), ("ALICE", 29, 34)]
    assert all(content[s:e] == t for t, s, e in spans)
    assert [(d.text, d.reason) for d in located.dropped] == [
        ("Carol", "not found in content"),
        ("Bob", "type not requested"),
    ]
