"""``ragserve`` command: ingest, search, query, eval, serve, serve-config, stats, config.

Exit codes: 0 ok; 1 partial (some files could not be ingested); 2 bad input or config; 3 a dependency
(Milvus, or a model that cannot be loaded) failed; 70 an unexpected error (a bug); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ragserve import environment
from ragserve.config import AppConfig, ConfigError, ConversationMethod, load_config
from ragserve.observability.logging import Console, configure_logging
from ragserve.store.filters import DEFAULT_TENANT, Access

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_DEPENDENCY = 0, 1, 2, 3
EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: a crash must not read as "some files skipped" (1)
EXIT_BUSY = 75  # sysexits.h EX_TEMPFAIL: another ingest holds the collection's lease; retrying later works
SHUTDOWN_TIMEOUT_S = 30  # `ragserve serve`: Serve's orderly shutdown before Ray's processes are stopped


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ---- wiring ---------------------------------------------------------------------------------------------
# Commands whose output is all there is (no models, no Milvus): nothing to divert.
PURE_OUTPUT = {"config", "serve-config"}


def prepare_environment(cfg: AppConfig, args: argparse.Namespace) -> Console:
    """Process-wide settings that must precede the first import of transformers / vLLM. Without -v, library
    warnings and engine logs go to <data_dir>/logs/<command>.log; the command's own output to the terminal."""
    environment.apply(cfg)
    log_file = None if args.command in PURE_OUTPUT else cfg.data_dir / "logs" / f"{args.command}.log"
    con = configure_logging(args.verbose, log_file)
    if con.log is not None:
        print(f"engine and library logs: {con.log} (-v shows them here)", file=con.err)
    return con


class ModelLoadError(RuntimeError):
    """A configured model cannot be loaded (not installed, not in the cache, offline)."""


def open_store(cfg: AppConfig):  # -> MilvusStore
    from ragserve.store.milvus import MilvusStore

    return MilvusStore.for_app(cfg)


def open_encoder(cfg: AppConfig):  # -> Encoder
    from ragserve.embedder.encoder import Encoder

    try:
        return Encoder(cfg.embedder)
    except (OSError, ValueError) as err:  # missing files, offline hub, not a sentence-transformers model
        raise ModelLoadError(f"embedder model {cfg.embedder.model!r} cannot be loaded: {err}") from err


class DeferredEncoder:
    """``ingest``'s encoder, loaded at its first use: a wrong path or a folder with no supported files is
    reported in about a second, not after the model load (ten seconds for MiniLM on a laptop CPU)."""

    def __init__(self, cfg: AppConfig):
        self._cfg = cfg
        self._encoder: Any = None
        self.model_name = cfg.embedder.model

    def _loaded(self) -> Any:  # Encoder
        if self._encoder is None:
            self._encoder = open_encoder(self._cfg)
        return self._encoder

    @property
    def dim(self) -> int:
        return int(self._loaded().dim)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._loaded().embed_documents(texts)


def open_search(cfg: AppConfig):  # -> (query embedder, MilvusStore)
    """The embedder and the store of an existing collection, checked against each other."""
    from ragserve.rag import local_query_embedder
    from ragserve.store.milvus import StoreError

    store = open_store(cfg)
    if not store.has_collection():
        raise CliError(
            f"collection {cfg.store.collection!r} does not exist in {cfg.store.uri}: "
            "run `ragserve ingest PATH` first",
            EXIT_USAGE,
        )
    encoder = open_encoder(cfg)
    try:
        store.ensure_collection(encoder.dim, encoder.model_name)
    except StoreError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    return local_query_embedder(encoder), store


def open_reranker(cfg: AppConfig, force: bool = False):  # -> Rerank | None
    """The in-process cross-encoder when reranker.enabled (or ``force``: eval's `rerank` mode)."""
    if not (cfg.reranker.enabled or force):
        return None
    from ragserve.rag import local_reranker
    from ragserve.reranker.scorer import CrossEncoderScorer

    try:
        return local_reranker(CrossEncoderScorer(cfg.reranker, cfg.cache_dir))
    except OSError as err:
        raise ModelLoadError(f"reranker model {cfg.reranker.model!r} cannot be loaded: {err}") from err


