"""The capabilities function (POST /v1/summarize, /v1/extract, ...) through its real
Lambda handler, real API Gateway events, a real Postgres and the provider SDKs
against wire fakes that answer well, badly and not at all."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import Fail, Reply, gemini_api, openai_api
from tests.integration.conftest import Env
from tests.integration.gateway import Gateway, Result

ARTICLE = (
    "Ada Lovelace met Charles Babbage in London in 1833. Babbage showed her his "
    "Difference Engine. Lovelace later wrote the first published algorithm."
)


@pytest.fixture
def alice(env: Env) -> str:
    return env.create_key("alice", principal="alice", tenant="acme", scopes=["prompts:write"])


@pytest.fixture
def admin(env: Env) -> str:
    return env.create_key("root", principal="root", scopes=["admin"])


def answers(env: Env, *bodies: dict[str, Any] | str, provider: str = "openai") -> None:
    """Queue the model's answers: a dict is sent as its JSON, a str as is."""
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        if provider == "gemini":
            env.fakes.script("gemini", Reply(gemini_api.response(text)))
        else:
            env.fakes.script("openai", Reply(openai_api.chat_completion(text)))


def call(gateway: Gateway, key: str, path: str, **body: Any) -> Result:
    return gateway.request("POST", path, json_body=body, key=key)


def ok(result: Result) -> dict[str, Any]:
    assert result.status == 200, result.body
    data: dict[str, Any] = result.json()
    return data


def sent_messages(env: Env, provider: str = "openai") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = env.fakes.last(provider).json["messages"]
    return messages


# --- summarize ------------------------------------------------------------------------


