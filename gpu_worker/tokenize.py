"""POST /v1/tokenize: a request's prompt tokens, counted by the model's own llama-server.

The count is the one the engine will report as `prompt_tokens` for the same request,
because it takes the same two steps the engine takes on `/v1/chat/completions` and
`/v1/completions`:
- chat: `/apply-template` renders the messages (and tools) with the model's own chat
  template, generation prompt included, into one prompt string;
- `/tokenize` with `add_special: true` (BOS/EOS where the model's vocabulary adds them)
  and `parse_special: true` (template markers such as `<|im_start|>` are one token each),
  as the completion path tokenizes a prompt.

Both are answered on llama-server's HTTP threads without a decoding slot, so the request
takes no scheduler slot either: it borrows the engine (`ModelManager.borrow`), which
keeps it from being unloaded meanwhile without queueing behind generations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from gpu_worker.engine import Engine
from gpu_worker.proxy import Proxy, engine_error
from gpu_worker.supervisor import ManagedModel
from spine.errors import InvalidRequestError, UpstreamError

# Tokenizing is cheap (a long prompt takes milliseconds); a slow answer means trouble.
_ENGINE_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
_FIELDS = frozenset({"model", "messages", "prompt", "tools"})


@dataclass(frozen=True)
class TokenizeRequest:
    messages: list[dict[str, Any]] | None
    prompt: str | None
    tools: list[Any] | None


def parse_tokenize_body(body: dict[str, Any]) -> TokenizeRequest:
    """Check the body's shape; the engine checks the messages' contents."""
    for name in body:
        if name not in _FIELDS:
            raise InvalidRequestError(f"Unrecognized request argument: '{name}'", param=name)
    messages, prompt, tools = body.get("messages"), body.get("prompt"), body.get("tools")
    if (messages is None) == (prompt is None):
        raise InvalidRequestError(
            "Send either 'messages' (a chat request) or 'prompt' (text), not both or neither",
            param="messages",
        )
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidRequestError("'prompt' must be a string", param="prompt")
        if tools is not None:
            raise InvalidRequestError("'tools' needs 'messages', not 'prompt'", param="tools")
        return TokenizeRequest(messages=None, prompt=prompt, tools=None)
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestError(
                f"'messages[{index}]' must be an object with a string 'role'",
                param=f"messages[{index}]",
            )
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be an array", param="tools")
    return TokenizeRequest(messages=messages, prompt=None, tools=tools)


async def count_tokens(
    proxy: Proxy, model: ManagedModel, request: TokenizeRequest, actor: str
) -> int:
    """Prompt tokens of `request` as `model`'s engine counts them (loaded on demand)."""
    async with proxy.manager.borrow(model, actor) as engine:
        prompt = request.prompt
        if request.messages is not None:
            template: dict[str, Any] = {"messages": request.messages}
            if request.tools:
                template["tools"] = request.tools
            rendered = await _call(proxy, model, engine, "/apply-template", template)
            prompt = rendered.get("prompt")
            if not isinstance(prompt, str):
                raise UpstreamError("The engine rendered no prompt", provider="llamacpp")
        tokenized = await _call(
            proxy, model, engine, "/tokenize",
            {"content": prompt, "add_special": True, "parse_special": True},
        )  # fmt: skip
    tokens = tokenized.get("tokens")
    if not isinstance(tokens, list):
        raise UpstreamError("The engine returned no tokens", provider="llamacpp")
    return len(tokens)


async def _call(
    proxy: Proxy, model: ManagedModel, engine: Engine, path: str, payload: dict[str, Any]
) -> dict[str, Any]:
    try:
        response = await proxy.client.post(
            engine.base_url + path, json=payload, timeout=_ENGINE_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise await proxy.transport_error(model, engine, exc) from exc
    if response.status_code != 200:
        error = engine_error(response)
        if isinstance(error, InvalidRequestError) and error.param is None:
            # The engine refused what the caller sent: say which field.
            error.param = "messages" if path == "/apply-template" else "prompt"
        raise error
    try:
        data = response.json()
    except ValueError as exc:
        raise UpstreamError("The engine's answer is not JSON", provider="llamacpp") from exc
    if not isinstance(data, dict):
        raise UpstreamError("The engine's answer is not a JSON object", provider="llamacpp")
    return data
