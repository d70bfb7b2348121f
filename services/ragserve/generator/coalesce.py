"""Coalescing a stream: the first item at once, then whatever arrives within an interval as one batch.

Each item a Serve deployment yields crosses the handle as its own Ray object (serialised, put, fetched), so
a generator that yields per token pays that per token. Batching amortises it; yielding the first item alone
keeps time-to-first-token unchanged, and a timer (not the next arrival) closes a batch, so a slow token
never holds the ones before it for longer than the interval.

"First" is the first item that carries something for the reader (``opens``): a token that decodes to no
text yet (part of a multi-byte character) does not open the stream, so the text after it is not held back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def coalesce(
    items: AsyncIterator[T],
    interval_s: float,
    max_items: int,
    opens: Callable[[T], bool] = lambda item: True,
) -> AsyncIterator[list[T]]:
    """Yield ``[item]`` as soon as it arrives, up to and including the first item for which ``opens`` is
    true; then lists of what arrives within ``interval_s`` of the first item of each list (at most
    ``max_items`` each). ``interval_s == 0`` yields every item on its own.

    Closing this generator (the consumer went away) cancels the pending read, so the source's own
    cleanup (an engine abort) runs."""
    source = aiter(items)
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[Any] | None = None
    batch: list[T] = []
    deadline = 0.0
    first = True
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            timeout = max(0.0, deadline - loop.time()) if batch else None
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:  # the interval is over: send what has arrived, keep the read pending
                yield batch
                batch = []
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                break
            if first or interval_s <= 0:
                first = not opens(item)
                yield [item]
                continue
            if not batch:
                deadline = loop.time() + interval_s
            batch.append(item)
            if len(batch) >= max_items:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:  # a source suspended between items runs its cleanup now
            await aclose()