def start_generator(cfg: AppConfig):  # -> VLLMGenerator
    """The in-process vLLM engine. Resolving the model (generating or converting it on first use) and
    starting the engine both count as loading it: a missing package or file is exit 3, named."""
    from ragserve.generator.engine import VLLMGenerator

    try:
        generator = VLLMGenerator(cfg.generator, cfg.cache_dir)
        generator.start()
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"generator model {cfg.generator.model!r} cannot be loaded: {err}") from err
    return generator


def open_retriever(cfg: AppConfig, access: Access):  # -> Retriever
    from ragserve.rag import Retriever

    embed_queries, store = open_search(cfg)
    return Retriever(embed_queries, store, cfg.retrieval, open_reranker(cfg), access)


def access_of(args: argparse.Namespace) -> Access:
    """The operator's view of ``--tenant``: every document of that tenant, whatever its groups."""
    from ragserve.store.filters import check_tenant

    try:
        return Access(check_tenant(args.tenant, "--tenant"))
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def groups_of(args: argparse.Namespace) -> tuple[str, ...]:
    """``--groups a,b``: the groups every ingested document gets (none: the whole tenant reads them)."""
    from ragserve.store.filters import check_groups

    try:
        return check_groups((g.strip() for g in (args.groups or "").split(",") if g.strip()), "--groups")
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def _print_json(con: Console, obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False), file=con.out)


# ---- commands -------------------------------------------------------------------------------------------
EVAL_MODES = ("dense", "hybrid", "rerank")
# --compare for conversation items: how the follow-up's query is built (conversation.py), and "standalone":
# each item's own self-contained rewrite, the ceiling the methods are measured against.
CONVERSATION_EVAL = (*get_args(ConversationMethod), "standalone")


def cmd_ingest(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.ingest.pipeline import IngestError, Ingestor, is_object_store, shown
    from ragserve.store.lease import LeaseBusyError, LeaseLostError
    from ragserve.store.milvus import SchemaMismatchError

    progress = None
    bar: Any = None
    if con.err.isatty() and not args.json:
        from tqdm import tqdm

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="chunk", desc="embedding", file=con.err)
            bar.update(done - bar.n)

    from ragserve.observability.tracing import stage, start_cli_tracing

    stop_tracing = start_cli_tracing(cfg, "ingest")  # None unless observability.tracing.enabled
    try:
        with stage("ingest", path=shown(args.path), ray=args.ray is not None):
            if args.ray is not None:
                report = _ingest_on_ray(cfg, args)
            elif is_object_store(args.path):
                raise CliError(
                    f"{shown(args.path)}: object storage is read by `ingest --ray` only", EXIT_USAGE
                )
            else:
                access, groups = access_of(args), groups_of(args)
                store = open_store(cfg)
                try:
                    report = Ingestor(DeferredEncoder(cfg), store, cfg.ingest).run(
                        Path(args.path),
                        base_url=args.base_url,
                        prune=args.prune,
                        rebuild=args.rebuild,
                        progress=progress,
                        tenant=access.tenant,
                        groups=groups,
                    )
                except (IngestError, SchemaMismatchError) as err:
                    raise CliError(str(err), EXIT_USAGE) from None
                except (LeaseBusyError, LeaseLostError) as err:
                    raise CliError(str(err), EXIT_BUSY) from None
                finally:
                    if bar is not None:
                        bar.close()
                    store.close()
    finally:
        if stop_tracing is not None:
            stop_tracing()  # flushes the spans
    if report.rebuild_switch is not None:
        done = report.rebuild_switch
        replaced = f"; the previous {done.previous} ({report.rebuilt_from_chunks} chunks) was dropped"
        print(
            f"rebuild: {cfg.store.collection!r} now names collection {done.collection} (switched in "
            f"{done.switch_s * 1000:.1f} ms){replaced if done.previous else ''}",
            file=con.err,
        )
    for source, reason in report.files_failed:
        print(f"warning: skipped {source}: {reason}", file=con.err)
    if args.json:
        _print_json(con, report.as_dict())
    else:
        print(report.summary(), file=con.out)
    return EXIT_PARTIAL if report.files_failed else EXIT_OK


