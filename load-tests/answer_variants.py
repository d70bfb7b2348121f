"""Sampling variants of the local generator, compared on the same retrieved contexts in one engine.

Every answerable question of the eval files (with an ``answer_hint``) is retrieved once through ragserve's
retriever on the configured collection and its prompt built once by the product's prompt builder; then each
variant (sampling overrides on the configured ``generator.sampling``) answers all of them in one batch of
one offline vLLM engine with the product's logits processors. Scored as ``ragserve eval --answers`` scores
(ragserve/answer_eval.py): key-fact recall against the hint, the context's ceiling, looping answers.

usage: python load-tests/answer_variants.py [--json load-tests/results/answer_variants.json]
(first: ``ragserve ingest <corpus>``; the table is in docs/answers.md, "Sampling").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from harness import EVAL, REPO, machine

# name -> sampling overrides on the configured generator.sampling
VARIANTS: dict[str, dict[str, Any]] = {
    "repetition_penalty 1.1": {
        "repetition_penalty": 1.1,
        "frequency_penalty": 0.0,
        "no_repeat_ngram_size": None,
    },
    "frequency_penalty 0.5": {
        "repetition_penalty": 1.0,
        "frequency_penalty": 0.5,
        "no_repeat_ngram_size": None,
    },
    "no_repeat_ngram_size 4": {
        "repetition_penalty": 1.0,
        "frequency_penalty": 0.0,
        "no_repeat_ngram_size": 4,
    },
    "configured": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="+", type=Path, default=[EVAL, REPO / "eval" / "questions.jsonl"])
    parser.add_argument("--json", type=Path, default=REPO / "load-tests" / "results" / "answer_variants.json")
    args = parser.parse_args()

    from ragserve import environment
    from ragserve.config import load_config

    cfg = load_config()
    environment.apply(cfg)

    from vllm import LLM
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    from ragserve.answer_eval import key_facts, loops, recall
    from ragserve.embedder.encoder import Encoder
    from ragserve.evaluate import load_eval_file
    from ragserve.generator.engine import engine_kwargs, resolve_model, sampling_params
    from ragserve.generator.prompt import PromptBuilder
    from ragserve.retrieval import Retriever, local_query_embedder
    from ragserve.store.milvus import MilvusStore

    items = [i for f in args.files for i in load_eval_file(f) if i.answer_hint and i.gold_sources]
    store, encoder = MilvusStore.for_app(cfg), Encoder(cfg.embedder.for_queries())
    store.ensure_collection(encoder.dim, encoder.model_name)  # checks it and loads its schema
    retriever = Retriever(local_query_embedder(encoder), store, cfg.retrieval)
    found = [asyncio.run(retriever.search(i.question, cfg.prompt.top_k)) for i in items]
    store.close()

    model_path = resolve_model(cfg.generator, cfg.cache_dir)  # converted once into the cache
    kwargs = engine_kwargs(cfg.generator, model_path)
    llm = LLM(**{k: v for k, v in kwargs.items() if k not in ("disable_log_stats", "served_model_name")})
    tokenizer: Any = llm.get_tokenizer()
    prompt = PromptBuilder(
        tokenizer,
        cfg.prompt.system_prompt,
        cfg.generator.max_model_len,
        remove_instructions=cfg.prompt.remove_instructions,
    )
    built = [
        prompt.build(i.question, f.hits, cfg.generator.sampling.max_tokens)
        for i, f in zip(items, found, strict=True)
    ]
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average": os.getloadavg()[0],
        "questions": len(items),
    }
    for name, update in VARIANTS.items():
        sampling = cfg.generator.sampling.model_copy(update=update)
        params = sampling_params(sampling, seed=0)
        params.output_kind = RequestOutputKind.FINAL_ONLY
        t0 = time.perf_counter()
        outs = llm.generate(
            [TokensPrompt(prompt_token_ids=b.token_ids) for b in built], params, use_tqdm=False
        )
        seconds = time.perf_counter() - t0
        recalls, ceilings = [], []
        for item, b, out in zip(items, built, outs, strict=True):
            facts = key_facts(item.answer_hint, item.question)
            if facts:
                recalls.append(recall(out.outputs[0].text, facts))
                ceilings.append(recall("\n".join(h.chunk for h in b.contexts), facts))
        row = {
            "sampling": sampling.model_dump(),
            "key_fact_recall": round(sum(recalls) / len(recalls), 4),
            "context_ceiling": round(sum(ceilings) / len(ceilings), 4),
            "looping_answers": sum(loops(o.outputs[0].text) for o in outs),
            "completion_tokens_mean": round(sum(len(o.outputs[0].token_ids) for o in outs) / len(outs), 1),
            "seconds": round(seconds, 1),
        }
        report[name] = row
        print(f"{name:26s} {json.dumps({k: v for k, v in row.items() if k != 'sampling'})}", flush=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
