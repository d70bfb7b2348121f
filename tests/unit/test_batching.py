"""The replicas' batcher: a lone call at once, the calls that come meanwhile as the next batch, failures and
cancellations kept to their own calls. The handler is held and released by the tests, so nothing is timed."""

from __future__ import annotations

import asyncio

import pytest

from ragserve.batching import Batcher


class HeldHandler:
    """Records each batch and returns each item doubled once the test lets that batch go (``go``: one
    batch per release) or lets every batch go (``open``)."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()
        self.go = asyncio.Semaphore(0)
        self.open = False
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.started.set()
        await asyncio.sleep(0)  # a model pass gives the loop a turn, as asyncio.to_thread does
        if not self.open:
            await self.go.acquire()
        if self.fail_on in items:
            raise ValueError(f"item {self.fail_on}")
        return [2 * i for i in items]


async def started(handler: HeldHandler) -> None:
    await asyncio.wait_for(handler.started.wait(), 5)
    handler.started.clear()


async def queued_behind(
    batcher: Batcher[int, int], handler: HeldHandler, first: int, then: list[int]
) -> tuple[asyncio.Future[int], list[asyncio.Future[int]]]:
    """``first`` submitted alone and held in the handler, then ``then`` submitted behind it."""
    running = asyncio.ensure_future(batcher.submit(first))
    await started(handler)  # hangs if the lone call waited for company
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in then]
    await asyncio.sleep(0)
    return running, queued


def test_a_lone_call_runs_at_once_and_those_that_come_meanwhile_form_the_next_batch() -> None:
    async def scenario() -> tuple[list[int], list[list[int]]]:
        handler = HeldHandler()
        batcher = Batcher(handler, max_size=8)
        first, rest = await queued_behind(batcher, handler, 1, [2, 3, 4])
        assert handler.batches == [[1]]  # the busy model takes nothing new
        handler.go.release()
        handler.go.release()
        results = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
        handler.open = True
        results.append(await asyncio.wait_for(batcher.submit(5), 5))  # idle again: alone, at once
        return results, handler.batches

    assert asyncio.run(scenario()) == ([2, 4, 6, 8, 10], [[1], [2, 3, 4], [5]])


def test_batches_hold_at_most_max_size_items_in_arrival_order() -> None:
    async def scenario() -> list[list[int]]:
        handler = HeldHandler()
        batcher = Batcher(handler, max_size=2)
        first, rest = await queued_behind(batcher, handler, 0, list(range(1, 6)))
        handler.open = True
        handler.go.release()
        results = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
        assert results == [0, 2, 4, 6, 8, 10]
        return handler.batches

    assert asyncio.run(scenario()) == [[0], [1, 2], [3, 4], [5]]


def test_wait_s_holds_a_batch_until_it_is_full_or_the_wait_is_over() -> None:
    async def scenario() -> list[list[int]]:
        handler = HeldHandler()
        handler.open = True
        full = Batcher(handler, max_size=3, wait_s=60.0)
        # Hangs (and fails on the 5-s wait_for) if a full batch still waited the 60 s.
        assert await asyncio.wait_for(asyncio.gather(*(full.submit(i) for i in (1, 2, 3))), 5) == [2, 4, 6]
        short = Batcher(handler, max_size=3, wait_s=0.01)
        assert await asyncio.wait_for(short.submit(7), 5) == 14  # alone once the wait is over
        return handler.batches

    assert asyncio.run(scenario()) == [[1, 2, 3], [7]]


def test_a_failing_batch_fails_its_own_calls_and_the_next_batch_runs() -> None:
    async def scenario() -> tuple[list[object], list[list[int]]]:
        handler = HeldHandler(fail_on=1)
        batcher = Batcher(handler, max_size=8)
        first, rest = await queued_behind(batcher, handler, 1, [2, 3])
        handler.open = True
        handler.go.release()
        results = await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), 5)
        return [r if isinstance(r, int) else repr(r) for r in results], handler.batches

    results, batches = asyncio.run(scenario())
    assert results == ["ValueError('item 1')", 4, 6]
    assert batches == [[1], [2, 3]]


def test_a_handler_with_the_wrong_number_of_results_fails_its_batch() -> None:
    async def wrong(items: list[int]) -> list[int]:
        return items[:-1]

    async def scenario() -> None:
        batcher = Batcher(wrong, max_size=8)
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            await asyncio.wait_for(batcher.submit(1), 5)

    asyncio.run(scenario())


def test_a_call_cancelled_while_it_waits_is_left_out_of_its_batch() -> None:
    """A client that disconnects while the model is busy costs the next pass nothing."""

    async def scenario() -> list[list[int]]:
        handler = HeldHandler()
        batcher = Batcher(handler, max_size=8)
        first, (gone, kept) = await queued_behind(batcher, handler, 1, [2, 3])
        gone.cancel()
        handler.open = True
        handler.go.release()
        assert await asyncio.wait_for(asyncio.gather(first, kept), 5) == [2, 6]
        return handler.batches

    assert asyncio.run(scenario()) == [[1], [3]]


def test_a_lone_call_runs_in_its_callers_own_task() -> None:
    """No queue, no batching task: a one-query search pays what a plain method would."""

    async def scenario() -> bool:
        caller = None

        async def handler(items: list[int]) -> list[asyncio.Task[object] | None]:
            return [asyncio.current_task() for _ in items]

        async def call() -> bool:
            nonlocal caller
            caller = asyncio.current_task()
            return (await Batcher(handler, max_size=8).submit(1)) is caller

        return await asyncio.wait_for(call(), 5)

    assert asyncio.run(scenario())


def test_the_calls_queued_behind_a_cancelled_lone_call_still_run() -> None:
    async def scenario() -> tuple[bool, list[int], list[list[int]]]:
        handler = HeldHandler()
        batcher = Batcher(handler, max_size=8)
        first, rest = await queued_behind(batcher, handler, 1, [2, 3])
        first.cancel()  # its client went away while the model ran it
        handler.open = True
        results = await asyncio.wait_for(asyncio.gather(*rest), 5)  # hangs if nothing picks them up
        return first.cancelled(), results, handler.batches

    assert asyncio.run(scenario()) == (True, [4, 6], [[1], [2, 3]])


def test_stopping_the_batcher_cancels_the_running_and_the_queued_calls() -> None:
    async def scenario() -> list[bool]:
        handler = HeldHandler()
        batcher = Batcher(handler, max_size=1)
        first, queued = await queued_behind(batcher, handler, 1, [2, 3])
        handler.go.release()
        assert await asyncio.wait_for(first, 5) == 2
        await started(handler)  # the batching task runs [2] and is held; [3] waits
        assert batcher._runner is not None
        batcher._runner.cancel()  # what a stopping replica's loop does to its tasks
        await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), 5)  # hangs if left pending
        return [call.cancelled() for call in queued]

    assert asyncio.run(scenario()) == [True, True]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        Batcher(HeldHandler(), max_size=0)
