"""Spine: a serverless, OpenAI-compatible gateway to many language models.

Layers, arrows pointing down only:
    functions/* (entry) -> spine.api (FastAPI apps, HTTP mapping)
    -> spine logic (chat, ...) -> adapters (providers, storage, aws)
    -> models (schemas, registry, errors).
"""

__version__ = "0.1.0"
