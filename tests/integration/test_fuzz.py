"""Every function fuzzed from its own OpenAPI document: no generated request, valid or
not, may get a 5xx or an answer outside OpenAI's error shape.

Schemathesis (on Hypothesis) builds requests from the merged document of every
function (bodies and queries included, see spine.api.openapi) and each one is sent
to the real Lambda handler that template.yaml routes it to, as an API Gateway event,
with an admin key so every route is reached past authentication (real Postgres, wire
fakes of the providers). Examples per operation are kept small for the test gate;
SPINE_FUZZ_EXAMPLES raises it for a longer hunt.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from spine.api import functions
from spine.api.openapi import merge
from tests.auth.keys import SECRET
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway

EXAMPLES = int(os.environ.get("SPINE_FUZZ_EXAMPLES", "12"))
FUNCTIONS = (
    functions.chat_app,
    functions.models_app,
    functions.prompts_app,
    functions.capabilities_app,
    functions.sessions_app,
    functions.auth_app,
    functions.usage_app,
    functions.admin_app,
    functions.health_app,
    functions.batches_app,
)

# The documents do not depend on configuration: built once, from the repo's own. The
# worker's lifecycle routes are left out: they need a running llama.cpp worker, which
# this test has not (their 503 when it is down is tests/integration/test_admin_function's).
schema = schemathesis.openapi.from_dict(merge([build().openapi() for build in FUNCTIONS])).exclude(
    path_regex="^/v1/admin/worker/"
)


@pytest.fixture
def admin(env: Env, monkeypatch: pytest.MonkeyPatch, moto_aws: None) -> str:
    # A fully configured server: a 503 for a missing JWT secret (or batch bucket and
    # queue, or pipeline steps queue) is configuration.
    monkeypatch.setenv("SPINE_JWT_SECRET", SECRET)
    boto3.client("s3").create_bucket(Bucket="fuzz-batches")
    queue = boto3.client("sqs").create_queue(QueueName="fuzz-batches")["QueueUrl"]
    monkeypatch.setenv("SPINE_BATCH__BUCKET", "fuzz-batches")
    monkeypatch.setenv("SPINE_BATCH__QUEUE_URL", queue)
    steps = boto3.client("sqs").create_queue(QueueName="fuzz-pipeline-steps")["QueueUrl"]
    monkeypatch.setenv("SPINE_WORKFLOWS__QUEUE_URL", steps)
    return env.create_key("fuzz", scopes=["admin"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # filter_too_much: some operations (multipart forms) reject most generated
    # bodies before a request is made; what is sent is still checked.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_request_gets_a_server_error(case: Any, gateway: Gateway, admin: str) -> None:
    if gateway.routes.match(case.method, case.formatted_path) is None:
        return  # a method no function serves: API Gateway answers it, not a handler
    headers = {"Authorization": f"Bearer {admin}", **(case.headers or {})}
    body = None
    if not _not_set(case.body):
        body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        headers.setdefault("Content-Type", case.media_type or "application/json")
    result = gateway.request(
        case.method,
        case.formatted_path,
        body=body,
        headers=headers,
        query=urlencode(case.query or {}, doseq=True),
    )
    context = (case.method, case.formatted_path, case.query, case.body, result.body[:500])
    # The echoing fake is no model: its text is not the JSON a capability asks for,
    # and a 502 naming that is the right answer to an upstream's junk, not a crash.
    echoed = result.status == 502 and b'"code":"invalid_model_output"' in result.body
    assert result.status < 500 or echoed, context
    assert "x-request-id" in result.headers, context
    if result.status >= 400:
        error = json.loads(result.body)
        if case.formatted_path.startswith("/v1/messages"):  # Anthropic's API, its shape
            assert set(error) == {"type", "error", "request_id"}, context
            assert set(error["error"]) == {"type", "message"}, context
            return
        assert set(error) == {"error"}, context
        assert {"message", "type", "param", "code"} <= set(error["error"]), context


def _not_set(value: Any) -> bool:
    return type(value).__name__ == "NotSet"
