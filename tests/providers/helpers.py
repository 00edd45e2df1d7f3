"""Building targets and requests for the adapter tests."""

from __future__ import annotations

from typing import Any

from spine.providers import Target
from spine.registry.schema import ModelEntry, ProviderKind, Timeouts
from spine.schemas.openai import ChatCompletionRequest
from tests.fakes import FakeProviders

# Which fake speaks for each provider kind.
FAKE_FOR = {
    ProviderKind.OPENAI: "openai",
    ProviderKind.OPENAI_COMPATIBLE: "openai",
    ProviderKind.LLAMACPP: "openai",
    ProviderKind.GEMINI: "gemini",
    ProviderKind.ANTHROPIC: "anthropic",
}

UPSTREAM_MODEL = {
    ProviderKind.OPENAI: "gpt-4o-mini",
    ProviderKind.OPENAI_COMPATIBLE: "qwen2.5-7b",
    ProviderKind.LLAMACPP: "smollm2-135m",
    ProviderKind.GEMINI: "gemini-2.5-flash",
    ProviderKind.ANTHROPIC: "claude-haiku-4-5",
}


def make_target(
    kind: ProviderKind,
    fakes: FakeProviders,
    *,
    api_key: str | None = "upstream-key",
    timeouts: Timeouts | None = None,
    max_output_tokens: int | None = None,
    base_url: str | None = "",
) -> Target:
    """A target pointing at the fake server; `base_url=""` means "the fake's URL"."""
    fields: dict[str, Any] = {
        "id": f"spine-{kind.value}",
        "provider": kind.value,
        "model": UPSTREAM_MODEL[kind],
        "context_window": 100_000,
        "max_output_tokens": max_output_tokens,
    }
    if kind is ProviderKind.LLAMACPP:
        fields["engine"] = {"gguf": {"file": "model.gguf"}}
    if kind is ProviderKind.OPENAI_COMPATIBLE:
        fields["base_url"] = fakes.openai_url
    entry = ModelEntry.model_validate(fields)
    return Target(
        entry=entry,
        provider=kind,
        model=entry.model,
        base_url=fakes.url_for(FAKE_FOR[kind]) if base_url == "" else base_url,
        api_key=api_key,
        timeouts=timeouts or Timeouts(connect=2, total=10),
    )


def chat(*messages: dict[str, Any], **fields: Any) -> ChatCompletionRequest:
    if not messages:
        messages = ({"role": "user", "content": "hello there"},)
    return ChatCompletionRequest.model_validate(
        {"model": "client-facing-name", "messages": list(messages), **fields}
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}
