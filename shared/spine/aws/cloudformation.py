"""The answer of a CloudFormation custom resource: a JSON document PUT to the event's
presigned `ResponseURL` (an S3 URL). CloudFormation waits for it, up to an hour, so a
handler must answer on every path, failures included.

Standard library only: the presigned URL needs no credentials, and no SDK is loaded
for one request.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal

Status = Literal["SUCCESS", "FAILED"]
# CloudFormation shows at most this much of a reason; the rest would be cut anyway.
_REASON_LIMIT = 1000


def send_response(
    event: Mapping[str, Any],
    status: Status,
    *,
    physical_resource_id: str,
    reason: str = "",
    data: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> None:
    """PUT the resource's outcome to `event["ResponseURL"]`."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:_REASON_LIMIT] or status,
            "PhysicalResourceId": physical_resource_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": dict(data or {}),
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's presigned https URL
        event["ResponseURL"],
        data=body,
        method="PUT",
        # The URL is signed for an empty content type.
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        response.read()
