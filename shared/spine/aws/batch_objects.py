"""S3 and SQS for batches: file content in one bucket, batch work on one queue.

Synchronous boto3 calls (the callers run them in a thread); clients come from
`spine.aws.clients`, created on first use. File content is read as a stream of lines
and written through multipart uploads, so no file is ever held whole in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spine.aws.clients import aws_client

# S3's smallest part (every part but the last), and what a writer buffers per part.
MIN_PART_BYTES = 5 * 1024 * 1024
WRITE_PART_BYTES = 8 * 1024 * 1024
_SQS_BATCH = 10  # SQS's most messages per send
_SQS_BATCH_BYTES = 256 * 1024  # and their most bytes together


@dataclass(frozen=True)
class ObjectStore:
    bucket: str

    def put(self, key: str, content: bytes) -> None:
        aws_client("s3").put_object(Bucket=self.bucket, Key=key, Body=content)

    def lines(self, key: str, start: int = 0) -> Iterator[bytes]:
        """The object's lines (with their line ends), from byte `start`, streamed."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start:
            request["Range"] = f"bytes={start}-"
        body = aws_client("s3").get_object(**request)["Body"]
        try:
            yield from body.iter_lines(keepends=True)
        finally:
            body.close()

    def chunks(self, key: str, size: int = 1024 * 1024) -> Iterator[bytes]:
        body = aws_client("s3").get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(size)
        finally:
            body.close()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        body = aws_client("s3").get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
        )["Body"]
        with body:
            data: bytes = body.read()
            return data

    def delete(self, key: str) -> None:
        aws_client("s3").delete_object(Bucket=self.bucket, Key=key)

    def presigned_get(self, key: str, filename: str, seconds: int) -> str:
        url: str = aws_client("s3").generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=seconds,
        )
        return url

    # --- multipart uploads (OpenAI's Uploads, and the finalizer's output files) ---

    def start_multipart(self, key: str) -> str:
        upload_id: str = aws_client("s3").create_multipart_upload(Bucket=self.bucket, Key=key)[
            "UploadId"
        ]
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, content: bytes) -> str:
        etag: str = aws_client("s3").upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=content
        )["ETag"]
        return etag

    def copy_part(self, key: str, upload_id: str, number: int, source_key: str) -> str:
        """An object of this bucket as a part, copied by S3 itself."""
        etag: str = aws_client("s3").upload_part_copy(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": source_key},
        )["CopyPartResult"]["ETag"]
        return etag

    def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None:
        aws_client("s3").complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"ETag": etag, "PartNumber": i} for i, etag in enumerate(etags, 1)]
            },
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        aws_client("s3").abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)


@dataclass(frozen=True)
class WorkQueue:
    url: str

    def send(self, messages: Sequence[Mapping[str, Any]], *, delay_seconds: int = 0) -> None:
        """Send JSON messages, up to ten (and SQS's 256 KB) per call; raises if SQS
        refused any."""
        sqs = aws_client("sqs")
        bodies = [json.dumps(m, separators=(",", ":")) for m in messages]
        for group in send_groups(bodies):
            entries = [
                {"Id": str(i), "MessageBody": body}
                | ({"DelaySeconds": delay_seconds} if delay_seconds else {})
                for i, body in enumerate(group)
            ]
            answer = sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} batch messages")


def send_groups(bodies: Sequence[str]) -> Iterator[list[str]]:
    """`bodies` in order, as groups one `send_message_batch` takes."""
    group: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if group and (len(group) == _SQS_BATCH or size + length > _SQS_BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(body)
        size += length
    if group:
        yield group
