"""Anthropic's Messages API shapes (`POST /v1/messages`), as Spine accepts and answers
them. Field names follow `anthropic.types`.

Requests keep every field: Claude models receive the request as it came (so a field
or content block Anthropic adds tomorrow reaches them), and the translation for other
models (`spine.messages.to_chat`) reads the typed parts below and refuses, by name,
what it cannot carry. The answer is kept as Anthropic's JSON (`extra="allow"`), so a
Claude model's answer is relayed field for field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    Tag,
)

from spine.schemas.openai import ChatCompletionRequest, ModelRequest, Usage


class _Open(BaseModel):
    # Fields Spine does not read are kept and relayed to Claude models.
    model_config = ConfigDict(extra="allow")


class TextBlock(_Open):
    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None


class ImageBlock(_Open):
    type: Literal["image"]
    # {"type": "base64", "media_type", "data"} or {"type": "url", "url"}
    source: dict[str, Any]


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: StrictBool | None = None


class ThinkingBlock(_Open):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Open):
    type: Literal["redacted_thinking"]
    data: str


class OtherBlock(_Open):
    """A block type Spine does not translate (document, search_result, server tool
    blocks, ...): relayed to Claude models, refused by name for the others."""

    type: str


_KNOWN_BLOCKS = {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}


def _block_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) and kind in _KNOWN_BLOCKS else "other"


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_tag),
]


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]

    def blocks(self) -> list[Any]:
        if isinstance(self.content, str):
            return [TextBlock(type="text", text=self.content)]
        return list(self.content)


class ToolDefinition(_Open):
    """A client tool (`name`, `input_schema`), or one of Anthropic's server tools
    (`type` such as "web_search_20250305"), which only Claude models run."""

    name: str = Field(min_length=1, max_length=128)
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    @property
    def is_client_tool(self) -> bool:
        return self.type in (None, "custom")


class MessagesRequest(ModelRequest):
    model_config = ConfigDict(extra="allow")

    # The request's anthropic-beta header, relayed to Claude models.
    _betas: str | None = PrivateAttr(default=None)
    # The chat request a non-Claude model is sent (spine.messages.kind prepares it).
    _chat: ChatCompletionRequest | None = PrivateAttr(default=None)

    model: str = Field(min_length=1, max_length=256)
    max_tokens: Annotated[int, Field(ge=1, strict=True)]
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: StrictBool | None = None
    temperature: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    top_k: Annotated[int, Field(ge=0, strict=True)] | None = None
    tools: list[ToolDefinition] | None = None
    # {"type": "auto" | "any" | "none"} or {"type": "tool", "name"}, with
    # "disable_parallel_tool_use".
    tool_choice: dict[str, Any] | None = None
    # {"type": "enabled", "budget_tokens"}, {"type": "disabled"} or {"type": "adaptive"}
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @property
    def betas(self) -> str | None:
        return self._betas

    @property
    def chat(self) -> ChatCompletionRequest | None:
        return self._chat

    def with_betas(self, betas: str | None) -> MessagesRequest:
        self._betas = betas
        return self

    def native(self, changes: dict[str, Any]) -> MessagesRequest:
        """This request with `changes`, as a Claude model receives it."""
        copy = self.model_copy(update=changes)
        copy._chat, copy._betas = None, self._betas
        return copy

    def translated(self, chat: ChatCompletionRequest, dropped: tuple[str, ...]) -> MessagesRequest:
        """This request carrying `chat`, what a non-Claude model is sent instead;
        `dropped`: every field left out on the way (named in x-spine-dropped-params)."""
        copy = self.model_copy()
        copy._chat, copy._betas, copy._dropped = chat, self._betas, dropped
        return copy

    def wire_body(self) -> dict[str, Any]:
        """The request as a Claude model receives it: every field the client sent."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"stream"})


class CountTokensRequest(BaseModel):
    """`POST /v1/messages/count_tokens`: a Messages request without the output settings."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class TokenCount(BaseModel):
    """`POST /v1/messages/count_tokens`'s answer."""

    input_tokens: int


# --- answer ----------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]


class AnthropicMessage(_Open):
    """A Messages API answer. `content` and `usage` stay Anthropic's JSON."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any]

    def spine_usage(self) -> Usage:
        return usage_from_anthropic(self.usage)


def usage_from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic's `input_tokens` EXCLUDES cache reads and writes: prompt tokens are
    their sum, cached tokens the reads."""
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    details = usage.get("output_tokens_details") or {}
    return Usage.of(
        (usage.get("input_tokens") or 0) + read + written,
        usage.get("output_tokens") or 0,
        cached=read,
        reasoning=details.get("thinking_tokens") or 0,
        cache_write=written,
    )


def usage_to_anthropic(usage: Usage) -> dict[str, Any]:
    """Spine's usage as Anthropic reports it (input tokens without the cache's)."""
    read, written = usage.cached_tokens, usage.cache_write_tokens
    return {
        "input_tokens": max(0, usage.prompt_tokens - read - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": usage.completion_tokens,
    }
