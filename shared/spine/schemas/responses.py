"""`POST /v1/responses`: OpenAI's Responses API request, as far as Spine answers it.

Spine answers the Responses API through chat completions (`spine.pipeline.responses_chat`),
so what chat cannot carry is refused here with a 400 naming the field: tools other than
functions, item references, background runs, stored prompts and conversations. Items and
parts are strict like chat's messages; top-level fields Spine does not know are kept and
forwarded as chat's are (`spine.pipeline.params`).

A string `input`, and a message's string `content`, are normalized to the list forms
OpenAI stores and lists (`input_items`): a user message with one `input_text` part.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    field_validator,
    model_validator,
)

# Union members are tagged `kind[value]`: the error's param (spine.api.errors.param_path)
# then names the field, `input[0].content`, not the tag.
ItemType = Literal["message", "function_call", "function_call_output", "reasoning"]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _tag_of(kinds: frozenset[str], default: str | None = None) -> Any:
    """A discriminator reading `type` (default when absent); unknown types go to the
    `[unsupported]` member, which names them."""

    def tag(value: Any) -> str | None:
        kind = (
            value.get("type", default) if isinstance(value, dict) else getattr(value, "type", None)
        )
        if kind is None:
            return None
        return f"[{kind}]" if isinstance(kind, str) and kind in kinds else "[unsupported]"

    return tag


class _Unsupported(BaseModel):
    """A member with a `type` Spine does not translate: its validator names it."""

    model_config = ConfigDict(extra="allow")
    # What the error says is not supported, and what to send instead.
    what: ClassVar[str] = ""
    instead: ClassVar[str] = ""

    type: Any

    @field_validator("type")
    @classmethod
    def _refuse(cls, value: Any) -> Any:
        raise ValueError(f"{cls.what} of type {str(value)[:64]!r} are not supported: {cls.instead}")


# --- content parts -----------------------------------------------------------------------


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str | None = Field(default=None, min_length=1)
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None

    @model_validator(mode="after")
    def _url_present(self) -> InputImage:
        if self.image_url is None:
            raise ValueError(
                "send 'image_url' (a URL or a base64 data URL); Spine has no Files API "
                "for 'file_id'"
            )
        return self


class InputFile(_Strict):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None
    detail: Literal["auto", "low", "high"] | None = None

    @model_validator(mode="after")
    def _data_present(self) -> InputFile:
        if self.file_id is None and self.file_data is None:
            raise ValueError("send 'file_data' (base64) with 'filename', or 'file_id'")
        return self


class OutputText(_Strict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] | None = None


class Refusal(_Strict):
    type: Literal["refusal"]
    refusal: str


class _UnsupportedPart(_Unsupported):
    what = "Content parts"
    instead = "send input_text, input_image or input_file (output_text for assistant messages)"


_PART_TYPES = frozenset({"input_text", "input_image", "input_file", "output_text", "refusal"})
ContentPart = Annotated[
    Annotated[InputText, Tag("[input_text]")]
    | Annotated[InputImage, Tag("[input_image]")]
    | Annotated[InputFile, Tag("[input_file]")]
    | Annotated[OutputText, Tag("[output_text]")]
    | Annotated[Refusal, Tag("[refusal]")]
    | Annotated[_UnsupportedPart, Tag("[unsupported]")],
    Discriminator(_tag_of(_PART_TYPES)),
]
ToolOutputPart = Annotated[
    Annotated[InputText, Tag("[input_text]")]
    | Annotated[InputImage, Tag("[input_image]")]
    | Annotated[InputFile, Tag("[input_file]")]
    | Annotated[_UnsupportedPart, Tag("[unsupported]")],
    Discriminator(_tag_of(frozenset({"input_text", "input_image", "input_file"}))),
]

# Which parts each role's message may hold (chat's rules: system text only).
_ROLE_PARTS: dict[str, tuple[str, ...]] = {
    "user": ("input_text", "input_image", "input_file"),
    "system": ("input_text",),
    "developer": ("input_text",),
    "assistant": ("output_text", "refusal", "input_text"),
}


# --- input items -------------------------------------------------------------------------

Status = Literal["in_progress", "completed", "incomplete"]


class MessageItem(_Strict):
    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: list[ContentPart]
    status: Status | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _content_as_parts(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            text = value["content"]
            part: dict[str, Any] = (
                {"type": "output_text", "text": text, "annotations": []}
                if value.get("role") == "assistant"
                else {"type": "input_text", "text": text}
            )
            return {**value, "content": [part]}
        return value

    @model_validator(mode="after")
    def _parts_fit_the_role(self) -> MessageItem:
        allowed = _ROLE_PARTS[self.role]
        if any(part.type not in allowed for part in self.content):
            names = ", ".join(allowed)
            raise ValueError(f"a '{self.role}' message may only contain {names} parts")
        return self


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    status: Status | None = None


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    output: str | list[ToolOutputPart]
    status: Status | None = None


class ReasoningItem(BaseModel):
    """A reasoning item passed back: accepted and dropped (chat has no way to send it)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["reasoning"]


