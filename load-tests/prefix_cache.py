"""Prompt layout vs vLLM's prefix cache in multi-turn chats: cached prompt tokens and TTFT per turn.

    .venv/bin/python load-tests/prefix_cache.py [--layouts history_first,contexts_first,question_first]
        [--rounds 2] [--conversations 7]

A chat API is stateless: on turn N+1 the client resends the earlier turns, and retrieval finds new contexts
for the new question. vLLM (v1) reuses the KV of a prompt's longest cached prefix, in whole blocks (128
tokens on CPU), so what turn N+1 can reuse from turn N is the part of their prompts that is identical from
the first token. The layouts compared (``Layout``):

  history_first  (shipped)  [system, *history, user(contexts + question)]: turns share system + history.
  contexts_first            [system, user(contexts), assistant("Understood."), *history, user(question)]:
                            turns share the contexts only while retrieval returns the same ranked list.
  question_first            [system, *history, user(question + contexts)]: the same prefix as
                            history_first, the question before the contexts.

Conversations: the 3-turn items of eval/conversations.jsonl (5 messages: user, assistant, user, assistant,
user), turn t sending the first 2t-1 messages; the assistant turns are the written ones, the same for every
layout, so only the layout differs. Retrieval is the product's: their gold pages and other items' gold pages
(16 pages) ingested into a private Milvus Lite (structured chunks, bundled MiniLM, hybrid), the follow-up's
query built by ``retrieval.conversation`` (``RagPipeline.retrieve``), top_k from the profile. The engine
is the local profile's, started as the CLI starts it (``start_generator``): prefix caching is vLLM's
default and on.

Each request goes to the engine with ``max_tokens`` 1 (TTFT is the prefill and one sampled token; the
answer is not needed) and a ``cache_salt`` per layout and round, so layouts never hit each other's blocks
(as if each were the only one deployed), and requests of one turn run layout after layout, the layout
order rotated per conversation, so load drift falls on all layouts alike. Per request: TTFT on our clock
(submit to the first token) and the engine's, prompt tokens, and ``RequestOutput.num_cached_tokens``;
vLLM's own ``vllm:prefix_cache_{queries,hits}`` counters are read before and after as a cross-check.
Turns of one conversation follow each other directly: a busy server evicts older blocks (LRU over
``cpu_kvcache_space_gib``), which this run does not model. Writes results/prefix_cache.json.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import CORPUS, REPO, RESULTS, machine

from ragserve.generator.prompt import PromptBuilder, _Candidate, quote_text, render_block

CONVERSATIONS = REPO / "eval" / "conversations.jsonl"
UNDERSTOOD = "Understood."


def blocks_text(contexts: Sequence[_Candidate]) -> str:
    numbered = list(enumerate(contexts, 1))
    return "\n".join(render_block(c, n) for n, c in reversed(numbered))  # best last, as prompt.py


class ContextsFirst(PromptBuilder):
    """The contexts in a user turn of their own before the history; the question alone last."""

    def _messages(
        self, question: str, contexts: Sequence[_Candidate], history: Sequence[dict[str, str]]
    ) -> list[dict[str, str]]:
        if not contexts:
            return super()._messages(question, contexts, history)
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": f"Context:\n{blocks_text(contexts)}"},
            {"role": "assistant", "content": UNDERSTOOD},
            *history,
            {"role": "user", "content": f"Question: {quote_text(question)}"},
        ]


class QuestionFirst(PromptBuilder):
    """As shipped, but the question before the contexts in the last user message."""

    def _messages(
        self, question: str, contexts: Sequence[_Candidate], history: Sequence[dict[str, str]]
    ) -> list[dict[str, str]]:
        if not contexts:
            return super()._messages(question, contexts, history)
        text = f"Question: {quote_text(question)}\n\nContext:\n{blocks_text(contexts)}"
        return [
            {"role": "system", "content": self.system_prompt},
            *history,
            {"role": "user", "content": text},
        ]


LAYOUTS: dict[str, type[PromptBuilder]] = {
    "history_first": PromptBuilder,  # what prompt.py ships
    "contexts_first": ContextsFirst,
    "question_first": QuestionFirst,
}


def three_turn_conversations(limit: int) -> list[dict[str, Any]]:
    items = [json.loads(line) for line in CONVERSATIONS.read_text(encoding="utf-8").splitlines() if line]
    return [i for i in items if len(i["messages"]) >= 5][:limit]


def ingest_gold_pages(conversations: list[dict[str, Any]], pages: int) -> Path:
    """The conversations' gold pages, and other conversation items' gold pages as neighbours up to ``pages``
    in all, ingested into a fresh RAGSERVE_HOME. Its model cache is the default home's, so the converted
    SmolLM2 and the exported encoder are reused across runs."""
    from ragserve.config import default_data_dir

    items = [json.loads(line) for line in CONVERSATIONS.read_text(encoding="utf-8").splitlines() if line]
    chosen = list(dict.fromkeys(s for c in conversations for s in c["gold_sources"]))
    others = [s for i in items for s in i["gold_sources"] if s not in chosen]
    pages_in = list(dict.fromkeys(chosen + others))[: max(pages, len(chosen))]
    home = Path(tempfile.mkdtemp(prefix="ragserve-prefix-"))
    corpus = home / "corpus"
    for page in pages_in:
        (corpus / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / page, corpus / page)
    models = default_data_dir(os.environ) / "models"
    models.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(models, target_is_directory=True)
    env = {**os.environ, "RAGSERVE_HOME": str(home)}
    cmd = [sys.executable, "-m", "ragserve.cli", "ingest", str(corpus)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    os.environ["RAGSERVE_HOME"] = str(home)
    return home


def vllm_counters() -> dict[str, float]:
    """vLLM's prefix-cache counters in this process (its prometheus stat logger), summed over labels."""
    from prometheus_client import REGISTRY

    out = {"queries": 0.0, "hits": 0.0}
    for family in REGISTRY.collect():
        for sample in family.samples:
            for key in out:
                if sample.name == f"vllm:prefix_cache_{key}_total":
                    out[key] += sample.value
    return out