def _ingest_on_ray(cfg: AppConfig, args: argparse.Namespace):  # -> IngestReport
    """``--ray [ADDRESS]``: the same plan on Ray Data; progress is Ray Data's own (on a terminal)."""
    from ragserve.ingest.distributed import ingest_on_ray
    from ragserve.ingest.pipeline import IngestError
    from ragserve.store.lease import LeaseBusyError, LeaseLostError
    from ragserve.store.milvus import SchemaMismatchError

    try:
        return ingest_on_ray(
            cfg,
            args.path,  # a local path, or an object store URI (s3://bucket/prefix)
            address=args.ray or None,
            base_url=args.base_url,
            prune=args.prune,
            rebuild=args.rebuild,
            show_progress=sys.stderr.isatty() and not args.json,
            tenant=access_of(args).tenant,
            groups=groups_of(args),
        )
    except (IngestError, SchemaMismatchError) as err:
        raise CliError(str(err), EXIT_USAGE) from None
    except (LeaseBusyError, LeaseLostError) as err:
        raise CliError(str(err), EXIT_BUSY) from None


def cmd_search(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.rag import hit_dict
    from ragserve.store.filters import Filter

    where = Filter.of_sources(args.source) if args.source else None
    retriever = open_retriever(cfg, access_of(args))
    result = asyncio.run(retriever.search(args.query, args.top_k or cfg.prompt.top_k, where))
    if args.json:
        _print_json(con, {"hits": [hit_dict(h) for h in result.hits], "timings": result.timings})
        return EXIT_OK
    for rank, hit in enumerate(result.hits, 1):
        preview = " ".join(hit.chunk.split())[:160]
        print(f"{rank:>2}. {hit.score:.4f}  {hit.source}#{hit.chunk_index}  {preview}", file=con.out)
    return EXIT_OK


def cmd_query(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.generator.prompt import PromptTooLongError
    from ragserve.limits import check_question
    from ragserve.rag import RagRequest, build_pipeline, hit_dict

    try:
        check_question(args.question)  # fail before the slow engine start
    except ValueError as err:
        raise CliError(str(err)) from None
    embed_queries, store = open_search(cfg)
    sampling = cfg.generator.sampling
    if args.max_tokens:
        sampling = sampling.model_copy(update={"max_tokens": args.max_tokens})
    generator = start_generator(cfg)
    try:
        pipeline = build_pipeline(
            cfg, embed_queries, store, generator, generator.get_tokenizer(), open_reranker(cfg)
        )
        try:
            request = RagRequest(args.question, sampling, args.top_k, access=access_of(args))
            answer = asyncio.run(pipeline.answer(request))
        except PromptTooLongError as err:
            raise CliError(f"question: {err}") from None
    finally:
        generator.shutdown()
    if args.json:
        _print_json(
            con,
            {
                "answer": answer.answer,
                "sources": [hit_dict(h) for h in answer.sources],
                "usage": answer.usage,
                "timings": answer.timings,
                "finish_reason": answer.finish_reason,
                "contexts_dropped": answer.contexts_dropped,
                "grounded": answer.grounded,
                "model": generator.model_name,
            },
        )
        return EXIT_OK
    print(answer.answer or "(empty answer)", file=con.out)
    print("\nSources:", file=con.out)
    for hit in answer.sources:
        print(f"  {hit.score:.4f}  {hit.source}#{hit.chunk_index}", file=con.out)
    t = answer.timings
    print(
        f"\nembed {t['embed_ms']:.0f} ms, search {t['search_ms']:.0f} ms, prompt {t['prompt_ms']:.0f} ms, "
        f"generate {t['generate_ms']:.0f} ms (ttft {t['ttft_ms']:.0f} ms); tokens {answer.usage}",
        file=con.out,
    )
    return EXIT_OK


def cmd_eval(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.evaluate import EvalFileError, evaluate, load_eval_file

    try:
        items = load_eval_file(Path(args.file))
    except EvalFileError as err:
        raise CliError(str(err)) from None
    if args.answers:
        return _eval_answers(cfg, items, args, con)
    from ragserve.rag import Retriever

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
        _print_json(con, {**main, "mode": modes[0], **({"modes": reports} if args.compare else {})})
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
    from ragserve.rag import RagPipeline, RagRequest, Retriever, build_pipeline

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
                found, _ = await pipeline.retrieve(item.question, req)
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
        _print_json(con, {"k": args.k, "methods": reports})
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
        _print_json(con, report)
        return EXIT_OK
    print("\n".join(format_report(report)), file=con.out)
    return EXIT_OK


def cmd_stats(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.store.milvus import SchemaMismatchError

    store = open_store(cfg)
    try:
        _print_json(con, store.stats(access=access_of(args)))
    except SchemaMismatchError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    finally:
        store.close()
    return EXIT_OK


def cmd_config(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.config import dump_config

    _print_json(con, dump_config(cfg))
    return EXIT_OK


def cmd_serve(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    """Run the Serve application on a local Ray instance and block until Ctrl-C / SIGTERM."""
    import signal
    import threading

    import ray
    from ray import serve

    from ragserve.app import APP_NAME, build_app_from_config, serve_tracing_config

    host = args.host or cfg.router.host
    port = args.port or cfg.router.port
    with environment.ray_node_env_applied():  # the local cluster's processes inherit it
        ray.init(
            num_cpus=args.num_cpus,
            include_dashboard=False,
            log_to_driver=args.verbose,
            _metrics_export_port=args.metrics_port,  # None: Ray picks one; GET /metrics shows it either way
        )
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now, without the orderly shutdown
            raise SystemExit(130)
        print("stopping ragserve (Ctrl-C again to force)", file=con.err, flush=True)
        stop.set()

    # Our own handlers, installed after Ray started: SIGINT may arrive ignored (a parent that started us in
    # the background) or be taken over by a library; either way Ctrl-C must stop the server.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        serve.start(
            http_options={"host": host, "port": port, "request_timeout_s": cfg.router.request_timeout_s},
            tracing_config=serve_tracing_config(cfg),
        )
        serve.run(build_app_from_config(cfg), name=APP_NAME, route_prefix=cfg.router.route_prefix)
        url = f"http://{host}:{port}{cfg.router.route_prefix.rstrip('/')}"
        print(
            f"ragserve is serving on {url} (Ctrl-C stops)",
            file=con.out,
            flush=True,
        )
        if cfg.router.ui:
            print(f"playground: open {url}/ui in a browser (docs/ui.md)", file=con.out, flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        # Bounded: with the cluster already gone (its processes got the terminal's SIGINT too) Serve's
        # shutdown would wait for a controller that is not there.
        closer = threading.Thread(target=serve.shutdown, daemon=True)
        closer.start()
        closer.join(SHUTDOWN_TIMEOUT_S)
        ray.shutdown()  # stops the raylet, GCS and workers this ray.init started
    return EXIT_OK


def cmd_serve_config(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    import yaml

    from ragserve.app import serve_config

    print(yaml.safe_dump(serve_config(cfg), sort_keys=False), end="", file=con.out)
    return EXIT_OK


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML config (default: the local profile)")
    common.add_argument("--profile", choices=["local", "production"], help="defaults to start from")
    common.add_argument("--collection", help="override store.collection (e.g. one collection per corpus)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress and engine output")
    tenancy = argparse.ArgumentParser(add_help=False)
    tenancy.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        help=f"whose documents (default: {DEFAULT_TENANT}); the operator sees all of them, of every group",
    )

    parser = argparse.ArgumentParser(
        prog="ragserve", description="RAG over your documents with Milvus and vLLM."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "ingest", parents=[common, tenancy], help="load, chunk, embed and store documents (idempotent)"
    )
    p.add_argument(
        "path",
        help="a folder (read recursively) or a single file; with --ray also s3://bucket/prefix (pyarrow.fs)",
    )
    p.add_argument("--base-url", help="record sources as BASE_URL/relative/path instead of the relative path")
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete the chunks of files that this PATH (or --base-url) wrote and that are gone; "
        "files that fail to load keep theirs, other roots' and the API's documents are never touched",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="ingest PATH into a new collection and switch the name to it when complete (e.g. to add the "
        "BM25 field); searches keep answering from the current one meanwhile, which is dropped after",
    )
    p.add_argument(
        "--groups",
        metavar="A,B",
        help="only principals in one of these groups may read the documents (default: the whole tenant); "
        "changing them rewrites the documents",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on Ray Data (ingest.ray settings): a new local Ray without ADDRESS, else 'auto' or "
        "ray://head:10001; give it after PATH",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", parents=[common, tenancy], help="retrieve the top-k chunks for a query")
    p.add_argument("query")
    p.add_argument("--top-k", type=_positive, help="number of chunks (default: prompt.top_k)")
    p.add_argument("--source", action="append", help="restrict to this source (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("query", parents=[common, tenancy], help="answer a question from the documents")
    p.add_argument("question")
    p.add_argument("--top-k", type=_positive)
    p.add_argument("--max-tokens", type=_positive, help="override generator.sampling.max_tokens")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "eval",
        parents=[common, tenancy],
        help="retrieval quality (recall@k, MRR) or, with --answers, answer quality on a JSONL question set",
    )
    p.add_argument("file")
    p.add_argument("--k", type=_positive, default=5, help="chunks retrieved per question")
    p.add_argument("--json", action="store_true")
    p.add_argument("--details", action="store_true", help="with --json, include per-question results")
    p.add_argument(
        "--answers",
        action="store_true",
        help="generate every answer and score its key facts against answer_hint, beside the retrieved "
        "context's (ceiling) and a closed-book answer's; citations, abstention, latency, tokens",
    )
    p.add_argument("--no-closed-book", action="store_true", help="with --answers, skip the closed-book pass")
    p.add_argument(
        "--compare",
        metavar="MODES",
        help="score several retrieval modes on the same collection, e.g. dense,hybrid,rerank (rerank: "
        "retrieval.mode reordered by reranker.model); JSON: `modes`",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "serve", parents=[common], help="run the HTTP API on Ray Serve (local Ray) until Ctrl-C"
    )
    p.add_argument("--host", help="bind address (default: router.host, 127.0.0.1)")
    p.add_argument("--port", type=_positive, help="port (default: router.port, 8000)")
    p.add_argument(
        "--num-cpus",
        type=_positive,
        default=8,
        help="logical CPUs Ray may schedule (over-count on small machines)",
    )
    p.add_argument(
        "--metrics-port",
        type=_positive,
        help="fixed port for Ray's metrics agent, for a local Prometheus (default: Ray picks one)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("serve-config", parents=[common], help="print the Serve config (serveConfigV2) YAML")
    p.set_defaults(func=cmd_serve_config)

    p = sub.add_parser("stats", parents=[common, tenancy], help="collection size (chunks, documents)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("config", parents=[common], help="print the resolved configuration (secrets masked)")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {"store": {"collection": args.collection}} if args.collection else None
        cfg = load_config(args.config, profile=args.profile, overrides=overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    con = prepare_environment(cfg, args)
    from ragserve.store.milvus import StoreError

    try:
        return int(args.func(cfg, args, con))
    except CliError as err:
        print(f"error: {err}", file=con.err)
        return err.code
    except StoreError as err:
        print(f"error: Milvus: {err}", file=con.err)
        return EXIT_DEPENDENCY
    except ModelLoadError as err:
        print(f"error: {err}", file=con.err)
        return EXIT_DEPENDENCY
    except ValueError as err:
        print(f"error: {err}", file=con.err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=con.err)
        return 130
    except Exception as err:
        if con.log is None:  # nothing diverted: the traceback on the terminal
            traceback.print_exc(file=con.err)
            return EXIT_SOFTWARE
        logging.getLogger("ragserve.cli").exception("%s failed", args.command)  # the traceback: in the log
        print(f"error: {type(err).__name__}: {err} (traceback in {con.log})", file=con.err)
        return EXIT_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