def test_summarize_runs_the_seeded_prompt_with_a_json_schema(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given a model that answers with a summary
    answers(env, {"summary": "Lovelace met Babbage and wrote an algorithm.", "key_points": ["a"]})
    # When a summary is asked for
    body = ok(call(gateway, alice, "/v1/summarize", content=ARTICLE, max_sentences=2))
    # Then the answer has GenAI Spine's shape, with counts computed by Spine
    assert body["summary"] == "Lovelace met Babbage and wrote an algorithm."
    assert body["key_points"] == ["a"]
    assert body["word_count"] == 7
    assert body["compression_ratio"] == round(7 / len(ARTICLE.split()), 4)
    usage = body["usage"]
    assert usage["prompt"] == "summarize" and usage["prompt_version"] == 1
    assert usage["prompt_is_system"] is True and usage["repaired"] is False
    assert usage["model"] == "gpt-test" and usage["total_tokens"] == 12
    # And the provider got the seeded instructions, the rendered request, and the
    # answer's JSON Schema as response_format (the model has json_schema)
    sent = env.fakes.last("openai").json
    assert "You summarize text faithfully" in sent["messages"][0]["content"]
    assert "at most 2 sentences" in sent["messages"][-1]["content"]
    assert ARTICLE in sent["messages"][-1]["content"]
    assert sent["response_format"]["type"] == "json_schema"
    assert set(sent["response_format"]["json_schema"]["schema"]["properties"]) == {
        "summary",
        "key_points",
    }


def test_a_model_without_json_schema_gets_the_schema_in_its_instructions(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given a Gemini model without the json_schema capability, answering in a fence
    answers(env, '```json\n{"title": "Lovelace and Babbage"}\n```', provider="gemini")
    # When a title is asked of it
    body = ok(call(gateway, alice, "/v1/infer-title", content=ARTICLE, model="gemini-test"))
    # Then the fenced JSON is read, and the schema travelled in the instructions
    assert body["title"] == "Lovelace and Babbage"
    sent = env.fakes.last("gemini").json
    assert "JSON Schema" in json.dumps(sent["systemInstruction"])
    assert "responseSchema" not in json.dumps(sent.get("generationConfig", {}))


def test_a_fallback_without_json_schema_serves_with_the_schema_in_its_instructions(
    env: Env, alice: str
) -> None:
    # Given a model with JSON Schema output that fails, and a fallback without it
    env.write_models(
        env.models_path.read_text().replace(
            "    aliases: [gpt-alias]\n", "    aliases: [gpt-alias]\n    fallbacks: [gemini-test]\n"
        )
    )
    env.fakes.script("openai", Fail(500), Fail(500), Fail(500))
    answers(env, '{"title": "Lovelace and Babbage"}', provider="gemini")
    gateway = Gateway()
    try:
        # When a title is asked of the first
        result = call(gateway, alice, "/v1/infer-title", content=ARTICLE, model="gpt-test")
    finally:
        gateway.close()
    # Then the fallback answered, the schema in its instructions, not as a format
    assert ok(result)["title"] == "Lovelace and Babbage"
    assert "response_format" in env.fakes.requests("openai")[0].json
    sent = env.fakes.last("gemini").json
    assert "JSON Schema" in json.dumps(sent["systemInstruction"])
    assert "responseSchema" not in json.dumps(sent.get("generationConfig", {}))


def test_the_usage_row_names_the_capability_and_the_prompt_version(
    env: Env, gateway: Gateway, alice: str
) -> None:
    answers(env, {"summary": "Short.", "key_points": []})
    result = call(gateway, alice, "/v1/summarize", content=ARTICLE)
    ok(result)
    [row] = env.usage_rows()
    assert row["endpoint"] == "capability.summarize"
    assert str(row["prompt_version_id"]) == result.headers["x-spine-prompt-version-id"]
    assert row["tenant"] == "acme" and row["principal"] == "alice"


# --- extract: offsets are Spine's -----------------------------------------------------


def test_extract_locates_entities_and_drops_what_is_not_in_the_content(
    env: Env, gateway: Gateway, alice: str
) -> None:
    # Given a model that names entities, one misspelt in case, one made up, one of a
    # type not asked for, and one mentioned twice
    answers(
        env,
        {
            "entities": [
                {"text": "Babbage", "type": "PERSON", "confidence": 0.9},
                {"text": "london", "type": "LOCATION", "confidence": 0.8},
                {"text": "Paris", "type": "LOCATION", "confidence": 0.7},
                {"text": "1833", "type": "DATE", "confidence": 0.9},
                {"text": "Babbage", "type": "PERSON", "confidence": 0.9},
                {"text": "Ada Lovelace", "type": "PERSON", "confidence": 0.95},
            ]
        },
    )
    # When entities are extracted (dates not asked for)
    body = ok(
        call(
            gateway,
            alice,
            "/v1/extract",
            content=ARTICLE,
            entity_types=["PERSON", "LOCATION"],
            include_context=True,
        )
    )
    # Then every offset points at the entity's text in the content
    for entity in body["entities"]:
        assert ARTICLE[entity["start"] : entity["end"]] == entity["text"]
        assert entity["text"] in entity["context"]
    found = [(e["text"], e["start"]) for e in body["entities"]]
    assert found == [
        ("Ada Lovelace", 0),
        ("Charles Babbage"[8:], ARTICLE.index("Babbage")),
        ("London", ARTICLE.index("London")),
        ("Babbage", ARTICLE.index("Babbage", ARTICLE.index("Babbage") + 1)),
    ]
    assert body["entity_count"] == 4
    # And what could not be placed is said, not silently lost
    assert {(d["text"], d["reason"]) for d in body["dropped_entities"]} == {
        ("Paris", "not found in content"),
        ("1833", "type not requested"),
    }


# --- classify: only the given categories ----------------------------------------------


def test_classify_answers_with_the_given_categories(env: Env, gateway: Gateway, alice: str) -> None:
    answers(
        env,
        {
            "classifications": [
                {"category": "history", "confidence": 0.3},
                {"category": "computing", "confidence": 0.9},
            ]
        },
    )
    body = ok(
        call(
            gateway,
            alice,
            "/v1/classify",
            content=ARTICLE,
            categories=["computing", "history", "sport"],
            multi_label=True,
        )
    )
    assert body["primary_category"] == "computing"
    assert body["classifications"] == [
        {"category": "computing", "confidence": 0.9},
        {"category": "history", "confidence": 0.3},
    ]


def test_a_category_not_given_is_repaired_once(env: Env, gateway: Gateway, alice: str) -> None:
    # Given a model that first invents a category, then corrects itself
    invented = {"classifications": [{"category": "science", "confidence": 0.8}]}
    fixed = {"classifications": [{"category": "history", "confidence": 0.7}]}
    answers(env, invented, fixed)
    # When it classifies into single label
    body = ok(
        call(gateway, alice, "/v1/classify", content=ARTICLE, categories=["history", "sport"])
    )
    # Then the repaired answer is used, and the repair told the model what was wrong
    assert body["primary_category"] == "history"
    assert body["usage"]["repaired"] is True and body["usage"]["total_tokens"] == 24
    repair = sent_messages(env)
    assert repair[-2] == {"role": "assistant", "content": json.dumps(invented)}
    assert "'science' is not one of the given categories" in repair[-1]["content"]
    # And both calls are in the ledger, each its own row
    rows = env.usage_rows()
    assert [r["endpoint"] for r in rows] == ["capability.classify"] * 2
    assert rows[1]["request_id"] == rows[0]["request_id"] + ".repair"


def test_the_response_cache_never_keeps_an_invalid_answer(env: Env, alice: str) -> None:
    # Given a model whose answers are cached, and which first invents a category
    env.write_models(
        env.models_path.read_text().replace(
            "    defaults: {temperature: 0.5}\n",
            "    defaults: {temperature: 0}\n    cache_ttl: 600\n",
        )
    )
    invented = {"classifications": [{"category": "science", "confidence": 0.8}]}
    fixed = {"classifications": [{"category": "history", "confidence": 0.7}]}
    answers(env, invented, fixed, fixed)
    gateway = Gateway()
    try:
        request = {"model": "gpt-test", "content": ARTICLE, "categories": ["history", "sport"]}
        first = ok(call(gateway, alice, "/v1/classify", **request))
        # When the same request comes again
        again = ok(call(gateway, alice, "/v1/classify", **request))
    finally:
        gateway.close()
    # Then the invented answer was not kept: the model is asked again, no repair needed
    assert first["usage"]["repaired"] is True
    assert again["usage"]["repaired"] is False
    assert again["primary_category"] == "history"
    assert len(env.fakes.requests("openai")) == 3


def test_an_answer_still_invalid_after_the_repair_is_a_502_naming_it(
    env: Env, gateway: Gateway, alice: str
) -> None:
    answers(env, "not json at all", '{"classifications": [{"category": "sport"}]}')
    result = call(gateway, alice, "/v1/classify", content=ARTICLE, categories=["a", "b"])
    assert result.status == 502, result.body
    error = result.error
    assert error["code"] == "invalid_model_output"
    assert "classifications.0.confidence" in error["message"]


def test_a_refusal_is_an_invalid_answer(env: Env, gateway: Gateway, alice: str) -> None:
    refusal = openai_api.chat_completion(None, refusal="I can't help with that.")
    env.fakes.script("openai", Reply(refusal), Reply(refusal))
    result = call(gateway, alice, "/v1/summarize", content=ARTICLE)
    assert result.status == 502
    assert "refused: I can't help with that." in result.error["message"]


# --- rewrite and translate: code blocks come back byte for byte -----------------------

CODE = "```python\ndef f(x):\n    return  x*2   # odd spacing kept\n```"
NOTE = f"so this is teh code:\n\n{CODE}\n\nit doubles stuff"


def test_rewrite_keeps_code_blocks_byte_identical(env: Env, gateway: Gateway, alice: str) -> None:
    # Given a model that rewrites the prose and keeps the placeholder
    answers(env, "This is the code:\n\n[[CODE_BLOCK_0]]\n\nIt doubles its input.")
    body = ok(call(gateway, alice, "/v1/rewrite", content=NOTE, mode="professional"))
    # Then the block is back exactly, and the model never saw it
    assert body["rewritten"] == f"This is the code:\n\n{CODE}\n\nIt doubles its input."
    assert body["original"] == NOTE and body["mode"] == "professional"
    assert body["code_blocks_preserved"] == 1
    assert "return  x*2" not in sent_messages(env)[-1]["content"]
    assert body["usage"]["prompt"] == "rewrite-professional"


def test_a_mangled_placeholder_is_repaired_then_a_502(
    env: Env, gateway: Gateway, alice: str
) -> None:
    answers(env, "This is the code: [CODE BLOCK 0]", "Still no placeholder.")
    result = call(gateway, alice, "/v1/rewrite", content=NOTE, mode="clean")
    assert result.status == 502
    assert "placeholder [[CODE_BLOCK_0]] is missing" in result.error["message"]
    assert "[[CODE_BLOCK_0]] is missing" in sent_messages(env)[-1]["content"]


def test_translate_restores_code_blocks(env: Env, gateway: Gateway, alice: str) -> None:
    answers(env, "voici le code :\n\n[[CODE_BLOCK_0]]\n\nil double")
    body = ok(call(gateway, alice, "/v1/translate", content=NOTE, target_language="French"))
    assert body["translated_text"] == f"voici le code :\n\n{CODE}\n\nil double"
    assert body["target_language"] == "French" and body["source_language"] is None


# --- infer-title and generate-commit --------------------------------------------------


def test_a_title_too_long_is_repaired(env: Env, gateway: Gateway, alice: str) -> None:
    answers(env, {"title": "one two three four five six"}, {"title": '"Lovelace meets Babbage."'})
    body = ok(call(gateway, alice, "/v1/infer-title", content=ARTICLE, max_words=3))
    assert body["title"] == "Lovelace meets Babbage"
    assert "at most 3" in sent_messages(env)[-1]["content"]


FILES = [
    {"path": "src/app.py", "status": "modified", "diff": "-x = 1\n+x = 2"},
    {"path": "README.md", "status": "added", "diff": "+# App"},
]


def test_generate_commit(env: Env, gateway: Gateway, alice: str) -> None:
    answers(
        env,
        {
            "commit_message": "feat(app): bump x\n\nAlso add a README.",
            "feature_groups": [
                {"scope": "app", "description": "bump x", "files": ["src/app.py"]},
                {"scope": "docs", "description": "readme", "files": ["README.md"]},
            ],
            "suggested_tags": ["feature"],
        },
    )
    body = ok(call(gateway, alice, "/v1/generate-commit", files=FILES, chat_context=["bump it"]))
    assert body["commit_message"].startswith("feat(app): bump x")
    assert body["files_analyzed"] == 2 and body["suggested_tags"] == ["feature"]
    assert body["feature_groups"][0] == {
        "scope": "app",
        "description": "bump x",
        "files": ["src/app.py"],
    }
    assert "+x = 2" in sent_messages(env)[-1]["content"]


def test_a_commit_message_that_is_not_conventional_or_names_other_files_is_invalid(
    env: Env, gateway: Gateway, alice: str
) -> None:
    plain = {"commit_message": "Bump x", "feature_groups": [], "suggested_tags": []}
    stranger = {
        "commit_message": "fix: bump x",
        "feature_groups": [{"scope": "x", "description": "d", "files": ["other.py"]}],
        "suggested_tags": [],
    }
    answers(env, plain, stranger)
    result = call(gateway, alice, "/v1/generate-commit", files=FILES)
    assert result.status == 502
    assert "names a file not changed: other.py" in result.error["message"]
    assert "not a conventional commit" in sent_messages(env)[-1]["content"]


# --- bad input: 400 naming the field, no provider call --------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/summarize", {"content": ""}, "content"),
        ("/v1/summarize", {"content": "   \n"}, "content"),
        ("/v1/summarize", {"content": "x" * 50_001}, "content"),
        ("/v1/summarize", {"content": "x", "max_sentences": 11}, "max_sentences"),
        ("/v1/summarize", {"content": "x", "output_format": "poem"}, "output_format"),
        ("/v1/rewrite", {"content": "x", "mode": "pirate"}, "mode"),
        ("/v1/classify", {"content": "x", "categories": []}, "categories"),
        ("/v1/classify", {"content": "x", "categories": ["a", "a"]}, "categories"),
        ("/v1/extract", {"content": "x", "entity_types": ["person"]}, "entity_types[0]"),
        ("/v1/infer-title", {"content": "x", "max_words": 2}, "max_words"),
        ("/v1/generate-commit", {"files": []}, "files"),
        ("/v1/generate-commit", {"files": FILES, "max_length": 99}, "max_length"),
        ("/v1/translate", {"content": "x"}, "target_language"),
        ("/v1/summarize", {"content": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    env: Env, gateway: Gateway, alice: str, path: str, body: dict[str, Any], param: str
) -> None:
    result = gateway.request("POST", path, json_body=body, key=alice)
    assert result.status == 400, result.body
    assert result.error["param"] == param
    assert result.error["type"] == "invalid_request_error"
    assert env.fakes.requests() == []


def test_an_unknown_model_is_a_404(env: Env, gateway: Gateway, alice: str) -> None:
    result = call(gateway, alice, "/v1/summarize", content="x", model="no-such-model")
    assert result.status == 404
    assert result.error["code"] == "model_not_found"


def test_no_key_is_a_401(gateway: Gateway, env: Env) -> None:
    assert gateway.request("POST", "/v1/summarize", json_body={"content": "x"}).status == 401
