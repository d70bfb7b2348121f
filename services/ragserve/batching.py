"""Dynamic batching inside a replica: the calls that reach a model while it is busy run as its next pass.

The Embedder and Reranker use this in place of ``@serve.batch``, which runs every call, a lone one too,
through a queue, a batching task and a timed ``wait_for`` (even at a 0-s wait), and binds each call's
signature. Here a call that finds the model idle runs at once in the caller's own task, as a plain method
would; only calls that arrive while a batch runs are queued, and they run together as the next batch.
Measured: load-tests/RESULTS.md, "A lone query as a plain call".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Runs ``handler`` on the items of concurrent ``submit`` calls, at most ``max_size`` at a time.

    One batch runs at a time. A call that finds none running and nothing queued runs alone at once, unless
    ``wait_s`` > 0: then every batch waits up to that long to fill to ``max_size`` first. ``handler``
    returns one result per item, in order. An exception fails every item of its batch and no other. A
    queued caller that goes away (cancelled) is left out of its batch, or its result is dropped.
    """

    def __init__(
        self,
        handler: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        max_size: int,
        wait_s: float = 0.0,
    ):
        if max_size < 1 or wait_s < 0:
            raise ValueError(f"max_size must be >= 1 and wait_s >= 0 (got {max_size}, {wait_s})")
        self.handler = handler
        self.max_size = max_size
        self.wait_s = wait_s
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._arrived = asyncio.Event()  # a submit while a batch fills (wait_s > 0)
        self._busy = False  # a batch is running (or its runner task is about to)
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        if not self._busy and not self._queue and self.wait_s == 0:
            self._busy = True
            try:
                return (await self._call([item]))[0]
            finally:
                self._busy = False
                self._start_runner()  # the calls that came meanwhile
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._arrived.set()
        self._start_runner()
        return await future

    async def _call(self, items: list[Item]) -> Sequence[Result]:
        results = await self.handler(items)
        if len(results) != len(items):
            raise RuntimeError(f"the handler returned {len(results)} results for {len(items)} items")
        return results

    def _start_runner(self) -> None:
        if self._queue and not self._busy:
            self._busy = True
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue:
                if self.wait_s > 0:
                    await self._fill()
                batch = [self._queue.popleft() for _ in range(min(self.max_size, len(self._queue)))]
                batch = [(item, future) for item, future in batch if not future.done()]
                if batch:
                    await self._run_batch(batch)
        except asyncio.CancelledError:  # the replica is stopping: so are the calls still queued
            while self._queue:
                self._queue.popleft()[1].cancel()
            raise
        finally:
            self._busy = False

    async def _fill(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(self._queue) < self.max_size:
            self._arrived.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._arrived.wait()
            except TimeoutError:
                return

    async def _run_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        await settle(batch, self._call)


async def settle(
    batch: list[tuple[Item, asyncio.Future[Result]]],
    call: Callable[[list[Item]], Awaitable[Iterable[Result]]],
) -> None:
    """Run ``call`` on the batch's items and give each waiting future its result, or every one the call's
    failure; a cancelled run cancels them all. A future already done (its caller went away) is left alone.
    Also the router's side of query coalescing (``RemoteEmbedder``)."""
    try:
        results = await call([item for item, _ in batch])
    except asyncio.CancelledError:
        for _, future in batch:
            future.cancel()
        raise
    except Exception as err:
        for _, future in batch:
            if not future.done():
                future.set_exception(err)
        return
    for (_, future), result in zip(batch, results, strict=True):
        if not future.done():
            future.set_result(result)
