"""``ragserve eval``: retrieval quality per mode, conversation methods, or answer quality (``--answers``)
on a JSONL question set, in this process."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ragserve.cli.errors import EXIT_OK, CliError
from ragserve.cli.output import print_json
from ragserve.cli.wiring import access_of, open_reranker, open_search, start_generator
from ragserve.config import ConversationMethod
from ragserve.observability.logging import Console

if TYPE_CHECKING:
    from ragserve.config import AppConfig

EVAL_MODES = ("dense", "hybrid", "rerank")
# --compare for conversation items: how the follow-up's query is built (conversation.py), and "standalone":
# each item's own self-contained rewrite, the ceiling the methods are measured against.
CONVERSATION_EVAL = (*get_args(ConversationMethod), "standalone")


def cmd_eval(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.evaluate import EvalFileError, evaluate, load_eval_file

    try:
        items = load_eval_file(Path(args.file))
    except EvalFileError as err:
        raise CliError(str(err)) from None
    if args.answers:
        return _eval_answers(cfg, items, args, con)
    from ragserve.retrieval import Retriever

    default = "rerank" if cfg.reranker.enabled else cfg.retrieval.mode
    modes = [m.strip() for m in (args.compare or default).split(",") if m.strip()]
    if any(m in CONVERSATION_EVAL for m in modes):
        return _eval_conversations(cfg, items, modes, args, con)
    unknown = [m for m in modes if m not in EVAL_MODES]
    if unknown:
        raise CliError(
            f"--compare: unknown retrieval mode(s) {', '.join(unknown)}; use {', '.join(EVAL_MODES)}, or "
            f"conversation methods {', '.join(CONVERSATION_EVAL)}"
        )
    embed_queries, store = open_search(cfg)
    rerank = open_reranker(cfg, force=True) if "rerank" in modes else None
    reports = {}
    for mode in modes:  # every mode on the same collection and questions
        # rerank: retrieval.mode's candidates, reordered by the cross-encoder (reranker.model)
        search_mode = cfg.retrieval.mode if mode == "rerank" else mode
        retriever = Retriever(
            embed_queries,
            store,
            cfg.retrieval.model_copy(update={"mode": search_mode}),
            rerank if mode == "rerank" else None,
            access_of(args),
        )
        reports[mode] = asyncio.run(evaluate(retriever, items, args.k)).as_dict()
        if not args.details:
            reports[mode].pop("per_question")
    main = reports[modes[0]]
    if args.json:
        print_json(con, {**main, "mode": modes[0], **({"modes": reports} if args.compare else {})})
        return EXIT_OK
    for mode, r in reports.items():
        a = r["abstention"]
        print(
            f"{mode:>6}: k={r['k']} n={r['n']}: recall@{r['k']} {r['recall_at_k']:.3f}, hit rate@{r['k']} "
            f"{r['hit_rate_at_k']:.3f}, MRR {r['mrr']:.3f}, nDCG@{r['k']} {r['ndcg_at_k']:.3f}; search p50 "
            f"{r['latency_ms']['p50']:.1f} ms; abstained {a['unanswerable_abstained']}/{a['unanswerable']} "
            f"unanswerable, {a['answerable_abstained']} answerable",
            file=con.out,
        )
    if main["no_gold_sources"]:
        print(
            f"scored for abstention only (no gold sources): {', '.join(main['no_gold_sources'])}",
            file=con.out,
        )
    return EXIT_OK


def _eval_conversations(
    cfg: AppConfig, items: Sequence[Any], methods: list[str], args: argparse.Namespace, con: Console
) -> int:
    """``eval --compare last,append,fused,rewrite,standalone``: each item's follow-up retrieved the way each
    method builds its query, on the same collection and retrieval mode; added latency against ``last``."""
    from typing import cast

    from ragserve.evaluate import EvalItem, evaluate
    from ragserve.rag import RagPipeline, RagRequest, build_pipeline
    from ragserve.retrieval import Retriever

    unknown = [m for m in methods if m not in CONVERSATION_EVAL]
    if unknown:
        raise CliError(f"--compare: mix no retrieval modes into conversation methods ({', '.join(unknown)})")
    embed_queries, store = open_search(cfg)
    generator = start_generator(cfg) if "rewrite" in methods else None
    try:
        if generator is not None:
            pipeline = build_pipeline(
                cfg,
                embed_queries,
                store,
                generator,
                generator.get_tokenizer(),
                open_reranker(cfg),
                access_of(args),
            )
        else:  # no method but rewrite calls the generator or the prompt builder
            retriever = Retriever(embed_queries, store, cfg.retrieval, open_reranker(cfg), access_of(args))
            pipeline = RagPipeline(retriever, cast(Any, None), cast(Any, None), args.k, "")
        reports = {}
        for method in methods:

            async def search(item: EvalItem, method: str = method) -> Any:
                if method == "standalone":
                    return await pipeline.retriever.search(item.standalone or item.question, args.k)
                req = RagRequest(
                    item.question,
                    cfg.generator.sampling,
                    args.k,
                    turns=item.turns,
                    conversation=cast(Any, method),
                )
                found, _ = await pipeline.retrieve(req)
                return found

            reports[method] = asyncio.run(evaluate(pipeline.retriever, items, args.k, search)).as_dict()
            if not args.details:
                reports[method].pop("per_question")
    finally:
        if generator is not None:
            generator.shutdown()
    base = reports.get("last", {}).get("latency_ms", {}).get("p50")
    for r in reports.values():
        r["added_latency_p50_ms"] = round(r["latency_ms"]["p50"] - base, 2) if base is not None else None
    if args.json:
        print_json(con, {"k": args.k, "methods": reports})
        return EXIT_OK
    for method, r in reports.items():
        kinds = ", ".join(f"{kind} {v['hit_rate_at_k']:.2f}" for kind, v in r["per_kind"].items())
        print(
            f"{method:>10}: n={r['n']} hit rate@{r['k']} {r['hit_rate_at_k']:.3f}, MRR {r['mrr']:.3f}, "
            f"recall@{r['k']} {r['recall_at_k']:.3f}; p50 {r['latency_ms']['p50']:.1f} ms; per kind: {kinds}",
            file=con.out,
        )
    return EXIT_OK


def _eval_answers(cfg: AppConfig, items: Sequence[Any], args: argparse.Namespace, con: Console) -> int:
    """``eval --answers``: every question answered end to end (and closed-book), scored against its
    ``answer_hint`` (ragserve/answer_eval.py defines the figures)."""
    from ragserve.answer_eval import CLOSED_BOOK_PROMPT, evaluate_answers, format_report
    from ragserve.rag import build_pipeline

    embed_queries, store = open_search(cfg)
    generator = start_generator(cfg)
    try:
        tokenizer = generator.get_tokenizer()
        pipeline = build_pipeline(cfg, embed_queries, store, generator, tokenizer, open_reranker(cfg))
        closed_book = None if args.no_closed_book else CLOSED_BOOK_PROMPT
        report = asyncio.run(
            evaluate_answers(
                pipeline, generator, tokenizer, items, cfg.generator.sampling, args.k, closed_book
            )
        )
    finally:
        generator.shutdown()
    report["model"] = generator.model_name
    if args.json:
        if not args.details:
            report.pop("per_question")
        print_json(con, report)
        return EXIT_OK
    print("\n".join(format_report(report)), file=con.out)
    return EXIT_OK
