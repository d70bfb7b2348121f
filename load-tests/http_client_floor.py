"""What the benchmark's HTTP client costs by itself: a trivial local server, answered by httpx and aiohttp.

The served side of `overhead.py`'s search row is timed through an HTTP client; the bare side calls the
parts in-process and pays for no client. So the client's own time per request lands in that row's gap.
Here each client sends the search row's request to an ASGI app that does nothing but answer with a search
response's size, on uvicorn with httptools and uvloop (what Serve runs in the Router replica), at
concurrency 1 with a pause between requests (the rows' pattern), in alternating rounds.

    .venv/bin/python load-tests/http_client_floor.py [--requests 300] [--rounds 4]

Prints p50 and p90 per client; writes load-tests/results/http_client_floor.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from harness import RESULTS, machine
from overhead import session

PORT = 8798
BODY = {"query": "How do I create a collection with a custom schema?", "top_k": 3}
ANSWER = json.dumps({"hits": [{"chunk": "x" * 512, "source": "a.md", "score": 0.5}] * 3}).encode()


async def app(scope: dict, receive: Callable, send: Callable) -> None:
    """Reads the body, answers 200 with a fixed JSON body of a 3-hit search's size."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


Client = Callable[[], Awaitable[None]]


async def timed(client: Client, n: int, pause_s: float) -> list[float]:
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client()
        ms.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(pause_s)
    return ms


async def measure(n: int, rounds: int, pause_s: float) -> dict[str, list[float]]:
    base = f"http://127.0.0.1:{PORT}"
    async with httpx.AsyncClient(base_url=base) as hx, session(base) as aio:  # aio: overhead.py's client

        async def via_httpx() -> None:
            (await hx.post("/v1/search", json=BODY)).raise_for_status()

        async def via_aiohttp() -> None:
            async with aio.post("/v1/search", json=BODY) as res:
                res.raise_for_status()
                await res.read()

        clients = {"httpx": via_httpx, "aiohttp": via_aiohttp}
        for client in clients.values():  # connect and warm up
            await timed(client, 20, 0)
        out: dict[str, list[float]] = {name: [] for name in clients}
        names = list(clients)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                out[name] += await timed(clients[name], n // rounds, pause_s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="per client")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pause-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "http_client_floor.json")
    args = parser.parse_args()
    uvicorn = ["--port", str(PORT), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "http_client_floor:app", *uvicorn, "--no-access-log"],
        cwd=Path(__file__).resolve().parent,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{PORT}/", json={}).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        ms = asyncio.run(measure(args.requests, args.rounds, args.pause_ms / 1000))
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {
        "machine": machine(),
        "requests_per_client": args.requests,
        "pause_ms": args.pause_ms,
        **{
            name: {
                "p50_ms": round(statistics.median(v), 3),
                "p90_ms": round(statistics.quantiles(v, n=10)[-1], 3),
            }
            for name, v in ms.items()
        },
    }
    report["httpx_minus_aiohttp_p50_ms"] = round(report["httpx"]["p50_ms"] - report["aiohttp"]["p50_ms"], 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
