"""The served path against its parts run bare, in one run: the four goal rows of `make overhead`.

  ttft    /v1/query streamed, concurrency 1: time to the first text served, vs the bare parts (in-process
          embed + Milvus search + prompt build, then a raw vLLM OpenAI server streaming the same prompt ids,
          timed to its first chunk with text);
  search  /v1/search at concurrency 1, served vs in-process embed + Milvus search;
  query   /v1/query at saturation (concurrency C), requests/s served vs the bare parts;
  pool    the Embedder pool at saturation (64 callers, one text each, through the router's coalescing
          client; measured once the autoscaler has grown the pool to max_replicas) vs raw encode at its
          best batch; each side the median of POOL_ROUNDS passes.

The served app and the bare parts run side by side, and each request row alternates between them in
rounds (bare then served, served then bare, ...): this machine's speed drifts between minutes by as much as
the effects measured, and interleaving puts the drift on both sides. Every row also records CPU
milliseconds per request for each process role (roles.py), and the concurrency-1 rows their latency by
stage on both sides (embed, Milvus, prompt, first token, and the rest), so the gap can be attributed. With
``--profile`` py-spy samples the router and generator replicas during the saturation row, and the top
functions by own samples are written next to the figures.

    .venv/bin/python load-tests/overhead.py [--corpus DIR] [--requests 60] [--concurrency 8]

Writes load-tests/results/overhead.json (keys: ttft_overhead_ms_p50, search_overhead_ms_p50,
query_rps_ratio, embedder_pool_ratio, each next to the two raw figures it comes from). Beside the two
concurrency-1 gaps, ``paired_gap_ms_p50`` is the median of served minus bare for the same request (the same
question), and each concurrency-1 row keeps its requests' latencies and stages (``requests``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from bench import encode_sweep, pool_rates, raw_model, vllm_server
from harness import CORPUS, RESULTS, machine, served_app
from roles import cpu_window, per_request
from serve_latency import questions

PORT = 8781
TOP_K = 3
POOL_GROW_S = 120  # at most this long under load for the Embedder pool to reach max_replicas
C1_ROUNDS = 6  # alternating rounds per concurrency-1 row (A B, B A, ...)
SATURATION_ROUNDS = 2
POOL_ROUNDS = 3  # the pool row and raw encode: the median of this many passes over the texts each


def stats(ms: list[float], wall_s: float) -> dict[str, float]:
    a = np.array(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "rps": round(len(ms) / wall_s, 2),
    }


# A call returns the latency that counts (ms) and, where it can, that latency by stage (ms): the served
# side from the router's own `timings`, the bare side timed around each part. `rest` is what no stage holds
# (served: HTTP in and out, FastAPI, JSON or SSE framing).
Sample = tuple[float, dict[str, float]]
Call = Callable[[str], Awaitable[Sample]]


class Row:
    """One side of one row, accumulated over its rounds: latencies, stages, wall time and CPU per role."""

    def __init__(self) -> None:
        self.samples: dict[int, Sample] = {}  # request index (so its question) -> latency and stages (ms)
        self.wall = 0.0
        self.cpu: dict[str, float] = defaultdict(float)
        self.outside = 0.0

    async def measure(self, call: Call, qs: list[str], start: int, count: int, c: int) -> None:
        sem = asyncio.Semaphore(c)

        async def one(i: int) -> None:
            async with sem:
                self.samples[i] = await call(qs[i % len(qs)])

        with cpu_window() as window:
            t0 = time.perf_counter()
            await asyncio.gather(*(one(start + i) for i in range(count)))
            self.wall += time.perf_counter() - t0
        for role, seconds in window["by_role"].items():
            self.cpu[role] += seconds
        self.outside += window["outside_s"]

    def request(self, i: int) -> dict[str, float]:
        ms, stages = self.samples[i]
        return {"ms": round(ms, 2), **stages}

    def summary(self) -> dict[str, Any]:
        window = {"by_role": dict(self.cpu), "outside_s": self.outside}
        ms = [ms for ms, _ in self.samples.values()]
        out = {**stats(ms, self.wall), "cpu_ms_per_request": per_request(window, len(ms))}
        stages: dict[str, list[float]] = defaultdict(list)
        for _, sample_stages in self.samples.values():
            for stage, value in sample_stages.items():
                stages[stage].append(value)
        if stages:
            out["stages_p50_ms"] = {k: round(float(np.median(v)), 1) for k, v in stages.items()}
            out["requests"] = {i: self.request(i) for i in sorted(self.samples)}
        return out


def with_rest(total_ms: float, stages: dict[str, float]) -> Sample:
    return total_ms, {**stages, "rest": round(total_ms - sum(stages.values()), 2)}


async def interleaved(
    calls: dict[str, Call], qs: list[str], rounds: int, per_round: int, c: int
) -> dict[str, Any]:
    """The same row on every side (``{"bare": call, "served": call}``), in alternating rounds (A B, B A,
    ...) after one warm-up call each: the machine's drift between rounds falls on both sides alike. Both
    stacks stay up throughout; the one not measured idles, and its CPU shows in the other side's role
    table."""
    for call in calls.values():
        await call(qs[0])
    rows = {side: Row() for side in calls}
    sides = list(calls)
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            await rows[side].measure(calls[side], qs, r * per_round, per_round, c)
    out = {side: row.summary() for side, row in rows.items()}
    if c == 1:
        out["served"]["paired_gap_vs_bare"] = paired_gap(rows["served"], rows["bare"])
    return out


# ---- bare parts ----------------------------------------------------------------------------------------
class BareParts:
    """In-process retrieval and prompt building, and a raw vLLM OpenAI server on the same engine args."""

    def __init__(self, cfg: Any):
        import torch
        from transformers import AutoTokenizer

        from ragserve.embedder.encoder import Encoder
        from ragserve.generator.engine import resolve_model
        from ragserve.generator.prompt import PromptBuilder
        from ragserve.retrieval import Retriever, local_query_embedder
        from ragserve.store.lite_server import LiteServer
        from ragserve.store.milvus import MilvusStore

        self.cfg = cfg
        self.lite = LiteServer(str(cfg.store.uri))  # the gRPC path the served app uses
        self.store = MilvusStore.for_app(cfg, self.lite.uri)
        # As many threads as an Embedder replica gets from Ray (its num_cpus, at least one: OMP_NUM_THREADS,
        # which ONNX Runtime's sessions also follow). Two threads beside the vLLM server's busy engine core
        # oversubscribe two cores: OpenMP's waits spin, and this row's TTFT ranged 47-427 ms p50 between
        # identical runs.
        threads = max(1, int(cfg.embedder.resources.num_cpus))
        torch.set_num_threads(threads)
        # Set only while the encoder's session is made (it reads the variable then): the bare vLLM server
        # this process starts next must not inherit it.
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            encoder = Encoder(cfg.embedder.for_queries())  # the questions' backend, as the Embedder runs it
        finally:
            if previous is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        self.store.ensure_collection(encoder.dim, encoder.model_name)  # checks the schema, loads it
        self.retriever = Retriever(local_query_embedder(encoder), self.store, cfg.retrieval)
        tokenizer: Any = AutoTokenizer.from_pretrained(resolve_model(cfg.generator, cfg.cache_dir))
        self.prompt = PromptBuilder(
            tokenizer,
            cfg.prompt.system_prompt,
            cfg.generator.max_model_len,
            remove_instructions=cfg.prompt.remove_instructions,
        )

    async def prompt_ids(self, q: str) -> tuple[list[int], dict[str, float]]:
        """The prompt's token ids, and the retrieval and prompt stages it took (ms)."""
        found = await self.retriever.search(q, TOP_K)
        t0 = time.perf_counter()
        ids = self.prompt.build(q, found.hits, self.cfg.generator.sampling.max_tokens).token_ids
        return ids, stage_ms(found.timings, (time.perf_counter() - t0) * 1000)

    def close(self) -> None:
        self.store.close()
        self.lite.stop()


