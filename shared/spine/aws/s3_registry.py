"""`models.yaml` from an S3 object, so an operator's `aws s3 cp` reaches running
functions within one TTL, without a redeploy.

Each check is one conditional GET (`If-None-Match` with the last ETag seen): an
unchanged object answers 304 with no body, so nothing is downloaded or re-parsed.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from pathlib import Path

from spine.aws.clients import aws_client
from spine.registry.source import Clock, Fetched, RefreshingRegistrySource


class S3RegistrySource(RefreshingRegistrySource):
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        key: str,
        *,
        ttl: float,
        fallback: Path | None = None,
        background: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bucket = bucket
        self.key = key
        super().__init__(
            interval=ttl,
            origin=f"s3://{bucket}/{key}",
            fallback=fallback,
            background=background,
            clock=clock,
        )
        self._start()

    def _fetch(self, seen: Hashable | None) -> Fetched | None:
        from botocore.exceptions import ClientError  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

        request = {"Bucket": self.bucket, "Key": self.key}
        if isinstance(seen, str):
            request["IfNoneMatch"] = seen
        try:
            response = aws_client("s3").get_object(**request)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
                return None
            raise
        with response["Body"] as body:
            content = body.read()
        return Fetched(str(response["ETag"]), content, self.origin)
