"""Stream coalescing: the first item alone and at once, then batches closed by a timer or a size cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from ragserve.generator.coalesce import coalesce

T = TypeVar("T")


async def ticking(n: int, every_s: float, log: list[str] | None = None) -> AsyncIterator[int]:
    try:
        for i in range(n):
            await asyncio.sleep(every_s)
            yield i
    finally:
        if log is not None:
            log.append("closed")  # what VLLMGenerator.generate does here: abort the engine request


async def collect(items: AsyncIterator[list[T]]) -> list[list[T]]:
    return [batch async for batch in items]


async def released(queue: asyncio.Queue[T | None]) -> AsyncIterator[T]:
    """Items as the test releases them (None ends the stream): no sleeps, no timing in the assertions."""
    while (item := await queue.get()) is not None:
        yield item


def test_first_alone_then_a_batch_closed_by_the_timer_not_by_the_next_arrival() -> None:
    async def scenario() -> list[list[int]]:
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        stream = coalesce(released(queue), 0.02, 100)
        got = []
        queue.put_nowait(0)
        got.append(await asyncio.wait_for(anext(stream), 5))  # hangs if the first waited for company
        for i in (1, 2):
            queue.put_nowait(i)
        got.append(await asyncio.wait_for(anext(stream), 5))  # hangs if only item 3 could close the batch
        queue.put_nowait(3)
        queue.put_nowait(None)
        got += await collect(stream)
        return got

    assert asyncio.run(scenario()) == [[0], [1, 2], [3]]


def test_items_that_do_not_open_the_stream_go_alone_until_one_does() -> None:
    """A first token with no text yet (part of a character) must not start the interval: the text after it
    would wait for the timer."""

    async def scenario() -> list[list[str]]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        stream = coalesce(released(queue), 10.0, 100, opens=bool)
        got = []
        for item in ("", "", "a"):  # each hangs (10 s interval) if it waited for company
            queue.put_nowait(item)
            got.append(await asyncio.wait_for(anext(stream), 5))
        for item in ("b", "", "c", None):
            queue.put_nowait(item)
        got += await collect(stream)
        return got

    assert asyncio.run(scenario()) == [[""], [""], ["a"], ["b", "", "c"]]


def test_size_cap_and_zero_interval() -> None:
    capped = asyncio.run(collect(coalesce(ticking(10, 0.0), 10.0, 4)))
    assert capped == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]  # the cap closes batches, the end the last
    each = asyncio.run(collect(coalesce(ticking(5, 0.0), 0.0, 4)))
    assert each == [[0], [1], [2], [3], [4]]


def test_closing_early_closes_the_source() -> None:
    log: list[str] = []

    async def first_then_leave() -> list[int]:
        stream = coalesce(ticking(100, 0.01, log), 0.05, 100)
        first = await anext(stream)
        await stream.aclose()  # the client disconnected
        return first

    assert asyncio.run(first_then_leave()) == [0]
    assert log == ["closed"]
