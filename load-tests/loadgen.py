"""Open-loop load generator: latency, TTFT, throughput and errors per scenario at stepped offered loads.

Why an asyncio client and not Locust: Locust users are closed loops (a user waits for its response before
the next request), so when the server slows down the offered load drops with it and the tail latency is
under-reported (coordinated omission). Here arrivals follow a Poisson process at a fixed rate per step and
every latency is measured from the request's *scheduled* start, so queueing anywhere (including in this
client) counts. One asyncio process also costs far less CPU than Locust's gevent workers, which matters
when client and server share two cores.

Scenarios:
  query        POST /v1/query, questions from ../shared/eval/dev.jsonl, top_k cycling 3 / 5
  search       POST /v1/search (embed + Milvus only)
  chat-stream  POST /v1/chat/completions with stream=true: TTFT = first content chunk, latency = [DONE]

    .venv/bin/python load-tests/loadgen.py                       # starts the app on a private corpus copy
    .venv/bin/python load-tests/loadgen.py --url http://127.0.0.1:8000 --scenarios search --rates 5,10
Writes a JSON report and a PNG (latency percentiles vs offered load, one panel per scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import CORPUS, EVAL, RESULTS, ingest_private, machine, served_app

DEFAULT_RATES = {"query": [1, 2, 4, 8], "search": [5, 10, 20, 40], "chat-stream": [1, 2, 4, 8]}


def questions() -> list[str]:
    lines = EVAL.read_text().splitlines() if EVAL.exists() else []
    return [json.loads(line)["question"] for line in lines if line.strip()] or [
        "What do the parameters for HNSW mean?"
    ]


@dataclass
class Outcome:
    latency_s: float | None = None  # None: failed
    ttft_s: float | None = None
    error: str | None = None  # HTTP status or exception class


Call = Callable[[httpx.AsyncClient, int], Awaitable[Outcome]]


def scenario(name: str, qs: list[str], max_tokens: int | None) -> Call:
    async def query(client: httpx.AsyncClient, i: int) -> Outcome:
        res = await client.post("/v1/query", json={"question": qs[i % len(qs)], "top_k": (3, 5)[i % 2]})
        return Outcome(error=None if res.status_code == 200 else str(res.status_code))

    async def search(client: httpx.AsyncClient, i: int) -> Outcome:
        res = await client.post("/v1/search", json={"query": qs[i % len(qs)], "top_k": 5})
        return Outcome(error=None if res.status_code == 200 else str(res.status_code))

    async def chat_stream(client: httpx.AsyncClient, i: int) -> Outcome:
        body: dict[str, object] = {"messages": [{"role": "user", "content": qs[i % len(qs)]}], "stream": True}
        if max_tokens is not None:  # else the served config's generator.sampling.max_tokens
            body["max_tokens"] = max_tokens
        started = time.perf_counter()
        ttft = None
        async with client.stream("POST", "/v1/chat/completions", json=body) as res:
            if res.status_code != 200:
                await res.aread()
                return Outcome(error=str(res.status_code))
            async for line in res.aiter_lines():
                if not line.startswith("data: {"):
                    continue  # blank separators, "data: [DONE]"
                event = json.loads(line[6:])
                if "error" in event:
                    return Outcome(error="stream-error")
                # The first chunk carries the role and sources with content "": not a token yet.
                if ttft is None and any(c["delta"].get("content") for c in event.get("choices", [])):
                    ttft = time.perf_counter() - started
        return Outcome(ttft_s=ttft)

    return {"query": query, "search": search, "chat-stream": chat_stream}[name]


@dataclass
class Step:
    scenario: str
    offered_rps: float
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = [o for o in self.outcomes if o.error is None and o.latency_s is not None]
        lat = np.array([o.latency_s for o in ok]) * 1000
        ttft = np.array([o.ttft_s for o in ok if o.ttft_s is not None]) * 1000

        def pct(a: np.ndarray, q: float) -> float | None:
            return round(float(np.percentile(a, q)), 1) if len(a) else None

        return {
            "scenario": self.scenario,
            "offered_rps": self.offered_rps,
            "sent": len(self.outcomes),
            "sent_rps": round(len(self.outcomes) / self.duration_s, 2),  # the Poisson draw's actual rate
            "ok": len(ok),
            "achieved_rps": round(len(ok) / self.wall_s, 2) if self.wall_s else 0.0,
            "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99)},
            "ttft_ms": {"p50": pct(ttft, 50), "p95": pct(ttft, 95), "p99": pct(ttft, 99)}
            if len(ttft)
            else None,
            "errors": dict(Counter(o.error for o in self.outcomes if o.error is not None)),
        }


async def run_step(client: httpx.AsyncClient, call: Call, step: Step, seed: int, timeout_s: float) -> None:
    """Poisson arrivals for ``duration_s``; each latency counts from its scheduled start."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []

    async def one(i: int, scheduled: float) -> None:
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at = loop.time()
        try:
            outcome = await asyncio.wait_for(call(client, i), timeout_s)
        except TimeoutError:
            outcome = Outcome(error="timeout")
        except (httpx.HTTPError, ValueError) as err:  # connection errors, httpx timeouts, bad JSON
            outcome = Outcome(error=type(err).__name__)
        if outcome.error is None:
            outcome.latency_s = loop.time() - scheduled
            if outcome.ttft_s is not None:  # measured from the send; re-base on the scheduled start
                outcome.ttft_s += max(0.0, sent_at - scheduled)
        step.outcomes.append(outcome)

    at, i = start, 0
    while True:
        at += rng.expovariate(step.offered_rps)
        if at - start > step.duration_s:
            break
        tasks.append(asyncio.create_task(one(i, at)))
        i += 1
    await asyncio.gather(*tasks)
    step.wall_s = loop.time() - start


