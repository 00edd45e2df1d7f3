"""POST /v1/embeddings through the one pipeline: the official client (floats and its
default base64), limits and the usage row with cost, a model without the capability
refused, fields Spine does not know forwarded."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url
from tests.integration.gateway import Gateway
from tests.worker.conftest import MODEL_FILE, TOKEN, WorkerProcess, llama_server, model_file

__all__ = ["emulator_url", "llama_server", "model_file"]

EMBED_MODEL = (
    "  - id: embed-test\n"
    "    provider: openai\n"
    "    model: text-embedding-3-small\n"
    "    base_url: {url}\n"
    "    api_key: {{env: FAKE_OPENAI_KEY}}\n"
    "    pricing: {{input: 0.02}}\n"
    "    context_window: 8191\n"
    "    capabilities: [embeddings]\n"
)


@pytest.fixture
def embed_model(env: Env) -> str:
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + EMBED_MODEL.format(url=env.fakes.openai_url), 1
        )
    )
    return "embed-test"


def test_the_official_client_embeds_with_floats_and_its_default_base64(
    emulator_url: str, api_key: str, env: Env, embed_model: str
) -> None:
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0) as sdk:
        # The client asks for base64 by default and decodes it
        default = sdk.embeddings.create(model=embed_model, input=["one two", "three"])
        floats = sdk.embeddings.create(
            model=embed_model, input="four five six", encoding_format="float", dimensions=2
        )
    assert [d.embedding for d in default.data] == [[2.0, 7.0, 0.5], [1.0, 5.0, 0.5]]
    assert default.model == embed_model
    assert default.usage.prompt_tokens == 3
    assert floats.data[0].embedding == [3.0, 13.0]
    # One usage row per request, with its cost at the input price
    rows = sorted(env.usage_rows(), key=lambda r: r["prompt_tokens"])
    assert [(r["endpoint"], r["prompt_tokens"], r["status"]) for r in rows] == [
        ("embeddings", 3, "ok"),
        ("embeddings", 3, "ok"),
    ]
    assert all(Decimal(str(r["cost_usd"])) == Decimal("0.00000006") for r in rows)


def test_a_model_without_embeddings_is_refused(gateway: Gateway, env: Env, api_key: str) -> None:
    result = gateway.request(
        "POST", "/v1/embeddings", json_body={"model": "gpt-test", "input": "x"}, key=api_key
    )
    assert result.status == 400, result.body
    assert result.error["param"] == "model"
    assert result.error["code"] == "unsupported_capability"
    assert env.fakes.requests("openai") == [] and env.usage_rows() == []


def test_bad_input_is_named(gateway: Gateway, env: Env, api_key: str, embed_model: str) -> None:
    for body, param in (({"model": embed_model, "input": []}, "input"), ({"input": "x"}, "model")):
        result = gateway.request("POST", "/v1/embeddings", json_body=body, key=api_key)
        assert result.status == 400, result.body
        assert result.error["param"] == param
    assert env.fakes.requests("openai") == []


def test_unknown_fields_reach_openai(
    gateway: Gateway, env: Env, api_key: str, embed_model: str
) -> None:
    result = gateway.request(
        "POST",
        "/v1/embeddings",
        json_body={"model": embed_model, "input": "x", "future_field": 1},
        key=api_key,
    )
    assert result.status == 200, result.body
    assert env.fakes.last("openai").json["future_field"] == 1


@pytest.fixture
def local_embed_model(
    env: Env, llama_server: Path, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A real worker serving SmolLM2 as an embeddings engine (mean pooling), and a
    `local-embed` model routed to it: what `make dev` answers offline."""
    worker = WorkerProcess(
        tmp_path / "worker",
        [{"id": "smollm2-embed", "capabilities": ["embeddings"],
          "engine": {"embeddings": True, "pooling": "mean", "parallel": 1}}],
        [model_file.parent],
        "--idle-ttl", "0",
        env={"SPINE_LLAMA_SERVER": str(llama_server)},
    )  # fmt: skip
    worker.start(wait_ready=True)
    monkeypatch.setenv("SPINE_WORKER_TOKEN", TOKEN)
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n",
            "models:\n"
            "  - id: local-embed\n"
            "    provider: llamacpp\n"
            "    model: smollm2-embed\n"
            f"    base_url: {worker.url}/v1\n"
            "    context_window: 2048\n"
            "    capabilities: [embeddings]\n"
            f"    engine: {{gguf: {{file: {MODEL_FILE}}}, embeddings: true, pooling: mean}}\n",
            1,
        )
    )
    try:
        yield "local-embed"
    finally:
        worker.stop()


