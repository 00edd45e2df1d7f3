"""Offline prompt token counts: exact for OpenAI, ranges elsewhere."""

from __future__ import annotations

import pytest

from spine.pipeline.tokens import CL100K, O200K, count_prompt, encoding_for
from spine.registry.schema import ModelEntry, ProviderKind
from spine.schemas.openai import ChatMessage


def entry(provider: str, model: str = "m") -> ModelEntry:
    extra: dict[str, object] = {}
    if provider == "openai_compatible":
        extra = {"base_url": "http://127.0.0.1:1/v1"}
    if provider == "llamacpp":
        extra = {"engine": {"gguf": {"file": "x.gguf"}}}
    return ModelEntry(id="x", provider=provider, model=model, context_window=8000, **extra)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", O200K),
        ("gpt-5.4-nano", O200K),
        ("o3-mini", O200K),
        ("gpt-4.1", O200K),
        ("gpt-4-turbo", CL100K),
        ("gpt-3.5-turbo", CL100K),
        ("some-future-model", O200K),
    ],
)
def test_openai_encoding_by_model_name(model: str, encoding: str) -> None:
    assert encoding_for(entry("openai", model)) == encoding


def test_other_providers_have_no_public_encoding() -> None:
    assert encoding_for(entry("gemini")) is None
    assert encoding_for(entry("anthropic")) is None


def test_openai_counts_are_tiktoken_identical() -> None:
    # Reference counts from tiktoken's o200k_base and cl100k_base.
    gpt4o = entry("openai", "gpt-4o")
    assert count_prompt(gpt4o, prompt="hello world").tokens == 2
    assert count_prompt(gpt4o, prompt="日本語のテキスト").tokens == 6
    gpt4 = entry("openai", "gpt-4")
    assert count_prompt(gpt4, prompt="hello world").tokens == 2
    assert count_prompt(gpt4, prompt="日本語のテキスト").tokens == 8
    # Chat framing: 3 per message, 1 per name, 3 to prime the reply
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="hello world", name="ann"),
    ]
    count = count_prompt(gpt4o, messages=messages)
    # system 1 + "Be brief." 3 + user 1 + "hello world" 2 + "ann" 1 = 8 text tokens
    assert count.tokens == 8 + 3 + 3 + 1 + 3
    assert (count.low, count.high, count.exact) == (count.tokens, count.tokens, True)


@pytest.mark.parametrize(
    "provider", [p.value for p in ProviderKind if p is not ProviderKind.OPENAI]
)
def test_other_providers_get_a_range_around_the_estimate(provider: str) -> None:
    count = count_prompt(
        entry(provider), prompt="The quick brown fox jumps over the lazy dog. " * 50
    )
    assert not count.exact
    assert count.low < count.tokens < count.high
    assert count.method.startswith("o200k_base x ")


def test_without_a_tokenizer_bytes_over_four_with_wider_bars() -> None:
    text = "a" * 400
    count = count_prompt(entry("openai", "gpt-4o"), prompt=text, use_tokenizer=False)
    assert count.method == "utf8_bytes / 4"
    assert count.tokens == 100
    assert (count.low, count.high) == (65, 135)
    assert not count.exact


def test_low_detail_openai_image_is_a_flat_85() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}}
    message = ChatMessage.model_validate({"role": "user", "content": [image]})
    count = count_prompt(entry("openai", "gpt-4o"), messages=[message])
    assert count.low == count.high == count.tokens == 1 + 3 + 3 + 85
    assert not count.exact  # images are counted by rule, not by the tokenizer
