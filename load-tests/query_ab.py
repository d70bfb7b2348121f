"""One side of a before/after comparison of the served query path: `/v1/query` at saturation and the
streamed TTFT at concurrency 1, on a fresh app of whatever ragserve code is first on the path.

Run it alternately from two trees, one at a time, both with PYTHONPATH set the same way, on a collection
ingested once (both trees must share its schema):

    RAGSERVE_HOME=/tmp/ab .venv/bin/ragserve ingest ../shared/corpus/milvus-docs/site/en/reference
    cd <before>/load-tests && PYTHONPATH=<before>/services <venv>/python query_ab.py --home /tmp/ab --label b
    cd load-tests && PYTHONPATH=../services ../.venv/bin/python query_ab.py --home /tmp/ab --label a

Prints one JSON line per run: requests/s of each saturation round and the TTFT p50 (first `delta` event).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from harness import machine, served_app
from overhead import Row, covered_questions, served_calls, session

PORT = 8782


async def measure(
    base: str, qs: list[str], rounds: int, per_round: int, c: int, streams: int
) -> dict[str, Any]:
    """`make overhead`'s served calls and rows (overhead.py), so both compare the same requests."""
    async with session(base) as client:
        calls = served_calls(client, engine=[])
        for q in qs[:3]:  # warm-up
            await calls["query"](q)
        rps = []
        for r in range(rounds):
            row = Row()
            await row.measure(calls["query"], qs, r * per_round, per_round, c)
            rps.append(row.summary()["rps"])
        ttft = Row()
        await ttft.measure(calls["ttft"], qs, 0, streams, 1)
        first = ttft.summary()
    return {"rps": rps, "ttft_p50_ms": first["p50_ms"], "ttft_n": first["n"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="RAGSERVE_HOME with the ingested collection")
    parser.add_argument("--label", default="", help="written into the output line (before / after)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--streams", type=int, default=30)
    args = parser.parse_args()

    from ragserve.config import load_config
    from ragserve.observability.logging import configure_logging

    configure_logging(False)
    qs = covered_questions(load_config(env={"RAGSERVE_HOME": str(args.home)}))
    with served_app({"data_dir": str(args.home)}, PORT) as base:
        out = asyncio.run(measure(base, qs, args.rounds, args.per_round, args.concurrency, args.streams))
    print(json.dumps({"label": args.label, "machine": machine(), **out}), flush=True)


if __name__ == "__main__":
    main()
