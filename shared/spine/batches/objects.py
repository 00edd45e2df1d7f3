"""S3 objects written and read a piece at a time, so memory holds one piece whatever
an object's size: the finalizer's output files, an upload's parts assembled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from spine.aws.batch_objects import WRITE_PART_BYTES, ObjectStore


async def write_object(objects: ObjectStore, key: str, lines: AsyncIterator[bytes]) -> int:
    """`lines` as one S3 object, a part at a time; its size (0: nothing written)."""
    upload_id: str | None = None
    etags: list[str] = []
    buffer = bytearray()
    size = 0

    async def flush() -> None:
        nonlocal upload_id
        if upload_id is None:
            upload_id = await asyncio.to_thread(objects.start_multipart, key)
        number = len(etags) + 1
        etags.append(
            await asyncio.to_thread(objects.put_part, key, upload_id, number, bytes(buffer))
        )
        buffer.clear()

    try:
        async for line in lines:
            buffer += line
            size += len(line)
            if len(buffer) >= WRITE_PART_BYTES:
                await flush()
        if buffer:
            await flush()
        if upload_id is not None:
            await asyncio.to_thread(objects.complete_multipart, key, upload_id, etags)
    except BaseException:
        if upload_id is not None:
            await asyncio.to_thread(objects.abort_multipart, key, upload_id)
        raise
    return size


async def read_objects(objects: ObjectStore, keys: Iterable[str]) -> AsyncIterator[bytes]:
    """The objects' bytes one after another, a chunk at a time."""
    for key in keys:
        chunks = iter(await asyncio.to_thread(objects.chunks, key))
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk
