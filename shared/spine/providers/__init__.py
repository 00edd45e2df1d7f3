"""Provider adapters. Each SDK is imported only when a request needs it.

`get_provider(kind)` imports the adapter module for `kind` on first use (and with it
that provider's SDK), so a function serving only Gemini models never pays for
`openai`'s import time, and a deployment without the `anthropic` extra still serves
everything else.
"""

from __future__ import annotations

import importlib
import threading

from spine.providers.base import ChatProvider, Target
from spine.providers.errors import ProviderNotInstalledError
from spine.registry.schema import ProviderKind

__all__ = ["ChatProvider", "Target", "close_providers", "get_provider"]

# kind -> (module, class, the SDK's distribution/extra, its top-level import name)
_ADAPTERS: dict[ProviderKind, tuple[str, str, str, str]] = {
    ProviderKind.OPENAI: ("spine.providers.openai_provider", "OpenAIProvider", "openai", "openai"),
    ProviderKind.OPENAI_COMPATIBLE: (
        "spine.providers.openai_provider",
        "OpenAIProvider",
        "openai",
        "openai",
    ),
    ProviderKind.LLAMACPP: (
        "spine.providers.openai_provider",
        "OpenAIProvider",
        "openai",
        "openai",
    ),
    ProviderKind.GEMINI: ("spine.providers.gemini", "GeminiProvider", "google-genai", "google"),
    ProviderKind.ANTHROPIC: (
        "spine.providers.anthropic_provider",
        "AnthropicProvider",
        "spine[anthropic]",
        "anthropic",
    ),
}

_instances: dict[ProviderKind, ChatProvider] = {}
_lock = threading.Lock()


def get_provider(kind: ProviderKind | str) -> ChatProvider:
    """The adapter for `kind`, created once per process (it holds the pooled clients)."""
    kind = ProviderKind(kind)
    provider = _instances.get(kind)
    if provider is not None:
        return provider
    module_name, class_name, package, import_name = _ADAPTERS[kind]
    with _lock:
        if kind not in _instances:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name is None or exc.name.split(".")[0] != import_name:
                    raise
                raise ProviderNotInstalledError(
                    f"Models of provider '{kind}' need the '{package}' package, which this "
                    f"deployment lacks. Install it with: pip install '{package}'"
                ) from exc
            adapter = getattr(module, class_name)
            # One OpenAI adapter class serves three kinds; it needs to know which.
            _instances[kind] = adapter(kind) if class_name == "OpenAIProvider" else adapter()
        return _instances[kind]


async def close_providers() -> None:
    """Close the pooled clients of the running event loop (tests, shutdown)."""
    for provider in list(_instances.values()):
        await provider.aclose()
