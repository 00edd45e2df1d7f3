"""The messages of the batch work queue, one JSON object each:

- `start`: read the input file from byte `offset` (line `line` there), record its
  lines and enqueue them, a chunk per invocation (the next chunk is a new `start`);
- `line`: run one line: its request inline, or its byte range in the input file when
  too large for a message;
- `finalize`: write the output and error files of a batch whose lines are all done.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Kind = Literal["start", "line", "finalize"]


class LineMessage(TypedDict):
    kind: Literal["line"]
    batch: str
    line: int
    custom_id: str
    request: dict[str, Any] | None
    offset: int
    length: int


def start(batch_id: str, *, offset: int = 0, line: int = 0) -> dict[str, Any]:
    return {"kind": "start", "batch": batch_id, "offset": offset, "line": line}


def finalize(batch_id: str) -> dict[str, Any]:
    return {"kind": "finalize", "batch": batch_id}


def line(
    batch_id: str,
    number: int,
    custom_id: str,
    request: dict[str, Any] | None,
    *,
    offset: int,
    length: int,
) -> LineMessage:
    return {
        "kind": "line",
        "batch": batch_id,
        "line": number,
        "custom_id": custom_id,
        "request": request,
        "offset": offset,
        "length": length,
    }
