"""Request and response shapes of the chat session API (the routes in
`spine.api.routes.sessions` map storage rows to the responses).

Requests are strict like the OpenAI shapes: an unknown field is a 400 naming it. Text is stored
verbatim (SQL is always parameterized); only NUL characters are refused, because a
Postgres text value cannot hold them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from spine.schemas.openai import ChatCompletion
from spine.schemas.public import PublicModel

MAX_TITLE_CHARS = 256
# A message or system prompt of ~25k tokens; the request body limit
# ([service] max_body_bytes) still applies first.
MAX_TEXT_CHARS = 100_000
MAX_MODEL_CHARS = 256


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


Title = Annotated[str, Field(max_length=MAX_TITLE_CHARS), AfterValidator(no_nul)]
SystemPrompt = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(no_nul)]
ModelName = Annotated[
    str, Field(min_length=1, max_length=MAX_MODEL_CHARS), AfterValidator(not_blank)
]
Content = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_CHARS),
    AfterValidator(no_nul),
    AfterValidator(not_blank),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(_Strict):
    model: ModelName
    title: Title = ""
    system_prompt: SystemPrompt | None = None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class SessionUpdate(_Strict):
    """Only the fields sent change; `system_prompt: null` clears it."""

    # The defaults are never written: only the fields sent are (`changes`); so the
    # schema shows none (an empty model name would not be a valid value).
    title: Title = Field(default="", json_schema_extra=_no_default)
    model: ModelName = Field(default="", json_schema_extra=_no_default)
    system_prompt: SystemPrompt | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> SessionUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one of 'title', 'model', 'system_prompt'")
        return self

    def changes(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class SessionMessageCreate(_Strict):
    """POST /v1/sessions/{id}/messages: one user message; the session's model and
    system prompt answer it. A few sampling fields may be set for this call."""

    content: Content
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None


# --- responses ------------------------------------------------------------------------


class SessionPublic(PublicModel):
    id: str
    object: Literal["chat.session"] = "chat.session"
    title: str
    model: str
    system_prompt: str | None
    message_count: int
    created_at: int
    updated_at: int


class MessagePublic(PublicModel):
    """A stored message of a session's transcript, in OpenAI's message fields."""

    id: str
    object: Literal["chat.session.message"] = "chat.session.message"
    session_id: str
    role: str
    # Text, or the content parts (text, image_url) the message was sent with.
    content: str | list[dict[str, Any]] | None
    name: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    request_id: str
    tokens: int | None
    created_at: int


class SessionReply(PublicModel):
    """POST /v1/sessions/{id}/messages: the stored user message and reply, and the
    chat completion that made the reply."""

    object: Literal["chat.session.reply"] = "chat.session.reply"
    session_id: str
    # Oldest turns left out of the history sent, to fit the model's window.
    turns_dropped: int
    messages: list[MessagePublic]
    completion: ChatCompletion