async def measure(engine: Any, ids: list[int], salt: str, sampling: Any) -> dict[str, Any]:
    from vllm.inputs import TokensPrompt

    from ragserve.generator.engine import sampling_params

    t0 = time.perf_counter()
    ttft = engine_ttft = None
    cached = 0
    prompt = TokensPrompt(prompt_token_ids=ids, cache_salt=salt)
    async for out in engine.generate(prompt, sampling_params(sampling), f"{salt}-{time.monotonic_ns()}"):
        if ttft is None and out.outputs[0].token_ids:
            ttft = time.perf_counter() - t0
            engine_ttft = out.metrics.first_token_latency if out.metrics else None
        cached = max(cached, out.num_cached_tokens or 0)
    return {
        "prompt_tokens": len(ids),
        "cached_tokens": cached,
        "ttft_ms": round((ttft or 0.0) * 1000, 1),
        "engine_ttft_ms": round(engine_ttft * 1000, 1) if engine_ttft is not None else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from ragserve import environment
    from ragserve.cli import open_search, start_generator
    from ragserve.config import load_config
    from ragserve.rag import RagRequest, build_pipeline

    cfg = load_config()
    environment.apply(cfg)
    embed_queries, store = open_search(cfg)
    started = time.perf_counter()
    generator = start_generator(cfg)
    start_s = time.perf_counter() - started
    engine = generator.engine
    tokenizer = generator.get_tokenizer()
    pipeline = build_pipeline(cfg, embed_queries, store, generator, tokenizer)
    vconf = engine.vllm_config.cache_config
    engine_cache = {"enable_prefix_caching": vconf.enable_prefix_caching, "block_size": vconf.block_size}
    builders = {
        name: LAYOUTS[name](
            tokenizer,
            cfg.prompt.system_prompt,
            cfg.generator.max_model_len,
            remove_instructions=cfg.prompt.remove_instructions,
        )
        for name in args.layouts
    }
    sampling = cfg.generator.sampling
    one_token = sampling.model_copy(update={"max_tokens": 1})
    conversations = three_turn_conversations(args.conversations)

    # Retrieval once per turn (the product's conversation method); the same hits for every layout.
    turns: list[dict[str, Any]] = []
    for conv in conversations:
        for t, end in enumerate(range(1, len(conv["messages"]) + 1, 2), 1):
            sent = conv["messages"][:end]
            question, history = sent[-1]["content"], [dict(m) for m in sent[:-1]]
            req = RagRequest(question, sampling, turns=history)
            found, searched = await pipeline.retrieve(req)
            turns.append(
                {
                    "conversation": conv["id"],
                    "turn": t,
                    "question": question,
                    "history": history,
                    "hits": found.hits,
                    "covered": pipeline.retriever.covers(searched.text, found),
                    "sources": [f"{h.source}#{h.chunk_index}" for h in found.hits],
                }
            )

    for name, builder in builders.items():  # first requests pay one-off costs: untimed, own salt
        built = builder.build(turns[0]["question"], turns[0]["hits"], sampling.max_tokens)
        await measure(engine, built.token_ids, f"warmup-{name}", one_token)
    before = vllm_counters()
    rows: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        await engine.reset_prefix_cache()
        for i, conv in enumerate(conversations):
            order = args.layouts[i % len(args.layouts) :] + args.layouts[: i % len(args.layouts)]
            for turn in (t for t in turns if t["conversation"] == conv["id"]):
                for name in order:
                    built = builders[name].build(
                        turn["question"], turn["hits"], sampling.max_tokens, turn["history"]
                    )
                    row = await measure(engine, built.token_ids, f"{name}-r{rnd}", one_token)
                    row.update(
                        layout=name,
                        round=rnd,
                        conversation=conv["id"],
                        turn=turn["turn"],
                        contexts=len(built.contexts),
                        covered=turn["covered"],
                        load1=round(os.getloadavg()[0], 2),
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    after = vllm_counters()
    generator.shutdown()
    store.close()
    return {
        "machine": machine(),
        "model": cfg.generator.model,
        "dtype": cfg.generator.dtype,
        "engine": engine_cache,
        "engine_start_s": round(start_s, 1),
        "retrieval": {"mode": cfg.retrieval.mode, "conversation": cfg.retrieval.conversation},
        "top_k": cfg.prompt.top_k,
        "conversations": [c["id"] for c in conversations],
        "rounds": args.rounds,
        "retrieved": [{k: t[k] for k in ("conversation", "turn", "covered", "sources")} for t in turns],
        "vllm_counters_delta": {k: after[k] - before[k] for k in after},
        "summary": summarize(rows, args.layouts),
        "rows": rows,
    }


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else float("nan")


def summarize(rows: list[dict[str, Any]], layouts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in layouts:
        mine = [r for r in rows if r["layout"] == name]
        per_turn: dict[str, Any] = {}
        for turn in sorted({r["turn"] for r in mine}):
            rs = [r for r in mine if r["turn"] == turn]
            per_turn[str(turn)] = {
                "n": len(rs),
                "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in rs), 1),
                "cached_tokens_mean": round(statistics.mean(r["cached_tokens"] for r in rs), 1),
                "hit_rate": round(
                    sum(r["cached_tokens"] for r in rs) / sum(r["prompt_tokens"] for r in rs), 3
                ),
                "ttft_ms_p50": p50([r["ttft_ms"] for r in rs]),
                "engine_ttft_ms_p50": p50(
                    [r["engine_ttft_ms"] for r in rs if r["engine_ttft_ms"] is not None]
                ),
            }
        later = [r for r in mine if r["turn"] >= 2]
        out[name] = {
            "per_turn": per_turn,
            "turn2plus_hit_rate": round(
                sum(r["cached_tokens"] for r in later) / max(1, sum(r["prompt_tokens"] for r in later)), 3
            ),
            "turn2plus_ttft_ms_p50": p50([r["ttft_ms"] for r in later]),
        }
    return out


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| layout | turn 1 hit | turn 2 hit | turn 3 hit | turns 2-3 hit | prompt tok t1/t2/t3 "
        "| TTFT p50 t1 | t2 | t3 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        pt = s["per_turn"]
        lines.append(
            f"| {name} | {pt['1']['hit_rate']:.2f} | {pt['2']['hit_rate']:.2f} | {pt['3']['hit_rate']:.2f} "
            f"| {s['turn2plus_hit_rate']:.2f} "
            f"| {pt['1']['prompt_tokens_mean']:.0f}/{pt['2']['prompt_tokens_mean']:.0f}/"
            f"{pt['3']['prompt_tokens_mean']:.0f} "
            f"| {pt['1']['ttft_ms_p50']:.0f} | {pt['2']['ttft_ms_p50']:.0f} | {pt['3']['ttft_ms_p50']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layouts", default="history_first,contexts_first,question_first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=7)
    parser.add_argument("--pages", type=int, default=16, help="corpus pages ingested (gold + neighbours)")
    parser.add_argument("--out", type=Path, default=RESULTS / "prefix_cache.json")
    args = parser.parse_args()
    args.layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    unknown = set(args.layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layouts {sorted(unknown)}: choose from {sorted(LAYOUTS)}")
    load_before = os.getloadavg()
    home = ingest_gold_pages(three_turn_conversations(args.conversations), args.pages)
    try:
        result = asyncio.run(run(args))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result["load_before"] = [round(x, 2) for x in load_before]
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["command"] = " ".join(["load-tests/prefix_cache.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result["summary"]))
    print(f"engine: {result['engine']}; vLLM counters over the run: {result['vllm_counters_delta']}")
    print(f"load before {result['load_before']}, after {result['load_after']}; wrote {args.out}")


if __name__ == "__main__":  # vLLM's engine process is spawned: the guard is required
    main()