def covered_questions(cfg: Any) -> list[str]:
    """The dev questions the corpus covers (retrieval.min_relevance): the served path answers the others
    without generating, so they would not compare the same work."""
    from ragserve.embedder.encoder import Encoder
    from ragserve.retrieval import Retriever, local_query_embedder
    from ragserve.store.milvus import MilvusStore

    store = MilvusStore.for_app(cfg)
    encoder = Encoder(cfg.embedder.for_queries())
    store.ensure_collection(encoder.dim, encoder.model_name)
    retriever = Retriever(local_query_embedder(encoder), store, cfg.retrieval)
    try:
        return [q for q in questions() if retriever.covers(q, asyncio.run(retriever.search(q, TOP_K)))]
    finally:
        store.close()


def completion_body(cfg: Any, prompt: list[int], stream: bool) -> dict[str, Any]:
    s = cfg.generator.sampling
    return {
        "model": cfg.generator.model_id,
        "prompt": prompt,
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "stream": stream,
    }


def stage_ms(timings: dict[str, float], prompt_ms: float | None = None) -> dict[str, float]:
    """The retrieval stages of a ``timings`` dict (the pipeline's names), plus the prompt's when given."""
    stages = {"embed": timings["embed_ms"], "milvus": timings["search_ms"]}
    return stages if prompt_ms is None else {**stages, "prompt": prompt_ms}


