"""Serve handle calls from worker threads (store callbacks, ingestion) in a replica."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def result_from_thread(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[T]], timeout_s: float | None = None
) -> T:
    """Make a handle call on the replica's event loop and wait for it in this (worker) thread.

    Under ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` (ray-node-env.yaml) Serve's handle router runs on the replica's
    own loop, where a response cannot be waited on from another thread: ``.result()`` raises. On a timeout
    the call is cancelled and ``TimeoutError`` raised, as ``.result(timeout_s=...)`` does.
    """

    async def run() -> T:
        return await call()

    future = asyncio.run_coroutine_threadsafe(run(), loop)
    try:
        return future.result(timeout_s)
    except TimeoutError:
        future.cancel()
        raise
