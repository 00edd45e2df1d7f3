"""A batch input file, checked line by line as it streams in (never held whole).

At upload (`FileChecker`): each line is a JSON object with a unique `custom_id`,
`method` POST, a `url` Spine serves in batches and a `body` naming a `model`; the
file stays within OpenAI's limits. What creating a batch needs later (the first line
of each url and model) is kept in the file's summary, so a 200 MB file is read once.
At batch creation (`check_for_batch`): every url is the batch's endpoint and every
model is one Spine knows. Every problem names its line; up to 20 are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, get_args

from spine.errors import InvalidRequestError, PayloadTooLargeError, SpineError
from spine.registry.resolve import Registry
from spine.schemas.batches import BatchEndpoint

ENDPOINTS: tuple[str, ...] = get_args(BatchEndpoint)
MAX_CUSTOM_ID = 512
MAX_PROBLEMS = 20


@dataclass
class FileChecker:
    """Feed it the lines of a file in order (`feed`), then take `summary()`."""

    max_lines: int
    max_bytes: int
    lines: int = 0
    size: int = 0
    requests: int = 0
    urls: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)

    def feed(self, raw: bytes) -> None:
        self.lines += 1
        self.size += len(raw)
        if self.size > self.max_bytes:
            raise PayloadTooLargeError(
                f"The file is larger than {self.max_bytes} bytes, the most a batch input "
                f"file may hold (crossed at line {self.lines}).",
                param="file",
                code="file_too_large",
            )
        if not raw.strip():
            return  # blank lines (a trailing newline) are not requests
        self.requests += 1
        if self.requests > self.max_lines:
            raise InvalidRequestError(
                f"Line {self.lines}: a batch input file holds at most {self.max_lines} requests.",
                param="file",
                code="too_many_lines",
            )
        try:
            self._check(raw)
        except _Problem as problem:
            self.problems.append(f"Line {self.lines}: {problem}")
            if len(self.problems) >= MAX_PROBLEMS:
                self.raise_problems()

    def _check(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Problem(f"not valid JSON ({_reason(exc)}).") from None
        if not isinstance(line, dict):
            raise _Problem("not a JSON object.")
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
            raise _Problem(f"'custom_id' must be a string of 1 to {MAX_CUSTOM_ID} characters.")
        if "\x00" in custom_id:
            raise _Problem("'custom_id' may not contain NUL.")
        if custom_id in self._seen:
            raise _Problem(
                f"custom_id '{custom_id[:64]}' is already used on line {self._seen[custom_id]}."
            )
        self._seen[custom_id] = self.lines
        if line.get("method") != "POST":
            raise _Problem("'method' must be 'POST'.")
        url = line.get("url")
        if url not in ENDPOINTS:
            raise _Problem(f"'url' must be one of {', '.join(ENDPOINTS)}, got {_shown(url)}.")
        body = line.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise _Problem("'body' must be a JSON object with a 'model'.")
        if body.get("stream"):
            raise _Problem("a batch request cannot stream ('stream' must be false).")
        self.urls.setdefault(str(url), self.lines)
        self.models.setdefault(str(body["model"]), self.lines)

    def raise_problems(self) -> None:
        if self.problems:
            raise InvalidRequestError(
                "The batch input file is not valid: " + " ".join(self.problems),
                param="file",
                code="invalid_file",
            )

    def summary(self) -> dict[str, Any]:
        """What a batch's creation checks, once every line was fed and found valid."""
        self.raise_problems()
        if self.requests == 0:
            raise InvalidRequestError(
                "The batch input file holds no requests.", param="file", code="empty_file"
            )
        return {"requests": self.requests, "urls": self.urls, "models": self.models}


class _Problem(Exception):
    pass


def check_for_batch(summary: dict[str, Any] | None, endpoint: str, registry: Registry) -> int:
    """The number of requests of an input file a batch on `endpoint` may run; a 400
    naming the lines whose url differs or whose model Spine does not know."""
    if summary is None:
        raise InvalidRequestError(
            "The file is not a batch input file (upload it with purpose 'batch').",
            param="input_file_id",
            code="invalid_file",
        )
    problems = [
        f"Line {line}: url '{url}' does not match the batch's endpoint '{endpoint}'."
        for url, line in summary["urls"].items()
        if url != endpoint
    ]
    for model, line in summary["models"].items():
        try:
            registry.resolve(model)
        except SpineError:
            problems.append(f"Line {line}: model '{model[:100]}' is not a model Spine serves.")
    if problems:
        raise InvalidRequestError(
            "The batch input file does not fit this batch: "
            + " ".join(sorted(problems, key=_line_of)[:MAX_PROBLEMS]),
            param="input_file_id",
            code="invalid_file",
        )
    return int(summary["requests"])


def _line_of(problem: str) -> int:
    return int(problem.split(":", 1)[0].removeprefix("Line "))


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return "not UTF-8"


def _shown(value: object) -> str:
    return f"'{value[:100]}'" if isinstance(value, str) else json.dumps(value)[:100]
