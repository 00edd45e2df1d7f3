"""Pipeline runs through the real handlers: started by the prompts function (API
Gateway events), advanced by the workflows function (real SQS events of messages
received from the queue, moto's), against the provider wire fakes and a real Postgres.

What a run must survive: a message delivered twice runs its step once; a step whose
instance died (its lease ran out) is claimed again and billed once; a step held by a
live instance is handed back to the queue (a batch item failure)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest

from spine_tools.local.runtime import LambdaContext
from tests.fakes import Fail, Reply, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

PIPELINE: dict[str, Any] = {
    "inputs": ["ticket", "lines"],
    "steps": [
        {"id": "brief", "type": "capability", "capability": "summarize",
         "model": "gpt-test", "with": {"content": "ticket"}},
        {"id": "urgent", "type": "condition", "if": "contains(brief.summary, 'outage')"},
        {"id": "page", "type": "chat", "model": "gpt-test", "when": "urgent",
         "prompt": "Page: {{ s }}", "with": {"s": "brief.summary"}},
        {"id": "tags", "type": "map", "over": "lines", "as": "line", "concurrency": 2,
         "step": {"type": "chat", "model": "gpt-test", "prompt": "Tag {{ l }}",
                  "with": {"l": "line"}}},
        {"id": "result", "type": "transform",
         "expression": "{summary: brief.summary, urgent: urgent, tags: tags, paged: page}"},
    ],
    "output": "result",
}  # fmt: skip


@pytest.fixture
def queue(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    url: str = boto3.client("sqs").create_queue(QueueName="pipeline-steps")["QueueUrl"]
    monkeypatch.setenv("SPINE_WORKFLOWS__QUEUE_URL", url)
    return url


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme", scopes=["prompts:write"])


@pytest.fixture
def stack(env: Env, queue: str) -> Iterator[Gateway]:
    gateway = Gateway()
    yield gateway
    gateway.close()


def summary(text: str) -> Reply:
    answer = {"summary": text, "key_points": ["one"]}
    return Reply(openai_api.chat_completion(json.dumps(answer)))


def start(gateway: Gateway, key: str, inputs: dict[str, Any]) -> dict[str, Any]:
    created = gateway.request(
        "POST", "/v1/pipelines", json_body={"slug": "triage", "definition": PIPELINE}, key=key
    )
    assert created.status == 201, created.body
    run = gateway.request(
        "POST", f"/v1/pipelines/{created.json()['id']}/runs", json_body={"inputs": inputs}, key=key
    )
    assert run.status == 202, run.body
    body: dict[str, Any] = run.json()
    assert body["status"] == "queued"
    return body


def receive(queue: str) -> list[dict[str, Any]]:
    answer = boto3.client("sqs").receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=60
    )
    return list(answer.get("Messages", []))


def deliver(gateway: Gateway, messages: list[dict[str, Any]]) -> list[str]:
    """The workflows function's answer to an SQS event of `messages`: the ids it
    hands back to the queue."""
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:pipeline-steps",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }
    spec = gateway.template.functions["WorkflowsFunction"]
    context = LambdaContext.for_invocation(spec, deadline=time.monotonic() + 60)
    answer = gateway.module("WorkflowsFunction").handler(event, context)
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def drain(gateway: Gateway, queue: str) -> int:
    """Deliver messages until the queue is empty, as the event source does; how many."""
    delivered = 0
    while messages := receive(queue):
        failed = set(deliver(gateway, messages))
        assert not failed, failed
        for m in messages:
            boto3.client("sqs").delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        delivered += len(messages)
    return delivered


def get_run(gateway: Gateway, key: str, run_id: str) -> Result:
    return gateway.request("GET", f"/v1/pipeline-runs/{run_id}", key=key)


def steps(gateway: Gateway, key: str, run_id: str) -> dict[str, dict[str, Any]]:
    listed = gateway.request("GET", f"/v1/pipeline-runs/{run_id}/steps", key=key).json()
    return {step["id"]: step for step in listed["data"]}


def test_a_run_goes_step_by_step_through_the_queue(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    # Given a summary that mentions an outage, and two lines to tag
    env.fakes.script("openai", summary("Database outage in eu-west."))
    run = start(stack, alice, {"ticket": "The database is down.", "lines": ["a", "b"]})
    # When the queue's messages are delivered to the workflows function (a step made
    # ready twice, by two steps ending, gets two messages: the second does nothing)
    assert drain(stack, queue) >= 5
    # Then every step ran once, in an order that reads what it needs
    done = get_run(stack, alice, run["id"]).json()
    assert done["status"] == "succeeded", done
    assert done["output"] == {
        "summary": "Database outage in eu-west.",
        "urgent": True,
        "tags": ["echo: Tag a", "echo: Tag b"],
        "paged": "echo: Page: Database outage in eu-west.",
    }
    rows = steps(stack, alice, run["id"])
    assert {k: (v["status"], v["attempts"]) for k, v in rows.items()} == {
        k: ("succeeded", 1) for k in ("brief", "urgent", "page", "tags", "result")
    }
    assert rows["page"]["needs"] == ["brief", "urgent"]
    assert rows["tags"]["input"] == ["a", "b"]
    # And each model call is one usage row, keyed by its step (and item)
    prefix = f"run_{run['id'].replace('-', '')}."
    assert sorted(r["request_id"] for r in env.usage_rows()) == [
        prefix + "brief",
        prefix + "page",
        prefix + "tags.0",
        prefix + "tags.1",
    ]


def test_a_false_condition_skips_its_step_and_a_redelivery_runs_nothing_again(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    env.fakes.script("openai", summary("All calm."))
    run = start(stack, alice, {"ticket": "Nothing happened.", "lines": []})
    drain(stack, queue)
    done = get_run(stack, alice, run["id"]).json()
    assert done["status"] == "succeeded"
    assert done["output"]["paged"] is None and done["output"]["tags"] == []
    assert steps(stack, alice, run["id"])["page"]["status"] == "skipped"
    rows = len(env.usage_rows())
    # When a step's message comes again (SQS delivers at least once)
    sqs = boto3.client("sqs")
    sqs.send_message(
        QueueUrl=queue, MessageBody=json.dumps({"run_id": run["id"], "step_id": "brief"})
    )
    assert drain(stack, queue) == 1
    # Then nothing ran again and nothing was billed again
    assert len(env.usage_rows()) == rows
    assert steps(stack, alice, run["id"])["brief"]["attempts"] == 1


def test_a_step_whose_instance_died_is_claimed_again_and_billed_once(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    env.fakes.script("openai", summary("An outage."))
    run = start(stack, alice, {"ticket": "Down.", "lines": []})
    messages = receive(queue)
    first = next(m for m in messages if json.loads(m["Body"])["step_id"] == "brief")
    for other in messages:  # the steps that read only inputs: back on the queue
        if other is not first:
            boto3.client("sqs").change_message_visibility(
                QueueUrl=queue, ReceiptHandle=other["ReceiptHandle"], VisibilityTimeout=0
            )
    # Given the step claimed by an instance that is still running it: the message waits
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE pipeline_run_steps SET status = 'running', attempts = 1,"
            " lease_until = now() + interval '5 minutes' WHERE step_id = 'brief'"
        )
    assert deliver(stack, [first]) == [first["MessageId"]]
    assert env.usage_rows() == []
    # When that instance dies (its lease runs out) and the message comes back
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE pipeline_run_steps SET lease_until = now() - interval '1 second'"
            " WHERE step_id = 'brief'"
        )
    assert deliver(stack, [first]) == []
    boto3.client("sqs").delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    drain(stack, queue)
    # Then it ran as the second attempt, once, and the run finished
    assert steps(stack, alice, run["id"])["brief"]["attempts"] == 2
    assert get_run(stack, alice, run["id"]).json()["status"] == "succeeded"
    assert [r["request_id"].rsplit(".", 1)[-1] for r in env.usage_rows()] == ["brief", "page"]


def test_a_failing_step_fails_the_run_and_cancels_what_was_left(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    env.fakes.script("openai", Fail(400), Fail(400))
    run = start(stack, alice, {"ticket": "Down.", "lines": ["a"]})
    drain(stack, queue)
    done = get_run(stack, alice, run["id"]).json()
    assert done["status"] == "failed"
    assert done["error"]["step"] == "brief" and done["error"]["type"] == "invalid_request_error"
    rows = steps(stack, alice, run["id"])
    assert rows["brief"]["status"] == "failed"
    assert {rows[k]["status"] for k in ("urgent", "page", "tags", "result")} == {"cancelled"}


def test_cancel_stops_a_run_before_its_steps_run(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    run = start(stack, alice, {"ticket": "Down.", "lines": ["a"]})
    cancelled = stack.request("POST", f"/v1/pipeline-runs/{run['id']}/cancel", key=alice)
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json()["status"] == "cancelled"
    drain(stack, queue)
    assert env.fakes.requests("openai") == [] and env.usage_rows() == []
    assert {s["status"] for s in steps(stack, alice, run["id"]).values()} == {"cancelled"}


def test_runs_are_their_owners_and_inputs_are_checked(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    run = start(stack, alice, {"ticket": "Down.", "lines": []})
    bob = env.create_key("bob", principal="bob", tenant="other")
    for method, path in (
        ("GET", f"/v1/pipeline-runs/{run['id']}"),
        ("GET", f"/v1/pipeline-runs/{run['id']}/steps"),
        ("POST", f"/v1/pipeline-runs/{run['id']}/cancel"),
        ("POST", f"/v1/pipelines/{run['pipeline_id']}/runs"),
    ):
        assert stack.request(method, path, json_body={}, key=bob).status == 404, path
    missing = stack.request(
        "POST", f"/v1/pipelines/{run['pipeline_id']}/runs", json_body={"inputs": {}}, key=alice
    )
    assert missing.status == 400 and missing.error["param"] == "inputs.ticket"
    with psycopg.connect(env.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pipeline_runs").fetchone() == (1,)


def test_through_spine_local_a_run_finishes_on_the_templates_queue(
    env: Env, alice: str, aws_endpoint: str
) -> None:
    import httpx

    from tests.integration.emulator import running_emulator

    # Given spine local with its embedded SQS: the template's steps queue, and the
    # workflows function on its event source
    env.fakes.script("openai", summary("A big outage."))
    with running_emulator(env, aws_endpoint=aws_endpoint) as url:
        http = httpx.Client(base_url=url, headers={"x-api-key": alice}, timeout=30)
        created = http.post("/v1/pipelines", json={"slug": "triage", "definition": PIPELINE})
        assert created.status_code == 201, created.text
        started = http.post(
            f"/v1/pipelines/{created.json()['id']}/runs",
            json={"inputs": {"ticket": "Down.", "lines": ["x"]}},
        )
        assert started.status_code == 202, started.text
        # When it is left to run
        deadline = time.monotonic() + 60
        while (run := http.get(f"/v1/pipeline-runs/{started.json()['id']}").json())["status"] in (
            "queued",
            "running",
        ) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Then it finished with every step's work
    assert run["status"] == "succeeded", run
    assert run["output"]["tags"] == ["echo: Tag x"] and run["output"]["urgent"] is True


def test_a_step_finished_by_an_instance_that_died_before_queueing_the_next_is_advanced(
    stack: Gateway, env: Env, alice: str, queue: str
) -> None:
    env.fakes.script("openai", summary("All calm."))
    run = start(stack, alice, {"ticket": "Calm.", "lines": []})
    messages = receive(queue)
    # Given every first step finished, but nothing after them ever queued (the
    # instance died between the two)
    with psycopg.connect(env.db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE pipeline_run_steps SET status = 'succeeded', attempts = 1,"
            ' output = \'{"summary": "All calm.", "key_points": []}\''
            " WHERE step_id = 'brief'"
        )
        conn.execute(
            "UPDATE pipeline_run_steps SET status = 'succeeded', attempts = 1, output = '[]'"
            " WHERE step_id = 'tags'"
        )
    # When their messages come back
    assert deliver(stack, messages) == []
    for m in messages:
        boto3.client("sqs").delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    drain(stack, queue)
    # Then the run went on from there and finished, with no step run twice
    done = get_run(stack, alice, run["id"]).json()
    assert done["status"] == "succeeded", done
    assert done["output"] == {"summary": "All calm.", "urgent": False, "tags": [], "paged": None}
    assert env.usage_rows() == []