@pytest.mark.worker
def test_the_local_model_embeds_through_the_gateway(
    local_embed_model: str, env: Env, api_key: str
) -> None:
    gateway = Gateway()
    try:
        result = gateway.request(
            "POST",
            "/v1/embeddings",
            json_body={"model": local_embed_model, "input": ["Paris", "London"]},
            key=api_key,
        )
    finally:
        gateway.close()
    assert result.status == 200, result.body
    data = result.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert len(data[0]["embedding"]) > 10 and data[0]["embedding"] != data[1]["embedding"]
    [row] = env.usage_rows()
    assert (row["endpoint"], row["provider"], row["status"]) == ("embeddings", "llamacpp", "ok")
    assert row["prompt_tokens"] > 0


GEMINI_EMBED = (
    "  - id: gemini-embed\n"
    "    provider: gemini\n"
    "    model: gemini-embedding-001\n"
    "    base_url: {url}\n"
    "    api_key: {{env: FAKE_GEMINI_KEY}}\n"
    "    pricing: {{input: 0.15}}\n"
    "    context_window: 2048\n"
    "    capabilities: [embeddings]\n"
)


def test_gemini_embeds_through_the_official_openai_client(
    emulator_url: str, api_key: str, env: Env
) -> None:
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n", "models:\n" + GEMINI_EMBED.format(url=env.fakes.gemini_url), 1
        )
    )
    with openai.OpenAI(base_url=f"{emulator_url}/v1", api_key=api_key, max_retries=0) as sdk:
        # base64 by default (the client decodes it), floats on request
        default = sdk.embeddings.create(model="gemini-embed", input=["one two", "three"])
        floats = sdk.embeddings.create(
            model="gemini-embed", input="four", encoding_format="float", dimensions=2
        )
    assert [d.embedding for d in default.data] == [[2.0, 7.0, 0.5], [1.0, 5.0, 0.5]]
    assert floats.data[0].embedding == [1.0, 4.0]
    sent = env.fakes.last("gemini")
    assert sent.path.endswith(":batchEmbedContents")
    assert sent.json["requests"][0]["outputDimensionality"] == 2
    rows = env.usage_rows()
    assert [r["endpoint"] for r in rows] == ["embeddings", "embeddings"]
    assert all(int(str(r["prompt_tokens"])) > 0 for r in rows)


def test_a_list_longer_than_the_models_batch_size_is_split_and_merged_in_order(
    env: Env, api_key: str
) -> None:
    env.write_models(
        env.models_path.read_text().replace(
            "models:\n",
            "models:\n"
            + EMBED_MODEL.format(url=env.fakes.openai_url)
            + "    embedding_batch_size: 3\n",
            1,
        )
    )
    inputs = [" ".join(["w"] * (i + 1)) for i in range(8)]  # 1 to 8 words
    gateway = Gateway()
    try:
        result = gateway.request(
            "POST",
            "/v1/embeddings",
            json_body={"model": "embed-test", "input": inputs, "encoding_format": "float"},
            key=api_key,
        )
    finally:
        gateway.close()
    assert result.status == 200, result.body
    sent = [r.json["input"] for r in env.fakes.requests("openai")]
    assert sorted(sent) == [inputs[0:3], inputs[3:6], inputs[6:8]]  # sent at once, any order
    answer = result.json()
    assert [d["index"] for d in answer["data"]] == list(range(8))
    # The fake's vector starts with each input's word count: the order is the input's.
    assert [d["embedding"][0] for d in answer["data"]] == [float(i + 1) for i in range(8)]
    assert answer["usage"]["prompt_tokens"] == sum(range(1, 9))
    [row] = env.usage_rows()
    assert (row["endpoint"], row["prompt_tokens"]) == ("embeddings", 36)
