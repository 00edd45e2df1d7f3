"""The Responses API's answers: a Response object, its input-item list, its deletion.

Field names follow the `openai` package's `openai.types.responses` (the source of truth
for the official clients). Output and input items are kept as their JSON objects: they
are built once (`spine.pipeline.responses_answer`), stored as they are, and sent back as
they were stored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from spine.schemas.openai import Usage
from spine.schemas.public import PublicModel

ResponseStatus = Literal["completed", "failed", "in_progress", "incomplete"]
# An output item: a `message` (output_text parts), a `function_call` or a `reasoning` item.
Item = dict[str, Any]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0

    @classmethod
    def of(cls, usage: Usage) -> ResponseUsage:
        return cls(
            input_tokens=usage.prompt_tokens,
            input_tokens_details=InputTokensDetails(
                cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens
            ),
            output_tokens=usage.completion_tokens,
            output_tokens_details=OutputTokensDetails(
                reasoning_tokens=usage.completion_tokens_details.reasoning_tokens
            ),
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )

    def as_chat_usage(self) -> Usage:
        return Usage.of(
            self.input_tokens,
            self.output_tokens,
            cached=self.input_tokens_details.cached_tokens,
            reasoning=self.output_tokens_details.reasoning_tokens,
            cache_write=self.input_tokens_details.cache_write_tokens,
        )


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(BaseModel):
    code: str
    message: str


class ResponseObject(PublicModel):
    """A model's answer in the Responses API's shape, with the request fields it repeats."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool = False
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[Item] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = Field(default_factory=dict)
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class InputItemList(PublicModel):
    """A page of a response's input items (OpenAI's list object)."""

    object: Literal["list"] = "list"
    data: list[Item]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ResponseDeleted(PublicModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True
