"""The batch queue's messages: lines grouped under SQS's size limits, a request too
large for a message sent by reference, and sends split as SQS takes them."""

from __future__ import annotations

import json
from typing import Any

from spine.aws.batch_objects import send_groups
from spine.batches import messages


def ref(number: int, text: str = "hi") -> messages.LineRef:
    request = {"custom_id": f"req-{number}", "body": {"messages": [{"content": text}]}}
    return messages.line_ref(number, f"req-{number}", request, offset=number * 100, length=80)


def test_lines_are_grouped_by_count_in_order() -> None:
    groups = list(
        messages.grouped("batch_1", [ref(n) for n in range(1, 8)], per_message=3, inline_bytes=1000)
    )
    assert [[r["line"] for r in g["lines"]] for g in groups] == [[1, 2, 3], [4, 5, 6], [7]]
    assert all(g["kind"] == "lines" and g["batch"] == "batch_1" for g in groups)


def test_a_group_never_exceeds_a_message_even_when_text_grows_escaped() -> None:
    # Non-ASCII text is sent escaped (six bytes a character): a group is sized as sent
    text = "汉" * 20_000  # 60 KB as UTF-8, 120 KB escaped
    groups = list(
        messages.grouped(
            "batch_1", [ref(n, text) for n in range(1, 6)], per_message=50, inline_bytes=200_000
        )
    )
    assert [len(g["lines"]) for g in groups] == [1, 1, 1, 1, 1]
    assert all(len(messages.encode(dict(g))) <= messages.MESSAGE_BYTES for g in groups)


def test_a_request_larger_than_the_inline_limit_goes_by_reference() -> None:
    big, small = ref(1, "x" * 5000), ref(2)
    (group,) = messages.grouped("batch_1", [big, small], per_message=50, inline_bytes=1000)
    assert group["lines"][0]["request"] is None
    assert (group["lines"][0]["offset"], group["lines"][0]["length"]) == (100, 80)
    assert group["lines"][1]["request"] == small["request"]


def test_an_older_single_line_message_is_read_as_a_group_of_one() -> None:
    legacy: dict[str, Any] = {"kind": "line", "batch": "batch_1", **ref(4)}
    assert messages.refs_of(legacy) == [ref(4)]
    assert messages.refs_of(dict(messages.lines("batch_1", [ref(1), ref(2)]))) == [ref(1), ref(2)]


def test_sends_are_split_at_ten_messages_and_at_sqs_batch_bytes() -> None:
    small = [json.dumps({"n": n}) for n in range(23)]
    assert [len(g) for g in send_groups(small)] == [10, 10, 3]
    large = ["x" * 100_000 for _ in range(5)]  # 256 KB holds two
    groups = list(send_groups(large))
    assert [len(g) for g in groups] == [2, 2, 1]
    assert [body for g in groups for body in g] == large
