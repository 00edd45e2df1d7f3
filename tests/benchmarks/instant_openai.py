"""A minimal OpenAI-compatible server that answers at once (benchmarks only).

Raw asyncio, one canned `chat.completion` (an embedding list on `/embeddings`): the
smallest possible upstream, so what the gateway adds is not hidden behind the fake's
own cost. A request with
`"stream": true` gets a chunked event stream instead, its first chunk flushed at once
(what time-to-first-chunk measures), then the rest, the usage chunk and `[DONE]`,
REST_AFTER_MS later (default 0: all at once). Any other answer leaves ANSWER_AFTER_MS
after its request came (default 0: at once; a hosted model's latency for benchmarks
of concurrency). A request whose `response_format`
names a capability's JSON Schema (bench_capabilities.py) gets a valid answer of that
shape instead of "ok".
Run as a process:
`python tests/benchmarks/instant_openai.py PORT [REST_AFTER_MS [ANSWER_AFTER_MS]]`.
"""

from __future__ import annotations

import asyncio
import json
import sys

BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()
EMBEDDING_BODY = json.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5, 0.75]}],
        "model": "gpt-bench",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
).encode()


def _json_response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


RESPONSE = _json_response(BODY)

# A valid answer per capability's JSON Schema name, for bench_capabilities.py.
_SHAPED = {
    "summarize": {"summary": "ok", "key_points": []},
    "extract": {"entities": [{"text": "hi", "type": "PERSON", "confidence": 0.9}]},
    "classify": {"classifications": [{"category": "a", "confidence": 0.9}]},
    "infer_title": {"title": "Hi"},
    "generate_commit": {"commit_message": "feat: ok", "feature_groups": [], "suggested_tags": []},
}
SHAPED_RESPONSES = {
    name.encode(): _json_response(
        BODY.replace(b'"content": "ok"', b'"content": ' + json.dumps(json.dumps(answer)).encode())
    )
    for name, answer in _SHAPED.items()
}


def _answer(body: bytes) -> bytes:
    if b'"response_format"' in body:
        name = json.loads(body)["response_format"]["json_schema"]["name"].encode()
        return SHAPED_RESPONSES.get(name, RESPONSE)
    return RESPONSE


EMBEDDING_RESPONSE = _json_response(EMBEDDING_BODY)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _events(*payloads: object) -> bytes:
    return b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


FIRST_EVENT = _events(_chunk({"role": "assistant", "content": ""}))
REST_EVENTS = (
    _events(
        _chunk({"content": "ok"}),
        _chunk({}, "stop"),
        {**_chunk({}), "choices": [], "usage": json.loads(BODY)["usage"]},
    )
    + b"data: [DONE]\n\n"
)


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    rest_after: float = 0.0,
    answer_after: float = 0.0,
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if b'"stream"' in body and json.loads(body).get("stream"):
                # The first chunk leaves before anything else is written.
                writer.write(STREAM_HEAD + _http_chunk(FIRST_EVENT))
                await writer.drain()
                if rest_after:
                    await asyncio.sleep(rest_after)
                writer.write(_http_chunk(REST_EVENTS) + b"0\r\n\r\n")
            else:
                if answer_after:
                    await asyncio.sleep(answer_after)
                embeddings = head.split(b" ", 2)[1].endswith(b"/embeddings")
                writer.write(EMBEDDING_RESPONSE if embeddings else _answer(body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main(port: int, rest_after_ms: float = 0.0, answer_after_ms: float = 0.0) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, rest_after_ms / 1000, answer_after_ms / 1000), "127.0.0.1", port
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), *(float(arg) for arg in sys.argv[2:4])))
