"""OpenAI's Files, Uploads and Batch API shapes: requests and public objects."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spine.schemas.public import PublicModel

# The endpoints a batch line may call (OpenAI's list, which Spine serves).
BatchEndpoint = Literal[
    "/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/completions"
]
FilePurpose = Literal["batch", "batch_output"]
BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchCreate(_Request):
    input_file_id: str = Field(min_length=1, max_length=100)
    endpoint: BatchEndpoint
    completion_window: Literal["24h"]
    # OpenAI's metadata: up to 16 pairs, keys up to 64 and values up to 512 characters.
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class UploadCreate(_Request):
    filename: str = Field(min_length=1, max_length=255)
    purpose: Literal["batch"]
    bytes: int = Field(ge=1)
    mime_type: str = Field(min_length=1, max_length=255)


class UploadComplete(_Request):
    part_ids: list[str] = Field(min_length=1, max_length=10_000)
    md5: str | None = None


class FilePublic(PublicModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(PublicModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class UploadPublic(PublicModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    expires_at: int
    file: FilePublic | None = None


class UploadPartPublic(PublicModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


class RequestCounts(PublicModel):
    total: int
    completed: int
    failed: int


class BatchError(PublicModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(PublicModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchPublic(PublicModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    metadata: dict[str, str] | None = None