def session(base: str) -> aiohttp.ClientSession:
    """The HTTP client of every row, served and bare. aiohttp, not httpx: a request through httpx costs
    0.6-1.4 ms more on this machine (``http_client_floor.py``, retired: RESULTS.md), and only the served
    side of the search row pays for a client at all."""
    return aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=120))


async def read_stream(
    response: aiohttp.ClientResponse, has_text: Callable[[str], bool], t0: float
) -> tuple[float, float, dict[str, Any]]:
    """Milliseconds from ``t0`` to the first ``data:`` line and to the first line that carries text
    (``has_text``), and the data of the stream's ``done`` event (ragserve's; ``{}`` in vLLM's stream);
    reads the whole stream."""
    first = text = None
    event, done = "", {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        now = (time.perf_counter() - t0) * 1000
        if first is None and line.startswith("data: "):
            first = now
        if text is None and has_text(line):
            text = now
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "done":
            done = json.loads(line.removeprefix("data: "))
        elif not line:
            event = ""
    if first is None or text is None:
        raise RuntimeError("no text in the stream")
    return first, text, done


def vllm_text(line: str) -> bool:
    """A line of vLLM's completion stream with text in it. Its first chunk can carry a token that decodes
    to nothing yet (part of a character); ragserve's stream sends no empty delta, so both sides are timed
    to the first text a client sees."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return False
    return bool(json.loads(line.removeprefix("data: "))["choices"][0]["text"])


def ragserve_text(line: str) -> bool:
    return line.startswith("event: delta")


def bare_calls(cfg: Any, parts: BareParts, client: aiohttp.ClientSession) -> dict[str, Call]:
    async def search(q: str) -> Sample:
        t0 = time.perf_counter()
        found = await parts.retriever.search(q, TOP_K)
        return with_rest((time.perf_counter() - t0) * 1000, stage_ms(found.timings))

    async def ttft(q: str) -> Sample:
        t0 = time.perf_counter()
        prompt, stages = await parts.prompt_ids(q)
        t_gen = time.perf_counter()
        async with client.post("/v1/completions", json=completion_body(cfg, prompt, True)) as res:
            res.raise_for_status()
            first, ms, _ = await read_stream(res, vllm_text, t0)
        # The first token: from the prompt to the first streamed chunk, through vLLM's HTTP server.
        return with_rest(ms, {**stages, "first_token": first - (t_gen - t0) * 1000})

    async def query(q: str) -> Sample:
        t0 = time.perf_counter()
        prompt, _ = await parts.prompt_ids(q)
        body = completion_body(cfg, prompt, stream=False)
        async with client.post("/v1/completions", json=body) as res:
            res.raise_for_status()
            await res.read()
        return (time.perf_counter() - t0) * 1000, {}

    return {"search": search, "ttft": ttft, "query": query}


# ---- served ----------------------------------------------------------------------------------------------
def replica_pids() -> dict[str, int]:
    import psutil

    out = {}
    for p in psutil.process_iter(["cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        for name in ("Router", "Generator"):
            if f"ServeReplica:ragserve:{name}" in title:
                out[name] = p.pid
    return out


def py_spy(pids: dict[str, int], seconds: int) -> dict[str, subprocess.Popen[bytes]]:
    exe = Path(sys.executable).with_name("py-spy")
    return {
        name: subprocess.Popen(
            [
                str(exe),
                "record",
                "-p",
                str(pid),
                "-d",
                str(seconds),
                "-r",
                "50",
                "-f",
                "raw",
                "-o",
                str(RESULTS / f"py-spy-{name.lower()}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }


def top_frames(path: Path, k: int = 12) -> list[dict[str, Any]]:
    """Collapsed stacks (sampled while holding the GIL: Python work, not waits) -> the functions with the
    most samples on top of the stack (own time)."""
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    return [{"frame": f, "share": round(n / total, 3)} for f, n in own.most_common(k)] if total else []


def embedder_replicas() -> int:
    from ray import serve

    from ragserve.app import APP_NAME

    states = serve.status().applications[APP_NAME].deployments["Embedder"].replica_states
    return sum(count for state, count in states.items() if state == "RUNNING")


async def pool_rate(texts: list[str], concurrency: int, max_replicas: int, wait_s: float) -> dict[str, Any]:
    """bench.py's pool row (one text per caller, through the router's client) at saturation, with CPU per
    role around it. Saturation includes the autoscaler's answer: the load runs until the pool has grown to
    ``max_replicas`` (it reacts to sustained load only, after upscale_delay_s) or ``wait_s`` has passed,
    then POOL_ROUNDS rounds are measured and their median reported (one round takes about 2 s, and single
    rounds of the grown pool ranged 145-203 texts/s in a row)."""
    started = time.perf_counter()
    rounds = 0
    while embedder_replicas() < max_replicas and time.perf_counter() - started < wait_s:
        await pool_rates(texts, concurrency, rounds=1)
        rounds += 1
    grown_s = round(time.perf_counter() - started, 1)
    with cpu_window() as window:
        rates = await pool_rates(texts, concurrency, rounds=POOL_ROUNDS)
    return {
        "texts_per_s": round(float(np.median(rates)), 1),
        "rounds_texts_per_s": rates,
        "replicas": embedder_replicas(),
        "load_before_measuring_s": grown_s if rounds else 0.0,
        "cpu_ms_per_text": per_request(window, len(texts) * POOL_ROUNDS),
    }


def served_calls(client: aiohttp.ClientSession, engine: list[dict[str, float]]) -> dict[str, Call]:
    async def search(q: str) -> Sample:
        t0 = time.perf_counter()
        async with client.post("/v1/search", json={"query": q, "top_k": TOP_K}) as res:
            res.raise_for_status()
            found = await res.json()
        return with_rest((time.perf_counter() - t0) * 1000, stage_ms(found["timings"]))

    async def ttft(q: str) -> Sample:
        t0 = time.perf_counter()
        body = {"question": q, "top_k": TOP_K, "stream": True}
        async with client.post("/v1/query", json=body) as res:
            res.raise_for_status()
            _, ms, done = await read_stream(res, ragserve_text, t0)
        t = done["timings"]  # the router's: first_token is its Generator call -> first token
        return with_rest(ms, {**stage_ms(t, t["prompt_ms"]), "first_token": t["ttft_ms"]})

    async def query(q: str) -> Sample:
        t0 = time.perf_counter()
        async with client.post("/v1/query", json={"question": q, "top_k": TOP_K}) as res:
            res.raise_for_status()
            engine.append((await res.json())["timings"])
        return (time.perf_counter() - t0) * 1000, {}

    return {"search": search, "ttft": ttft, "query": query}


async def all_rows(
    home: Path, bare_cfg: Any, qs: list[str], n: int, c: int, texts: list[str], pool_c: int, profile: bool
) -> dict[str, Any]:
    """The served app and the bare parts up side by side; the pool row, then the three request rows with
    both sides interleaved (``interleaved``)."""
    from ragserve import environment

    out: dict[str, Any] = {"served": {}, "bare": {}}
    with served_app({"data_dir": str(home)}, PORT) as base:
        # The pool row first: its sustained load grows the Embedder pool to its autoscaled size, so no
        # replica starts (loading its model) inside a later row's measured window.
        pool_replicas = bare_cfg.embedder.deployment.autoscaling_config.max_replicas
        out["served"]["pool"] = await pool_rate(texts, pool_c, pool_replicas, POOL_GROW_S)
        # After ray.init: Ray's processes keep the environment they started with; vLLM's CPU platform,
        # imported by the bare parts, edits this process's.
        environment.apply(bare_cfg)
        parts = BareParts(bare_cfg)
        engine: list[dict[str, float]] = []
        try:
            async with (
                vllm_server(bare_cfg) as (raw_server, command),
                session(str(raw_server.base_url)) as raw,
                session(base) as client,
            ):
                out["bare"]["vllm_command"] = " ".join(command)
                sides = {"bare": bare_calls(bare_cfg, parts, raw), "served": served_calls(client, engine)}

                def row(kind: str) -> dict[str, Call]:
                    return {side: calls[kind] for side, calls in sides.items()}

                rows = {
                    "search_c1": await interleaved(row("search"), qs, C1_ROUNDS, n // C1_ROUNDS, 1),
                    "ttft_c1": await interleaved(row("ttft"), qs, C1_ROUNDS, n // C1_ROUNDS, 1),
                }
                spies = py_spy(replica_pids(), 30) if profile else {}
                # Rounds of several waves of c requests each: a round's last wave runs below c.
                per_round = max(4 * c, n // SATURATION_ROUNDS)
                rows["query_saturation"] = await interleaved(
                    row("query"), qs, SATURATION_ROUNDS, per_round, c
                )
        finally:
            parts.close()
        for spy in spies.values():
            spy.wait(timeout=120)
    for name, by_side in rows.items():
        for side, figures in by_side.items():
            out[side][name] = figures
    if spies:
        out["served"]["py_spy_top_own_time"] = {
            name: top_frames(RESULTS / f"py-spy-{name.lower()}.txt") for name in spies
        }
    keys = ("ttft_ms", "engine_ttft_ms", "generate_ms", "engine_generate_ms")
    out["served"]["query_saturation"]["timings_p50_ms"] = {
        k: round(float(np.median([t[k] for t in engine if k in t])), 1) for k in keys
    }
    return out


def paired_gap(served: Row, bare: Row) -> dict[str, float]:
    """Served minus bare for the same request (same index, so the same question), over every request both
    sides ran: the concurrency-1 rows' questions differ in prompt length by more than the overhead, and a
    paired difference takes that spread out, where a difference of two p50s keeps it."""
    both = served.samples.keys() & bare.samples.keys()
    gaps = [served.request(i)["ms"] - bare.request(i)["ms"] for i in both]
    return {"p50_ms": round(float(np.median(gaps)), 1), "n": len(gaps)}


def stage_gap(served: dict[str, Any], bare: dict[str, Any]) -> dict[str, float]:
    """Served minus bare, stage by stage (p50s): where a concurrency-1 row's overhead sits."""
    s, b = served["stages_p50_ms"], bare["stages_p50_ms"]
    return {k: round(s[k] - b[k], 1) for k in s}


