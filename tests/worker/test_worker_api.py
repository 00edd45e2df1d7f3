"""The real control plane with the real llama-server and SmolLM2: the API end to end."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.worker.conftest import TOKEN, WorkerProcess, pid_alive

pytestmark = pytest.mark.worker

QUESTION = "What is the capital of France?"


def sse_events(text: str) -> list[str]:
    return [block for block in text.split("\n\n") if block.strip()]


def data_of(events: list[str]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        for line in event.splitlines():
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# --- health, auth ------------------------------------------------------------------------


def test_health_needs_no_auth_and_ready_reports_default(worker: WorkerProcess) -> None:
    assert httpx.get(worker.url + "/health").json() == {"status": "ok"}
    ready = worker.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model"] == "smollm2-135m"


@pytest.mark.parametrize(
    "path", ["/ready", "/metrics", "/v1/models", "/v1/models/list", "/v1/models/active"]
)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_everything_else_needs_the_token(
    worker: WorkerProcess, path: str, headers: dict[str, str]
) -> None:
    response = httpx.get(worker.url + path, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_inference_and_lifecycle_need_the_token(worker: WorkerProcess) -> None:
    for path in ("/v1/chat/completions", "/v1/models/load", "/v1/models/unload"):
        response = httpx.post(worker.url + path, json={"model": "smollm2-135m"})
        assert response.status_code == 401, path


# --- OpenAI endpoints -------------------------------------------------------------------


def test_chat_completion_answers_by_alias(worker: WorkerProcess) -> None:
    response = worker.chat("smollm2", QUESTION, max_tokens=12, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "smollm2-135m"
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 12
    assert body["usage"]["prompt_tokens"] > 0


def test_text_completion(worker: WorkerProcess) -> None:
    response = worker.client.post(
        "/v1/completions",
        json={"model": "smollm2-135m", "prompt": "The sky is", "max_tokens": 4, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"]


def test_openai_model_list(worker: WorkerProcess) -> None:
    data = worker.client.get("/v1/models").json()
    ids = [m["id"] for m in data["data"]]
    assert "smollm2-135m" in ids and "gpt-4o" not in ids
    assert all(m["object"] == "model" for m in data["data"])


def test_stream_passes_sse_through_with_usage_last_when_asked(worker: WorkerProcess) -> None:
    response = worker.chat(
        "smollm2-135m",
        QUESTION,
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = data_of(sse_events(response.text))
    assert chunks[-1] == "[DONE]"
    final = chunks[-2]
    assert final["usage"]["completion_tokens"] == 6
    assert final["usage"]["total_tokens"] == final["usage"]["prompt_tokens"] + 6
    deltas = [c for c in chunks[:-2] if c["choices"]]
    assert all(c["object"] == "chat.completion.chunk" for c in deltas)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas)
    assert text


def test_a_stream_without_include_usage_has_no_usage_only_chunk(worker: WorkerProcess) -> None:
    # OpenAI sends the usage chunk (no choices) only when asked; a client reading
    # chunk.choices[0] on every chunk must not meet one it did not ask for.
    response = worker.chat("smollm2-135m", QUESTION, max_tokens=6, stream=True)
    assert response.status_code == 200
    chunks = data_of(sse_events(response.text))
    assert chunks[-1] == "[DONE]"
    assert chunks[:-1] and all(c["choices"] for c in chunks[:-1]), chunks
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text


def test_same_seed_same_text_and_prompt_cache_is_bypassed(worker: WorkerProcess) -> None:
    params: dict[str, Any] = {"max_tokens": 12, "temperature": 1.3, "top_k": 0, "top_p": 1.0}
    prompt = "Invent a name for a dragon and describe it."

    def run(seed: int | None) -> dict[str, Any]:
        extra = {"seed": seed} if seed is not None else {}
        response = worker.chat("smollm2-135m", prompt, **params, **extra)
        assert response.status_code == 200, response.text
        return dict(response.json())

    first, second = run(1234), run(1234)
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    # The worker sent cache_prompt=false: the repeated prompt was evaluated in full.
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    # Without a seed llama-server reuses the slot's cache (which is what breaks seeds).
    run(None)
    assert run(None)["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    # A different seed samples differently.
    texts = {run(seed)["choices"][0]["message"]["content"] for seed in (1, 2)}
    assert len(texts) > 1


async def test_same_seed_same_text_under_concurrency(worker: WorkerProcess) -> None:
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "Write one line about the sea."}],
        "max_tokens": 12,
        "temperature": 1.2,
        "seed": 99,
    }
    async with httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c:
        other = {**body, "messages": [{"role": "user", "content": "Count to ten."}], "seed": 5}
        responses = await asyncio.gather(
            c.post("/v1/chat/completions", json=body),
            c.post("/v1/chat/completions", json=other),
            c.post("/v1/chat/completions", json=body),
        )
    texts = [r.json()["choices"][0]["message"]["content"] for r in responses]
    assert texts[0] == texts[2]


def test_json_schema_output_parses_and_matches(worker: WorkerProcess) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"},
        },
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response = worker.chat(
        "smollm2-135m",
        "Give the capital of France and its population as JSON.",
        max_tokens=60,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "strict": True, "schema": schema},
        },
    )
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), schema)


def test_grammar_constrains_output(worker: WorkerProcess) -> None:
    response = worker.chat(
        "smollm2-135m", "Say yes or no.", max_tokens=5, grammar='root ::= "yes" | "no"'
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] in ("yes", "no")


def test_mirostat_and_penalties_are_accepted(worker: WorkerProcess) -> None:
    response = worker.chat(
        "smollm2-135m", QUESTION, max_tokens=5, mirostat=2, mirostat_tau=4.0, mirostat_eta=0.2,
        repeat_penalty=1.2, presence_penalty=0.5, frequency_penalty=0.5, min_p=0.1,
        logit_bias={"42": -100}, stop=["\n"], seed=3,
    )  # fmt: skip
    assert response.status_code == 200, response.text


def test_embeddings_model(worker: WorkerProcess) -> None:
    response = worker.client.post(
        "/v1/embeddings", json={"model": "smollm2-embed", "input": ["hello", "world"]}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2 and len(data[0]["embedding"]) > 10
    # A chat model refuses embeddings, an embeddings model refuses chat.
    refused = worker.client.post("/v1/embeddings", json={"model": "smollm2-135m", "input": "x"})
    assert refused.status_code == 400
    assert worker.chat("smollm2-embed").status_code == 400


# --- client errors ----------------------------------------------------------------------


async def until(condition: Any, within: float = 30) -> None:
    """Poll `condition` (a sync call to the worker) without blocking other test tasks long."""
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {within} s")


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return dict(error)


def test_malformed_json(worker: WorkerProcess) -> None:
    response = worker.client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    array = worker.client.post("/v1/chat/completions", json=[1, 2])
    assert array.status_code == 400


def test_unknown_model(worker: WorkerProcess) -> None:
    response = worker.chat("no-such-model")
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"
    missing = worker.client.post("/v1/chat/completions", json={"messages": []})
    assert missing.status_code == 400 and error_of(missing)["param"] == "model"


def test_negative_max_tokens(worker: WorkerProcess) -> None:
    response = worker.chat("smollm2-135m", max_tokens=-5)
    assert response.status_code == 400
    assert error_of(response)["param"] == "max_tokens"


def test_absurd_context(worker: WorkerProcess) -> None:
    huge_output = worker.chat("smollm2-135m", max_tokens=10_000_000)
    assert huge_output.status_code == 400
    assert error_of(huge_output)["code"] == "context_length_exceeded"
    # A prompt longer than the slot's context (2048): the engine's refusal, mapped.
    huge_prompt = worker.chat("smollm2-135m", "hello " * 3000, max_tokens=2)
    assert huge_prompt.status_code == 400
    assert error_of(huge_prompt)["code"] == "context_length_exceeded"


def test_bad_priority_header(worker: WorkerProcess) -> None:
    response = worker.client.post(
        "/v1/chat/completions",
        json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-priority": "urgent"},
    )
    assert response.status_code == 400 and error_of(response)["param"] == "x-priority"


def test_body_too_large(worker: WorkerProcess) -> None:
    response = worker.client.post(
        "/v1/chat/completions", content=b"x" * (9 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413


# --- broken and forbidden model files ---------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "code", "phrase"),
    [
        ("broken-missing", 404, "model_file_not_found", "not found"),
        ("broken-not-gguf", 422, "model_file_invalid", "not a GGUF file"),
        ("broken-corrupt", 422, "model_load_failed", "could not load"),
        ("broken-dotdot", 403, "model_path_forbidden", "outside the model directories"),
        ("broken-symlink", 403, "model_path_forbidden", "outside the model directories"),
        ("broken-absolute", 403, "model_path_forbidden", "outside the model directories"),
    ],
)
def test_bad_model_files_are_refused_and_others_keep_serving(
    worker: WorkerProcess, model: str, status: int, code: str, phrase: str
) -> None:
    load = worker.client.post("/v1/models/load", json={"model": model})
    assert load.status_code == status, load.text
    error = error_of(load)
    assert error["code"] == code and phrase in error["message"]
    listed = worker.models()[model]
    assert listed["state"] == "failed" and phrase in listed["last_error"]
    # An on-demand request gets the same clear error ...
    assert worker.chat(model).status_code == status
    # ... and the default model is unaffected.
    assert worker.chat("smollm2-135m").status_code == 200


# --- lifecycle --------------------------------------------------------------------------


def test_load_unload_reload_list_active(worker: WorkerProcess) -> None:
    client = worker.client
    loaded = client.post("/v1/models/load", json={"model": "smollm2-serial"})
    assert loaded.status_code == 200, loaded.text
    info = worker.models()["smollm2-serial"]
    assert info["state"] == "ready" and info["slots"] == 1
    assert info["memory_bytes"] > 10 * 1024 * 1024 and pid_alive(info["pid"])
    active = [m["id"] for m in client.get("/v1/models/active").json()["data"]]
    assert "smollm2-serial" in active and "broken-missing" not in active

    reloaded = client.post("/v1/models/reload", json={"model": "smollm2-serial"})
    assert reloaded.status_code == 200
    new_pid = worker.models()["smollm2-serial"]["pid"]
    assert new_pid != info["pid"] and not pid_alive(info["pid"])

    unloaded = client.post("/v1/models/unload", json={"model": "smollm2-serial"})
    assert unloaded.status_code == 200 and unloaded.json()["unloaded"] is True
    assert worker.models()["smollm2-serial"]["state"] == "unloaded"
    assert not pid_alive(new_pid)
    again = client.post("/v1/models/unload", json={"model": "smollm2-serial"})
    assert again.json()["unloaded"] is False
    assert client.post("/v1/models/load", json={"model": "nope"}).status_code == 404
    assert client.post("/v1/models/load", json={}).status_code == 400


async def test_concurrent_requests_share_one_on_demand_load(worker: WorkerProcess) -> None:
    worker.client.post("/v1/models/unload", json={"model": "smollm2-serial"})
    before = len(worker.audit())
    body = {"model": "smollm2-serial", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2}  # fmt: skip
    async with httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c:
        responses = await asyncio.gather(
            *(c.post("/v1/chat/completions", json=body) for _ in range(3))
        )
    assert [r.status_code for r in responses] == [200, 200, 200]
    loads = [e for e in worker.audit()[before:] if e["model"] == "smollm2-serial"]
    assert [e["action"] for e in loads] == ["load_on_demand"]


def test_audit_log_records_who_what_when_result(worker: WorkerProcess) -> None:
    started = time.time()
    headers = {"x-user-id": "ops-alice"}
    worker.client.post("/v1/models/load", json={"model": "smollm2-serial"}, headers=headers)
    worker.client.post("/v1/models/unload", json={"model": "smollm2-serial"}, headers=headers)
    worker.client.post("/v1/models/unload", json={"model": "nope"}, headers=headers)
    entries = [e for e in worker.audit() if e["unix"] >= started - 1]
    by_action = {(e["action"], e["model"]): e for e in entries}
    unload = by_action[("unload", "smollm2-serial")]
    assert unload["actor"].endswith(":ops-alice") and unload["actor"].startswith("tok-")
    assert TOKEN not in json.dumps(entries)
    assert unload["result"] == "ok" and unload["duration_s"] >= 0 and unload["ts"]
    assert by_action[("unload", "nope")]["result"] == "refused"
    load = by_action[("load", "smollm2-serial")]  # "ok", or "noop" when it was loaded
    assert load["actor"] == unload["actor"] and load["result"] in ("ok", "noop")


async def test_busy_model_is_not_unloaded(worker: WorkerProcess) -> None:
    body = {"model": "smollm2-serial", "messages": [{"role": "user", "content": "Tell a story."}],
            "max_tokens": 400, "stream": True, "ignore_eos": True}  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c,
        c.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        assert stream.status_code == 200
        # Keep the iterator referenced: a dropped (broken-out-of) iterator is finalized,
        # which closes the connection, which the worker rightly treats as a disconnect.
        lines = stream.aiter_lines()
        await anext(lines)
        refused = await c.post("/v1/models/unload", json={"model": "smollm2-serial"})
        assert refused.status_code == 409, refused.text
        assert error_of(refused)["code"] == "model_busy"
        assert worker.models()["smollm2-serial"]["state"] == "ready"
        await lines.aclose()
    await until(lambda: worker.models()["smollm2-serial"]["in_flight"] == 0, 10)


def test_draft_model_enables_speculative_decoding(worker: WorkerProcess) -> None:
    assert worker.client.post("/v1/models/load", json={"model": "smollm2-draft"}).status_code == 200
    port = worker.models()["smollm2-draft"]["port"]
    slots = httpx.get(f"http://127.0.0.1:{port}/slots").json()
    assert slots and all(s["speculative"] for s in slots)
    assert worker.chat("smollm2-draft", max_tokens=8).status_code == 200
    worker.client.post("/v1/models/unload", json={"model": "smollm2-draft"})


# --- scheduling -------------------------------------------------------------------------


async def test_queue_admits_by_priority_and_bounds_with_429(worker: WorkerProcess) -> None:
    # Given the one-slot model busy with a long stream
    worker.client.post("/v1/models/load", json={"model": "smollm2-serial"})
    long = {"model": "smollm2-serial", "messages": [{"role": "user", "content": "Tell a story."}],
            "max_tokens": 300, "stream": True, "ignore_eos": True}  # fmt: skip
    short = {"model": "smollm2-serial", "messages": [{"role": "user", "content": "hi"}],
             "max_tokens": 1}  # fmt: skip
    finished: list[str] = []
    async with httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c:

        async def queued(label: str, priority: str) -> int:
            r = await c.post(
                "/v1/chat/completions", json=short,
                headers={"x-priority": priority, "x-user-id": label},
            )  # fmt: skip
            finished.append(label)
            return r.status_code

        async with c.stream("POST", "/v1/chat/completions", json=long) as blocker:
            assert blocker.status_code == 200
            tasks = []
            # When low, normal and high requests queue behind it, in that order
            for n, (label, priority) in enumerate(
                [("low", "low"), ("normal", "normal"), ("high", "high")], start=1
            ):
                tasks.append(asyncio.create_task(queued(label, priority)))
                await until(lambda n=n: worker.models()["smollm2-serial"]["queued"] >= n)
            # And the queue (3 places) is full: the next request gets 429 + Retry-After
            rejected = await c.post("/v1/chat/completions", json=short)
            assert rejected.status_code == 429
            assert int(rejected.headers["retry-after"]) >= 1
            assert error_of(rejected)["code"] == "queue_full"
            await blocker.aread()
        statuses = await asyncio.gather(*tasks)
    # Then they were served high, normal, low
    assert statuses == [200, 200, 200]
    assert finished == ["high", "normal", "low"]


async def test_client_disconnect_stops_generation(worker: WorkerProcess) -> None:
    worker.client.post("/v1/models/load", json={"model": "smollm2-serial"})
    port = worker.models()["smollm2-serial"]["port"]
    engine = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")

    async def busy() -> bool:
        return any(s["is_processing"] for s in (await engine.get("/slots")).json())

    before = await _engine_counter(engine, "llamacpp:tokens_predicted_total")
    body = {"model": "smollm2-serial", "messages": [{"role": "user", "content": "Tell a story."}],
            "max_tokens": 900, "stream": True, "ignore_eos": True}  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c,
        c.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        seen = 0
        async for line in stream.aiter_lines():
            seen += line.startswith("data:")
            if seen >= 5:
                break
        # The engine is generating. Polled: on a loaded machine one look at /slots
        # right after the 5th chunk once found no slot busy (cause not found). What
        # this test proves is the token count below, which a single look cannot fake.
        for _ in range(40):
            if await busy():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the engine was not generating while the client read")
    # The client left: the engine's slot frees long before 900 tokens are generated.
    for _ in range(100):
        if not await busy():
            break
        await asyncio.sleep(0.05)
    assert not await busy()
    await until(lambda: worker.models()["smollm2-serial"]["in_flight"] == 0, 5)
    generated = await _engine_counter(engine, "llamacpp:tokens_predicted_total") - before
    assert generated < 400
    await engine.aclose()


async def _engine_counter(engine: httpx.AsyncClient, name: str) -> float:
    for line in (await engine.get("/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


# --- metrics ----------------------------------------------------------------------------


def test_metrics_merge_worker_and_engine_series(worker: WorkerProcess) -> None:
    worker.chat("smollm2-135m", max_tokens=3, stream=True)
    text = worker.client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "spine_worker_queue_depth", "spine_worker_in_flight", "spine_worker_model_loads",
        "spine_worker_model_unloads", "spine_worker_model_load_seconds",
        "spine_worker_model_unload_seconds", "spine_worker_prompt_tokens",
        "spine_worker_completion_tokens", "spine_worker_time_to_first_token_seconds",
    ):  # fmt: skip
        assert name in families, name
    ttft = families["spine_worker_time_to_first_token_seconds"].samples
    count = [s for s in ttft if s.name.endswith("_count") and s.labels["model"] == "smollm2-135m"]
    assert count and count[0].value >= 1
    engine_series = [
        s for f in families.values() for s in f.samples if s.name.startswith("llamacpp:")
    ]
    assert engine_series and all("model" in s.labels for s in engine_series)
    assert any(s.labels["model"] == "smollm2-135m" for s in engine_series)


def _completion_tokens_metric(worker: WorkerProcess, model: str) -> float:
    text = worker.client.get("/metrics").text
    family = {f.name: f for f in text_string_to_metric_families(text)}[
        "spine_worker_completion_tokens"
    ]
    return sum(s.value for s in family.samples if s.labels.get("model") == model)


def test_streamed_usage_is_counted_in_token_metrics(worker: WorkerProcess) -> None:
    # Given the counter before
    model = "smollm2-135m"
    before = _completion_tokens_metric(worker, model)
    # When a streamed request generates exactly 7 tokens
    body = {"model": model, "messages": [{"role": "user", "content": "Count."}],
            "max_tokens": 7, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    response = worker.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    # Then the relayed usage chunk was parsed and counted once
    assert _completion_tokens_metric(worker, model) - before == 7


# --- crash recovery ---------------------------------------------------------------------


async def test_engine_killed_mid_stream_then_restarted(worker: WorkerProcess) -> None:
    model = "smollm2-135m"
    pid = worker.models()[model]["pid"] or (
        worker.chat(model).status_code and worker.models()[model]["pid"]
    )
    body = {"model": model, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 800, "stream": True, "ignore_eos": True}  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c,
        c.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        assert stream.status_code == 200
        text = ""
        async for chunk in stream.aiter_text():
            if not text:
                os.kill(pid, 9)
            text += chunk
    # The stream ends with an error event, then [DONE]
    events = sse_events(text)
    assert events[-1] == "data: [DONE]"
    error_event = events[-2]
    assert error_event.startswith("event: error")
    error = json.loads(error_event.split("data: ", 1)[1])["error"]
    assert error["code"] == "engine_failed" and "restarted" in error["message"]
    # The next request succeeds on a new engine
    response = worker.chat(model, max_tokens=3)
    assert response.status_code == 200, response.text
    assert worker.models()[model]["pid"] != pid
    assert any(e["action"] == "restart_after_crash" for e in worker.audit())


async def test_engine_killed_mid_request_gives_502(worker: WorkerProcess) -> None:
    model = "smollm2-serial"
    worker.client.post("/v1/models/load", json={"model": model})
    pid = worker.models()[model]["pid"]
    body = {"model": model, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 800, "ignore_eos": True}  # fmt: skip
    async with httpx.AsyncClient(base_url=worker.url, headers=worker.headers, timeout=60) as c:
        pending = asyncio.create_task(c.post("/v1/chat/completions", json=body))
        await until(lambda: worker.models()[model]["in_flight"] >= 1)
        await asyncio.sleep(0.3)
        os.kill(pid, 9)
        response = await pending
    assert response.status_code == 502
    assert error_of(response)["code"] == "engine_failed"
    assert worker.chat(model, max_tokens=2).status_code == 200