class _UnsupportedItem(_Unsupported):
    what = "Input items"
    instead = (
        "send message, function_call, function_call_output or reasoning items "
        "(previous_response_id for earlier turns)"
    )


InputItem = Annotated[
    Annotated[MessageItem, Tag("[message]")]
    | Annotated[FunctionCallItem, Tag("[function_call]")]
    | Annotated[FunctionCallOutputItem, Tag("[function_call_output]")]
    | Annotated[ReasoningItem, Tag("[reasoning]")]
    | Annotated[_UnsupportedItem, Tag("[unsupported]")],
    Discriminator(
        _tag_of(frozenset(get_args(ItemType)), default="message"),
        custom_error_type="invalid_type",
        custom_error_message="an input item must be an object with a 'type'",
    ),
]


# --- tools, tool choice, text format -----------------------------------------------------


class FunctionTool(_Strict):
    """A function tool in the Responses API's flat shape (chat nests it)."""

    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _UnsupportedTool(_Unsupported):
    what = "Tools"
    instead = (
        "Spine answers the Responses API through chat completions, which take function tools only"
    )


ToolSpec = Annotated[
    Annotated[FunctionTool, Tag("[function]")] | Annotated[_UnsupportedTool, Tag("[unsupported]")],
    Discriminator(_tag_of(frozenset({"function"}))),
]


class ToolChoiceFunction(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1)


class FormatText(_Strict):
    type: Literal["text"]


class FormatJsonObject(_Strict):
    type: Literal["json_object"]


class FormatJsonSchema(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["json_schema"]
    name: str = Field(pattern=_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class _UnsupportedFormat(_Unsupported):
    what = "Text formats"
    instead = "send text, json_object or json_schema"


TextFormat = Annotated[
    Annotated[FormatText, Tag("[text]")]
    | Annotated[FormatJsonObject, Tag("[json_object]")]
    | Annotated[FormatJsonSchema, Tag("[json_schema]")]
    | Annotated[_UnsupportedFormat, Tag("[unsupported]")],
    Discriminator(_tag_of(frozenset({"text", "json_object", "json_schema"}))),
]


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Strict):
    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


# --- the request -------------------------------------------------------------------------

# OpenAI's limits on `metadata`: 16 pairs, keys of 64 characters, values of 512.
_METADATA_PAIRS, _METADATA_KEY, _METADATA_VALUE = 16, 64, 512


class ResponsesRequest(BaseModel):
    # Fields Spine does not know are kept: forwarded to OpenAI-speaking providers as chat
    # fields, dropped for the others and named in x-spine-dropped-params.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    text: TextConfig | None = None
    max_output_tokens: Annotated[int, Field(ge=1, strict=True)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    parallel_tool_calls: StrictBool | None = None
    metadata: dict[str, str] | None = None
    # OpenAI keeps a response unless told not to.
    store: StrictBool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)
    stream: StrictBool | None = None
    reasoning: ReasoningConfig | None = None
    user: str | None = Field(default=None, max_length=256)
    truncation: Literal["auto", "disabled"] | None = None
    # Accepted, without effect (named in x-spine-dropped-params when set).
    include: list[str] | None = None
    max_tool_calls: Annotated[int, Field(ge=1, strict=True)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True)] | None = None
    stream_options: dict[str, Any] | None = None
    # Refused when set: Spine has no background runs, stored prompts or conversations.
    background: StrictBool | None = None
    prompt: dict[str, Any] | None = None
    conversation: str | dict[str, Any] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_as_message(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "message", "role": "user", "content": value}]
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choice_only(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") != "function":
            raise ValueError(
                f"tool_choice of type {str(value.get('type'))[:64]!r} is not supported: send "
                "'none', 'auto', 'required' or {'type': 'function', 'name': ...}"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > _METADATA_PAIRS:
            raise ValueError(f"at most {_METADATA_PAIRS} key-value pairs")
        for key, item in value.items():
            if len(key) > _METADATA_KEY or len(item) > _METADATA_VALUE:
                raise ValueError(
                    f"keys of at most {_METADATA_KEY} characters, values of at most "
                    f"{_METADATA_VALUE}"
                )
        return value

    @field_validator("background")
    @classmethod
    def _no_background(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported: send it without")
        return value

    @field_validator("prompt", "conversation")
    @classmethod
    def _not_supported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "stored prompts and conversations are not supported here: send 'input' "
                "(and 'previous_response_id' for earlier turns)"
            )
        return value

    @property
    def stored(self) -> bool:
        return self.store is not False
