"""What one Serve hop costs on this machine, without ragserve: a trivial HTTP route, one and two handle calls,
and a 20-item stream, each timed 200 times in a row from an HTTP client (p50/p90 ms), beside a plain Ray
actor call. Serve's mode comes from the environment Ray starts with, so run it once per mode:

    .venv/bin/python load-tests/serve_hops.py                      # Serve's defaults: the Python proxy
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1 .venv/bin/python load-tests/serve_hops.py
    ... --no-access-log                                             # replicas without Serve's access log
    ... --pause-ms 50                                               # replicas idle between requests

Results: load-tests/RESULTS.md, "HAProxy ingress".
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import httpx
import numpy as np
import ray
from harness import machine
from ray import serve
from starlette.requests import Request

PORT = 8000


class Echo:
    async def __call__(self, x: Any) -> Any:
        return x

    async def stream(self, n: int) -> Any:
        for i in range(n):
            yield i


class Ingress:
    def __init__(self, echo: Any) -> None:
        self.echo = echo

    async def __call__(self, req: Request) -> str:
        path = req.url.path
        if path == "/noop":
            return "ok"
        if path == "/hop":
            return str(await self.echo.remote(1))
        if path == "/hop2":
            await self.echo.remote(1)
            return str(await self.echo.remote(1))
        if path == "/stream":  # time to the first item and to all 20, inside the ingress replica
            t0 = time.perf_counter()
            first = None
            async for _ in self.echo.options(stream=True, method_name="stream").remote(20):
                first = first if first is not None else time.perf_counter() - t0
            return f"{1000 * (first or 0):.3f} {1000 * (time.perf_counter() - t0):.3f}"
        return "?"


@ray.remote
class Actor:
    async def f(self, x: Any) -> Any:
        return x


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-access-log", action="store_true", help="replicas without Serve's access log")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        help="idle time between requests (a RAG request keeps each replica idle for most of its span)",
    )
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    actor = Actor.remote()  # type: ignore[attr-defined]
    ray.get(actor.f.remote(0))
    ms = []
    for _ in range(args.n):
        t = time.perf_counter()
        ray.get(actor.f.remote(1))
        ms.append(1000 * (time.perf_counter() - t))
    print(machine(), f"pause between requests {args.pause_ms:g} ms" if args.pause_ms else "")
    print(f"ray actor call from the driver: p50 {statistics.median(ms):.2f} ms")
    logging = {"enable_access_log": not args.no_access_log}
    echo = serve.deployment(logging_config=logging)(Echo)
    ingress = serve.deployment(logging_config=logging)(Ingress)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(ingress.bind(echo.bind()))
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:
        for path in ("/noop", "/hop", "/hop2", "/stream"):
            for _ in range(20):
                client.get(path).raise_for_status()
            ms, inner = [], []
            for _ in range(args.n):
                time.sleep(args.pause_ms / 1000)
                t = time.perf_counter()
                res = client.get(path)
                ms.append(1000 * (time.perf_counter() - t))
                if path == "/stream":
                    inner.append([float(v) for v in res.text.strip('"').split()])
            line = f"{path:8} p50 {statistics.median(ms):6.2f} ms  p90 {np.percentile(ms, 90):6.2f} ms"
            if inner:
                first, whole = (statistics.median(i[k] for i in inner) for k in (0, 1))
                line += f"  (first item {first:.2f} ms, all 20 {whole:.2f} ms)"
            print(line, flush=True)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
