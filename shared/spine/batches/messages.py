"""The messages of the batch work queue, one JSON object each:

- `start`: read the input file from byte `offset` (line `line` there), record its
  lines and enqueue them, a chunk per invocation (the next chunk is a new `start`);
- `lines`: run a group of lines of one batch (up to `[batch] lines_per_message`):
  each with its request inline, or its byte range in the input file when too large
  for a message. A group, not a message per line: the queue's round trips, the claim
  and the result writes are then paid once per group;
- `line`: one line, as versions before groups queued it (still run, so a batch in
  flight during an upgrade finishes);
- `finalize`: write the output and error files of a batch whose lines are all done.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TypedDict

Kind = Literal["start", "lines", "line", "finalize"]

# An SQS message holds 256 KB; a group stays under this, its JSON framing included.
MESSAGE_BYTES = 240_000


class LineRef(TypedDict):
    line: int
    custom_id: str
    request: dict[str, Any] | None
    offset: int
    length: int


class LinesMessage(TypedDict):
    kind: Literal["lines"]
    batch: str
    lines: list[LineRef]


def start(batch_id: str, *, offset: int = 0, line: int = 0) -> dict[str, Any]:
    return {"kind": "start", "batch": batch_id, "offset": offset, "line": line}


def finalize(batch_id: str) -> dict[str, Any]:
    return {"kind": "finalize", "batch": batch_id}


def line_ref(
    number: int, custom_id: str, request: dict[str, Any] | None, *, offset: int, length: int
) -> LineRef:
    return {
        "line": number,
        "custom_id": custom_id,
        "request": request,
        "offset": offset,
        "length": length,
    }


def lines(batch_id: str, refs: list[LineRef]) -> LinesMessage:
    return {"kind": "lines", "batch": batch_id, "lines": refs}


def refs_of(message: dict[str, Any]) -> list[LineRef]:
    """The lines a `lines` message (or an older single `line` one) asks to run."""
    if message["kind"] == "line":
        return [
            line_ref(
                int(message["line"]),
                message["custom_id"],
                message["request"],
                offset=message["offset"],
                length=message["length"],
            )
        ]
    return list(message["lines"])


def grouped(
    batch_id: str, refs: Iterable[LineRef], *, per_message: int, inline_bytes: int
) -> Iterator[LinesMessage]:
    """`refs` as `lines` messages of up to `per_message` lines and MESSAGE_BYTES each,
    in order. A ref is sized as it is sent (non-ASCII text grows when escaped); one
    whose request takes more than `inline_bytes` goes by reference, its request read
    from the file by its byte range when it runs."""
    group: list[LineRef] = []
    size = 0
    for given in refs:
        ref, ref_size = given, _encoded_size(given)
        if ref["request"] is not None and ref_size > inline_bytes:
            ref = {**given, "request": None}
            ref_size = _encoded_size(ref)
        if group and (len(group) >= per_message or size + ref_size > MESSAGE_BYTES):
            yield lines(batch_id, group)
            group, size = [], 0
        group.append(ref)
        size += ref_size
    if group:
        yield lines(batch_id, group)


def encode(message: dict[str, Any]) -> str:
    """A message's body as sent (compact, ASCII: any text SQS takes)."""
    return json.dumps(message, separators=(",", ":"))


def _encoded_size(ref: LineRef) -> int:
    return len(encode(dict(ref))) + 1  # the comma between refs