def one_line_leaves(text: str) -> str:
    """Indented JSON with each innermost object on one line: a request's stages read as one row. (JSON
    strings hold no raw newline, so only the indentation goes.)"""
    return re.sub(r"\{[^{}\[\]]*\}", lambda m: re.sub(r"\n\s*", " ", m.group(0)), text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS / "reference", help="ingested and served")
    parser.add_argument("--requests", type=int, default=60, help="requests per row")
    parser.add_argument("--concurrency", type=int, default=8, help="the saturation rows")
    parser.add_argument("--texts", type=int, default=384, help="query texts for the pool and raw encode")
    parser.add_argument("--pool-concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="py-spy the router and generator replicas")
    parser.add_argument("--out", type=Path, default=RESULTS / "overhead.json")
    args = parser.parse_args()
    from ragserve.config import load_config
    from ragserve.observability.logging import configure_logging

    configure_logging(False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="ragserve-overhead-"))
    env = {**os.environ, "RAGSERVE_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "ragserve.cli", "ingest", str(args.corpus)], env=env, check=True)
    cfg = load_config(env=env)
    n, c = args.requests, args.concurrency
    try:
        qs = covered_questions(cfg)
        if not qs:
            raise SystemExit(f"{args.corpus} covers none of the dev questions: pick a larger corpus")
        texts = [f"{qs[i % len(qs)]} ({i})" for i in range(args.texts)]
        print("raw encode sweep ...", flush=True)
        model = raw_model(cfg)
        sweep = encode_sweep(model, texts, [8, 32, 64, 128], POOL_ROUNDS)
        del model
        best = max(sweep, key=lambda b: sweep[b])
        # The bare parts search their own copy of the collection (a Lite file has one owner at a time).
        bare_db = home / "bare" / "milvus.db"
        shutil.copytree(str(cfg.store.uri), bare_db)
        bare_cfg = load_config(env={**env, "RAGSERVE__STORE__URI": str(bare_db)})
        print("served app and bare parts (in-process retrieval + raw vLLM server), interleaved ...")
        measured = asyncio.run(all_rows(home, bare_cfg, qs, n, c, texts, args.pool_concurrency, args.profile))
        served, bare = measured["served"], measured["bare"]
    finally:
        shutil.rmtree(home, ignore_errors=True)

    def pair(key: str, served_v: float, bare_v: float, value: float) -> dict[str, float]:
        return {key: value, "served": served_v, "bare": bare_v}

    s, b = served, bare
    report = {
        "machine": machine(),
        "corpus": str(args.corpus),
        "requests_per_row": n,
        "rounds": {"concurrency_1": C1_ROUNDS, "saturation": SATURATION_ROUNDS},
        "saturation_concurrency": c,
        "seconds": round(time.perf_counter() - started, 1),
        "questions": len(qs),
        "ttft_overhead_ms_p50": pair(
            "ms",
            s["ttft_c1"]["p50_ms"],
            b["ttft_c1"]["p50_ms"],
            round(s["ttft_c1"]["p50_ms"] - b["ttft_c1"]["p50_ms"], 1),
        ),
        "search_overhead_ms_p50": pair(
            "ms",
            s["search_c1"]["p50_ms"],
            b["search_c1"]["p50_ms"],
            round(s["search_c1"]["p50_ms"] - b["search_c1"]["p50_ms"], 1),
        ),
        "query_rps_ratio": pair(
            "ratio",
            s["query_saturation"]["rps"],
            b["query_saturation"]["rps"],
            round(s["query_saturation"]["rps"] / b["query_saturation"]["rps"], 3),
        ),
        "embedder_pool_ratio": pair(
            "ratio", s["pool"]["texts_per_s"], sweep[best], round(s["pool"]["texts_per_s"] / sweep[best], 3)
        ),
        "stage_gap_ms_p50": {row: stage_gap(s[row], b[row]) for row in ("search_c1", "ttft_c1")},
        "paired_gap_ms_p50": {row: s[row]["paired_gap_vs_bare"] for row in ("search_c1", "ttft_c1")},
        "raw_encode_texts_per_s_by_batch": sweep,
        "served": served,
        "bare": bare,
    }
    args.out.write_text(one_line_leaves(json.dumps(report, indent=2)))
    print(json.dumps({k: v for k, v in report.items() if k not in ("served", "bare")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
