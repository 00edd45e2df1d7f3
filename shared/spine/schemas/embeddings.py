"""`POST /v1/embeddings`: OpenAI's request and answer shapes."""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spine.schemas.openai import ModelRequest

# OpenAI's limits: 2,048 inputs per request.
MAX_INPUTS = 2048
EmbeddingInput = str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(ModelRequest):
    # Fields Spine does not know are kept, as for chat (spine.pipeline.params).
    model_config = ConfigDict(extra="allow")

    input: EmbeddingInput
    dimensions: Annotated[int, Field(ge=1, strict=True)] | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = Field(default=None, max_length=256)

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: EmbeddingInput) -> EmbeddingInput:
        if not value:
            raise ValueError("'input' may not be empty")
        if isinstance(value, list) and len(value) > MAX_INPUTS and isinstance(value[0], str | list):
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        return value

    def texts(self) -> list[str]:
        """The inputs that are text (token arrays are counted by their length)."""
        if isinstance(self.input, str):
            return [self.input]
        return [item for item in self.input if isinstance(item, str)]

    def batches(self, size: int) -> list[EmbeddingRequest]:
        """This request as requests of at most `size` inputs each, in input order (one
        text or token array is one input)."""
        items = self.input
        if isinstance(items, str) or not items or isinstance(items[0], int):
            return [self]
        return [
            self.model_copy(update={"input": items[start : start + size]})
            for start in range(0, len(items), size)
        ]

    def input_bytes(self) -> int:
        """UTF-8 bytes of the text inputs plus 4 per token of the token-array ones."""
        size = sum(len(text.encode()) for text in self.texts())
        if isinstance(self.input, list) and self.input and not isinstance(self.input[0], str):
            arrays = self.input if isinstance(self.input[0], list) else [self.input]
            size += 4 * sum(len(a) for a in arrays if isinstance(a, list))
        return size


def float32_base64(vector: list[float]) -> str:
    """A vector as OpenAI's base64 encoding sends it: float32, little-endian."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # Floats, or their float32 little-endian bytes in base64 (encoding_format).
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)
