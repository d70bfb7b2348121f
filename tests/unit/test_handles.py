"""result_from_thread: a call made on another thread's event loop, awaited from a worker thread."""

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ragserve.handles import result_from_thread


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_the_call_runs_on_the_loop_and_its_result_comes_back(loop: asyncio.AbstractEventLoop) -> None:
    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert result_from_thread(loop, where) is loop


def test_the_call_s_error_is_raised_in_the_thread(loop: asyncio.AbstractEventLoop) -> None:
    async def fail() -> None:
        raise ValueError("no replica")

    with pytest.raises(ValueError, match="no replica"):
        result_from_thread(loop, fail)


def test_a_timeout_cancels_the_call(loop: asyncio.AbstractEventLoop) -> None:
    cancelled = threading.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        result_from_thread(loop, hang, timeout_s=0.05)
    assert cancelled.wait(5)
