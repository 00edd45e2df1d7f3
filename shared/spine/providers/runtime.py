"""What every adapter needs around its SDK call: pooled clients and deadlines.

Clients are cached per event loop because an SDK's async HTTP pool is bound to the loop
that created it; a warm Lambda container keeps one loop (Mangum / the web adapter) and so
reuses connections across invocations, while tests with fresh loops get fresh clients.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from spine.providers.errors import upstream_timeout
from spine.registry.schema import Timeouts

ClientT = TypeVar("ClientT")
ItemT = TypeVar("ItemT")


class ClientCache(Generic[ClientT]):
    """One SDK client per (event loop, key); the key holds base_url, api_key, timeouts."""

    def __init__(
        self,
        factory: Callable[..., ClientT],
        closer: Callable[[ClientT], Awaitable[None]],
    ) -> None:
        self._factory = factory
        self._closer = closer
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, ClientT]
        ] = weakref.WeakKeyDictionary()

    def get(self, *key: Hashable) -> ClientT:
        clients = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(key)
        if client is None:
            client = clients[key] = self._factory(*key)
        return client

    async def discard(self, *key: Hashable) -> None:
        """Close this loop's client for `key`, with every connection it holds (a
        stream abandoned mid-way among them); the next call makes a new one."""
        client = self._by_loop.get(asyncio.get_running_loop(), {}).pop(key, None)
        if client is not None:
            await self._closer(client)

    async def aclose(self) -> None:
        """Close the clients of the running loop (other loops' pools die with them)."""
        clients = self._by_loop.pop(asyncio.get_running_loop(), {})
        for client in clients.values():
            await self._closer(client)

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_loop.values())


async def within_deadline(provider: str, seconds: float, call: Awaitable[ItemT]) -> ItemT:
    """Await `call`, failing with a 504 once `seconds` are spent.

    The SDKs' own timeouts are per socket operation (a server that trickles bytes never
    trips them); this bounds the whole call."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        raise upstream_timeout(provider, seconds) from None


async def guard_stream(
    provider: str, timeouts: Timeouts, source: AsyncIterator[ItemT]
) -> AsyncGenerator[ItemT, None]:
    """Re-yield `source` under two deadlines: `first_token` (falls back to `total`) for
    the first item, which includes connecting, and `total` for the whole stream."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeouts.total
    first_wait = timeouts.first_token or timeouts.total
    waiting_first = True
    try:
        while True:
            budget = deadline - loop.time()
            if waiting_first:
                budget = min(budget, first_wait)
            try:
                async with asyncio.timeout(max(budget, 0)):
                    item = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                limit = first_wait if waiting_first else timeouts.total
                raise upstream_timeout(provider, limit) from None
            waiting_first = False
            yield item
    finally:
        # Close the SDK stream so its HTTP response goes back to the pool (or is dropped).
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
