"""`POST /v1/messages/count_tokens`: a Messages request's input tokens, as Anthropic's
endpoint answers them (`{"input_tokens": N}`).

Claude models are counted by Anthropic (its tokenizer is not public; the count is
free there). llama.cpp models are counted by the worker's own tokenizer, OpenAI
models by their BPE, offline; the others get Spine's calibrated estimate
(`spine.pipeline.tokens`). The `x-spine-token-count` header says which: "exact" or
"estimate", so a client never takes an estimate for a count.
"""

from __future__ import annotations

from dataclasses import dataclass

from spine.messages.to_chat import to_chat_request
from spine.pipeline.targets import target_for
from spine.pipeline.worker_tokens import count_prompt_tokens
from spine.providers import get_provider
from spine.registry.resolve import Registry
from spine.schemas.anthropic import CountTokensRequest, MessagesRequest
from spine.settings import Settings


@dataclass(frozen=True)
class InputTokens:
    tokens: int
    exact: bool


async def count_input_tokens(
    request: CountTokensRequest, registry: Registry, settings: Settings
) -> InputTokens:
    resolved = registry.resolve(request.model)
    entry = resolved.entry
    provider = get_provider(entry.provider)
    body = request.model_dump(mode="json", exclude_unset=True)
    if provider.speaks_anthropic:
        target = target_for(entry, settings)
        tokens = await provider.count_message_tokens(target, {**body, "model": target.model})
        return InputTokens(tokens, exact=True)
    # The chat request the model would be sent (a max_tokens is needed to build one,
    # and plays no part in the count).
    chat, _ = to_chat_request(MessagesRequest.model_validate({**body, "max_tokens": 1}))
    count = await count_prompt_tokens(entry, settings, messages=chat.messages, tools=chat.tools)
    return InputTokens(count.tokens, exact=count.exact)