async def run(url: str, scenarios: list[str], rates: dict[str, list[float]], args: Any) -> list[dict]:
    qs = questions()
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        for name in scenarios:
            call = scenario(name, qs, args.max_tokens)
            await call(client, 0)  # warm-up, not counted
            for k, rate in enumerate(rates[name]):
                step = Step(name, rate, args.duration)
                await run_step(client, call, step, seed=k, timeout_s=args.timeout)
                summary = step.summary()
                out.append(summary)
                print(json.dumps(summary), flush=True)
                await asyncio.sleep(args.pause)  # let queues drain between steps
    return out


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["scenario"] for r in results))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = [r for r in results if r["scenario"] == name]
        x = [r["offered_rps"] for r in rows]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            ax.plot(x, [r["latency_ms"][q] or np.nan for r in rows], style, label=f"latency {q}")
        if any(r["ttft_ms"] for r in rows):
            ax.plot(x, [(r["ttft_ms"] or {}).get("p50") or np.nan for r in rows], "x-", label="TTFT p50")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (req/s)")
        ax.set_ylabel("ms")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        twin = ax.twinx()
        twin.bar(x, [r["achieved_rps"] for r in rows], width=0.4 * min(x), alpha=0.15, color="gray")
        twin.set_ylabel("achieved req/s (bars)")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="an already running ragserve (default: start one on --corpus)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="ingested into a private home first")
    parser.add_argument("--scenarios", default="query,search,chat-stream")
    parser.add_argument("--rates", help="req/s steps for every scenario, e.g. 1,2,4 (default per scenario)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per step")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout")
    parser.add_argument(
        "--max-tokens",
        type=int,
        help="chat-stream max_tokens (default: the server's generator.sampling.max_tokens)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    parser.add_argument("--port", type=int, default=8778)
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    rates: dict[str, list[float]] = {
        s: [float(r) for r in args.rates.split(",")] if args.rates else [float(r) for r in DEFAULT_RATES[s]]
        for s in scenarios
    }

    home = None if args.url else ingest_private(args.corpus)
    server = nullcontext(args.url) if args.url else served_app({"data_dir": str(home)}, args.port)
    try:
        with server as url:
            results = asyncio.run(run(url, scenarios, rates, args))
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    host = machine()
    report = {
        "machine": host,
        "target": args.url or f"build_app on a local Ray, corpus {args.corpus}",
        "duration_s": args.duration,
        "steps": results,
    }
    args.out.write_text(json.dumps(report, indent=2))
    png = args.out.with_suffix(".png")
    plot(results, png, f"ragserve latency vs offered load ({host})")
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
