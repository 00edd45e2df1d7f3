"""OpenAI's Files, Uploads and Batch APIs end to end: the official `openai` client
against `spine local` with its SQS event sources running on an embedded S3 + SQS
(moto's server mode), lines through the real pipeline to the OpenAI wire fake, usage
rows in a real Postgres."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import httpx
import openai
import psycopg
import pytest

from spine.batches import messages
from tests.fakes import Delay, Fail
from tests.integration.conftest import Env
from tests.integration.emulator import running_emulator


@pytest.fixture
def stack(env: Env, aws_endpoint: str) -> Iterator[str]:
    with running_emulator(env, pool_size=4, aws_endpoint=aws_endpoint) as url:
        yield url


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def chat_line(i: int, *, url: str = "/v1/chat/completions", model: str = "gpt-test") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]}
    return json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body})


def jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def wait_for(client: openai.OpenAI, batch_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch.request_counts}"
        time.sleep(0.2)


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def batch_rows(env: Env, batch_id: str) -> list[dict[str, Any]]:
    return [r for r in env.usage_rows() if (r["metadata"] or {}).get("batch_id") == batch_id]


def test_a_batch_with_failing_calls_accounts_for_every_line_once(
    stack: str, env: Env, api_key: str
) -> None:
    # Given 1,000 chat lines, and an upstream that fails 10% of calls: half with a
    # transient 500 (retried), half with a 400 (the line's answer is that error)
    count = 1000
    actions: list[Any] = []
    for i in range(count):
        actions.append(Fail(500) if i % 20 == 5 else Fail(400) if i % 20 == 15 else Delay(0))
    env.fakes.script("openai", *actions)
    client = sdk(stack, api_key)
    uploaded = client.files.create(
        file=("in.jsonl", jsonl([chat_line(i) for i in range(count)])), purpose="batch"
    )
    assert uploaded.purpose == "batch" and uploaded.bytes > 0
    # When it runs as a batch
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "eval"},
    )
    assert batch.status == "validating" and batch.metadata == {"job": "eval"}
    done = wait_for(client, batch.id)
    # Then it completes, every custom_id once across the output and error files
    assert done.status == "completed", done
    output = file_lines(client, done.output_file_id)
    errors = file_lines(client, done.error_file_id)
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(count))
    assert len(errors) == count // 20  # the 400s; the 500s were retried
    assert all(line["response"]["status_code"] == 400 for line in errors)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (len(output), len(errors))
    first = output[0]
    assert first["response"]["status_code"] == 200
    assert first["response"]["request_id"] == f"{batch.id}:{first['custom_id']}"
    assert first["response"]["body"]["object"] == "chat.completion"
    # And one billed usage row per answered line, the cost matching the answers' tokens
    rows = batch_rows(env, batch.id)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == len(output)
    assert {r["request_id"] for r in ok} == {line["response"]["request_id"] for line in output}
    prompt = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    completion = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    expected = (Decimal("0.15") * prompt + Decimal("0.60") * completion) / 1_000_000
    assert sum(Decimal(r["cost_usd"]) for r in ok) == pytest.approx(expected)
    assert all(Decimal(r["cost_usd"]) == 0 for r in rows if r["status"] != "ok")

    # When a line's message is delivered again after the batch finished
    calls = len(env.fakes.requests("openai"))
    queue_url = next(
        u for u in boto3.client("sqs").list_queues()["QueueUrls"] if u.endswith("batchqueue")
    )
    first_lines = [
        messages.line_ref(n + 1, f"req-{n}", json.loads(chat_line(n)), offset=0, length=0)
        for n in range(3)
    ]
    # (and a single line's message, as an earlier version queued them)
    legacy = {"kind": "line", "batch": batch.id, **first_lines[0]}
    for redelivered in (messages.lines(batch.id, first_lines), legacy):
        boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(redelivered))
    time.sleep(3)
    # Then it runs nothing and bills nothing
    assert len(env.fakes.requests("openai")) == calls
    assert len(batch_rows(env, batch.id)) == len(rows)
    assert client.batches.list().data[0].id == batch.id


def test_cancel_stops_new_lines_and_keeps_finished_ones(
    env: Env, aws_endpoint: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a slow upstream and a batch of 200 lines, many more than run at once
    # (4 containers of 2 calls each, messages of 10 lines)
    monkeypatch.setenv("SPINE_BATCH__LINE_CONCURRENCY", "2")
    monkeypatch.setenv("SPINE_BATCH__LINES_PER_MESSAGE", "10")
    with running_emulator(env, pool_size=4, aws_endpoint=aws_endpoint) as stack:
        cancel_mid_run(stack, env, api_key)


def cancel_mid_run(stack: str, env: Env, api_key: str) -> None:
    count = 200
    env.fakes.script("openai", *[Delay(0.3)] * count)
    client = sdk(stack, api_key)
    uploaded = client.files.create(
        file=("in.jsonl", jsonl([chat_line(i) for i in range(count)])), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 60
    while (client.batches.retrieve(batch.id).request_counts or object()).completed < 3:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # When it is cancelled mid-run
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "finalizing", "cancelled")
    done = wait_for(client, batch.id)
    # Then it ends cancelled: the finished lines in the output, the rest never ran
    assert done.status == "cancelled" and done.cancelled_at is not None
    output = file_lines(client, done.output_file_id)
    errors = file_lines(client, done.error_file_id)
    assert 3 <= len(output) < count
    assert sorted(line["custom_id"] for line in output + errors) == sorted(
        f"req-{i}" for i in range(count)
    )
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    calls = len(env.fakes.requests("openai"))
    time.sleep(1)
    assert len(env.fakes.requests("openai")) == calls  # nothing runs after it
    assert len([r for r in batch_rows(env, batch.id) if r["status"] == "ok"]) == len(output)


def test_lines_are_admitted_together_and_one_by_one_when_they_do_not_fit(
    stack: str, env: Env, api_key: str
) -> None:
    # Given gpt-test limited to 30 requests a minute (its own counter: the batch API
    # calls around the batch do not take from it)
    env.write_models(
        env.models_path.read_text().replace(
            "max_output_tokens: 1000\n", "max_output_tokens: 1000\n    limits: {rpm: 30}\n", 1
        )
    )
    client = sdk(stack, api_key)
    # The limit's windows are calendar minutes: both batches run within one
    if (into_minute := time.time() % 60) > 40:
        time.sleep(60.5 - into_minute)

    def run(count: int) -> Any:
        uploaded = client.files.create(
            file=("in.jsonl", jsonl([chat_line(i) for i in range(count)])), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        return wait_for(client, batch.id)

    # When a batch of 20 lines runs (one group: admitted together), then one of 30
    first, second = run(20), run(30)
    # Then the first fits the limit; of the second, 10 more lines run and the 20 the
    # minute has no room for end in the error file with the limit's 429
    assert first.request_counts.completed == 20 and first.request_counts.failed == 0
    assert (second.request_counts.completed, second.request_counts.failed) == (10, 20)
    errors = file_lines(client, second.error_file_id)
    assert {line["response"]["status_code"] for line in errors} == {429}
    assert all("gpt-test" in line["response"]["body"]["error"]["message"] for line in errors)
    # And the model's counter holds exactly the 30 lines that ran
    with psycopg.connect(env.db_url) as conn:
        used = conn.execute(
            "SELECT sum(used) FROM rate_counters WHERE subject = 'model:gpt-test'"
            " AND metric = 'requests'"
        ).fetchone()
    assert used == (30,)
    ok_rows = [r for b in (first, second) for r in batch_rows(env, b.id) if r["status"] == "ok"]
    assert len(ok_rows) == 30


def test_input_file_problems_name_their_lines(stack: str, env: Env, api_key: str) -> None:
    client = sdk(stack, api_key)

    def upload_error(content: bytes) -> str:
        with pytest.raises(openai.BadRequestError) as caught:
            client.files.create(file=("bad.jsonl", content), purpose="batch")
        return str(caught.value)

    # Malformed JSONL, a repeated custom_id: refused at upload, naming the line
    assert "Line 2: not valid JSON" in upload_error(jsonl([chat_line(0), "{nope", chat_line(2)]))
    repeated = upload_error(jsonl([chat_line(0), chat_line(1), chat_line(0)]))
    assert "Line 3: custom_id 'req-0' is already used on line 1" in repeated
    # A wrong url and an unknown model: refused when the batch is created
    mixed = client.files.create(
        file=(
            "mixed.jsonl",
            jsonl(
                [
                    chat_line(0),
                    chat_line(1, url="/v1/embeddings"),
                    chat_line(2, model="no-such-model"),
                ]
            ),
        ),
        purpose="batch",
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=mixed.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    message = str(caught.value)
    assert "Line 2: url '/v1/embeddings' does not match" in message
    assert "Line 3: model 'no-such-model' is not a model Spine serves" in message


def test_a_file_too_large_is_refused_naming_the_line(
    env: Env, aws_endpoint: str, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPINE_BATCH__MAX_FILE_BYTES", "1000")
    with running_emulator(env, pool_size=2, aws_endpoint=aws_endpoint) as url:
        client = sdk(url, api_key)
        with pytest.raises(openai.APIStatusError) as caught:
            client.files.create(
                file=("big.jsonl", jsonl([chat_line(i) for i in range(20)])), purpose="batch"
            )
        assert caught.value.status_code == 413
        assert "larger than 1000 bytes" in str(caught.value)
        assert "crossed at line 7" in str(caught.value)


def test_a_file_larger_than_a_request_body_comes_through_an_upload(
    stack: str, env: Env, api_key: str
) -> None:
    # Given a 6.5 MB input file: more than one request body may carry (Lambda's 6 MB)
    pad = "x" * 900
    lines = [
        json.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-test", "messages": [{"role": "user", "content": pad}]},
            }
        )
        for i in range(6500)
    ]
    content = jsonl(lines)
    assert len(content) > 6_000_000
    client = sdk(stack, api_key)
    with pytest.raises(openai.APIStatusError) as too_large:
        client.files.create(file=("big.jsonl", content), purpose="batch")
    assert too_large.value.status_code == 413
    # When it is sent through the Uploads API in two parts, the second one first
    cut = 5_300_000
    halves = {"head": content[:cut], "tail": content[cut:]}
    # (and again in 1 MB parts, added in a shuffled order: smaller than S3 takes)
    small = [content[i : i + 1_000_000] for i in range(0, len(content), 1_000_000)]
    for parts in ({"tail": halves["tail"], "head": halves["head"]}, dict(enumerate(small))):
        upload = client.uploads.create(
            filename="big.jsonl", purpose="batch", bytes=len(content), mime_type="application/jsonl"
        )
        names = list(parts)  # the order they are added in
        added = {
            name: client.uploads.parts.create(upload_id=upload.id, data=parts[name]).id
            for name in (names if "head" in parts else names[1::2] + names[::2][::-1])
        }
        order = ["head", "tail"] if "head" in parts else sorted(names)
        done = client.uploads.complete(upload_id=upload.id, part_ids=[added[n] for n in order])
        # Then it is one file in part_ids' order, checked line by line, whose content
        # comes back whole
        assert done.status == "completed" and done.file is not None
        assert done.file.bytes == len(content)
        assert client.files.retrieve(done.file.id).filename == "big.jsonl"
        assert client.files.content(done.file.id).content == content
    # And no part is left behind in the bucket
    bucket = next(
        b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"] if "batch" in b["Name"]
    )
    assert (
        boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="upload-parts/")["KeyCount"] == 0
    )


def test_a_tenant_cannot_reach_another_tenants_files_or_batches(stack: str, env: Env) -> None:
    acme = sdk(stack, env.create_key("acme", principal="bob", tenant="acme"))
    globex = sdk(stack, env.create_key("globex", principal="bob", tenant="globex"))
    uploaded = acme.files.create(file=("in.jsonl", jsonl([chat_line(0)])), purpose="batch")
    batch = acme.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for attempt in (
        lambda: globex.files.retrieve(uploaded.id),
        lambda: globex.files.content(uploaded.id),
        lambda: globex.files.delete(uploaded.id),
        lambda: globex.batches.retrieve(batch.id),
        lambda: globex.batches.cancel(batch.id),
        lambda: globex.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert globex.files.list().data == [] and globex.batches.list().data == []
    assert [f.id for f in acme.files.list().data] == [uploaded.id]


def test_files_need_a_credential(stack: str) -> None:
    answer = httpx.post(f"{stack}/v1/files", files={"file": ("a", b"x")}, data={"purpose": "batch"})
    assert answer.status_code == 401


def test_text_with_nul_in_an_upload_is_a_400_naming_it(env: Env, api_key: str) -> None:
    from tests.integration.gateway import Gateway

    gateway = Gateway()
    try:
        result = gateway.request(
            "POST",
            "/v1/uploads",
            json_body={"bytes": 1, "filename": "a.jsonl", "mime_type": "\x00", "purpose": "batch"},
            key=api_key,
        )
    finally:
        gateway.close()
    assert result.status == 400, result.body
    assert result.error["param"] == "mime_type"
