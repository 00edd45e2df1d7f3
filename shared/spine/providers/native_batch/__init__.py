"""Providers' own batch APIs (OpenAI Batch, Anthropic Message Batches, Gemini batch
mode), behind one
interface: submit a file of translated requests, read the batch's status, stream its
results as OpenAI-shaped answers, cancel it.

Like the chat adapters, each provider's module imports its SDK at the top and is
itself imported only when a native batch of that provider is submitted or polled
(`batch_api`), so no function pays for an SDK it does not use.
"""

from __future__ import annotations

import importlib

from spine.providers.native_batch.base import (
    LineResult,
    NativeBatchApi,
    NotNative,
    ProviderBatch,
)
from spine.registry.schema import ProviderKind

__all__ = ["LineResult", "NativeBatchApi", "NotNative", "ProviderBatch", "batch_api"]

_MODULES = {
    ProviderKind.OPENAI: "spine.providers.native_batch.openai_batch",
    ProviderKind.ANTHROPIC: "spine.providers.native_batch.anthropic_batch",
    ProviderKind.GEMINI: "spine.providers.native_batch.gemini_batch",
}
_instances: dict[ProviderKind, NativeBatchApi] = {}


def batch_api(kind: ProviderKind | str) -> NativeBatchApi:
    """The batch API adapter of `kind` (KeyError: the provider has none)."""
    kind = ProviderKind(kind)
    api = _instances.get(kind)
    if api is None:
        module = importlib.import_module(_MODULES[kind])
        api = _instances[kind] = module.BatchApi()
    return api
