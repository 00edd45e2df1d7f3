"""The template's queues and buckets, made in an S3 + SQS endpoint on this machine.

`spine dev` starts moto in server mode (`embedded_aws`) and hands its URL to `spine
local` as AWS_ENDPOINT_URL; `spine local` then makes each `AWS::SQS::Queue` and
`AWS::S3::Bucket` of the template there (`provision`), so their `!Ref` and `!GetAtt`
resolve to real local values in the functions' environment, and the functions reach
them through boto3 as they reach the real services deployed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from spine_tools.local.intrinsics import (
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    LOCAL_STACK_NAME,
    UNRESOLVED,
    LocalResource,
    Resolver,
)
from spine_tools.local.template import BUCKET_TYPE, QUEUE_TYPE, Template

logger = logging.getLogger("spine_tools.local")

# Credentials moto accepts; set only where none are configured.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
}
# Queue attributes the template may set that SQS takes as they are.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
)


@contextmanager
def embedded_aws(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's server on a loopback port (a free one by default) for the block; yields
    its URL. One endpoint serves every service (S3, SQS, ...)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()


def local_name(logical_id: str) -> str:
    """The queue or bucket name of a resource (a bucket name is lower case)."""
    return f"{LOCAL_STACK_NAME}-{logical_id}".lower()


def provision(template: Template, endpoint: str) -> dict[str, LocalResource]:
    """Make the template's queues and buckets at `endpoint` (again, harmlessly, when
    they exist); their local `Ref`/`GetAtt` values by logical id."""
    import boto3

    session = boto3.session.Session(region_name=LOCAL_REGION)
    sqs = session.client("sqs", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)
    made: dict[str, LocalResource] = {}
    redrives: dict[str, Any] = {}
    for logical_id, (kind, props) in template.aws_resources.items():
        name = local_name(logical_id)
        if kind == BUCKET_TYPE:
            s3.create_bucket(Bucket=name)
            made[logical_id] = LocalResource(
                ref=name, attributes={"Arn": f"arn:aws:s3:::{name}", "DomainName": endpoint}
            )
            continue
        assert kind == QUEUE_TYPE
        attributes = {k: str(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        made[logical_id] = LocalResource(
            ref=url,
            attributes={
                "Arn": f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{name}",
                "QueueName": name,
                "QueueUrl": url,
            },
        )
        if "RedrivePolicy" in props:
            redrives[url] = props["RedrivePolicy"]
    # Dead-letter targets are other queues of the template: resolved once all exist.
    resolver = Resolver(parameters=template.parameters, resources=made)
    for url, policy in redrives.items():
        resolved = resolver.resolve(policy)
        if _unresolved(resolved):
            logger.warning("queue %s: RedrivePolicy names an unknown queue; ignored", url)
            continue
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": _json(resolved)})
    return made


def _unresolved(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_unresolved(v) for v in value.values())
    return value is UNRESOLVED


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps({k: str(v) if k == "deadLetterTargetArn" else v for k, v in value.items()})
