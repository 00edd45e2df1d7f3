"""The context window is refused before any provider call only on an exact count: an
estimate (bytes / 4) refused prompts that llama-server counted well inside the
window; for models without an offline tokenizer the provider's own 400 decides."""

from __future__ import annotations

import pytest

from spine.errors import ContextWindowExceededError
from spine.pipeline.params import check_chat_request, check_completion_request
from spine.providers import get_provider
from spine.registry.resolve import ResolvedModel
from spine.registry.schema import ModelEntry
from spine.schemas.openai import ChatCompletionRequest, CompletionRequest


def resolved(provider: str, window: int) -> ResolvedModel:
    extra: dict[str, object] = {}
    if provider == "llamacpp":
        extra = {"engine": {"gguf": {"file": "x.gguf"}}}
    entry = ModelEntry(
        id="m", provider=provider, model="gpt-4o-mini", context_window=window, **extra
    )
    return ResolvedModel(requested="m", entry=entry)


def chat(text: str, max_tokens: int | None = None) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="m", messages=[{"role": "user", "content": text}], max_tokens=max_tokens
    )


@pytest.mark.parametrize("provider", ["llamacpp", "gemini", "anthropic"])
def test_an_estimate_never_refuses(provider: str) -> None:
    # 40,000 bytes are 10,000 tokens at bytes / 4, far past a 4,096 window; a model
    # without an offline tokenizer is asked anyway (its own check is the word)
    model = resolved(provider, 4096)
    check_chat_request(chat("x" * 40_000), model, get_provider(model.entry.provider))


def test_an_exact_count_refuses_with_the_real_numbers() -> None:
    model = resolved("openai", 4096)
    # 5,000 words are 5,000 o200k tokens, plus OpenAI's message framing
    with pytest.raises(ContextWindowExceededError) as caught:
        check_chat_request(
            chat("word " * 5000, max_tokens=10), model, get_provider(model.entry.provider)
        )
    message = caught.value.message
    assert "maximum context length is 4096 tokens" in message
    assert "resulted in 50" in message  # 5,00x: the exact count, not an estimate
    assert "at least" not in message


def test_an_exact_count_lets_through_what_fits() -> None:
    # 40,000 x's are 10,000 tokens at bytes / 4 but a few thousand to the BPE
    openai = get_provider(resolved("openai", 8000).entry.provider)
    check_chat_request(chat("x" * 40_000), resolved("openai", 8000), openai)
    check_completion_request(
        CompletionRequest(model="m", prompt="word " * 3000), resolved("openai", 4096), openai
    )
