"""The local commands other than ``eval`` (evaluation.py) and ``serve`` (local_ray.py): ingest, search,
query, stats, config, serve-config, each run in this process on the parts ``wiring`` opens."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragserve.cli.errors import EXIT_BUSY, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CliError
from ragserve.cli.output import print_answer, print_hits, print_json
from ragserve.cli.wiring import (
    DeferredEncoder,
    access_of,
    groups_of,
    open_reranker,
    open_search,
    open_store,
    start_generator,
)
from ragserve.observability.logging import Console

if TYPE_CHECKING:
    from ragserve.config import AppConfig


def cmd_ingest(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.ingest.pipeline import Ingestor
    from ragserve.ingest.sources import IngestError, is_object_store, shown
    from ragserve.store.lease import LeaseBusyError, LeaseLostError
    from ragserve.store.schema import SchemaMismatchError

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
        print_json(con, report.as_dict())
    else:
        print(report.summary(), file=con.out)
    return EXIT_PARTIAL if report.files_failed else EXIT_OK


def _ingest_on_ray(cfg: AppConfig, args: argparse.Namespace):  # -> IngestReport
    """``--ray [ADDRESS]``: the same plan on Ray Data; progress is Ray Data's own (on a terminal)."""
    from ragserve.ingest.distributed import ingest_on_ray
    from ragserve.ingest.sources import IngestError
    from ragserve.store.lease import LeaseBusyError, LeaseLostError
    from ragserve.store.schema import SchemaMismatchError

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
    from ragserve.retrieval import Retriever, Search, hit_dict, resolve_top_k
    from ragserve.store.filters import Filter

    access = access_of(args)
    where = Filter.of_sources(args.source) if args.source else None
    top_k = resolve_top_k(args.top_k, cfg.prompt.top_k)
    search = Search.checked(args.query, top_k, where, access=access)  # bad input fails before any model loads
    embed_queries, store = open_search(cfg)
    retriever = Retriever(embed_queries, store, cfg.retrieval, open_reranker(cfg), access)
    result = asyncio.run(retriever.run(search))
    hits = [hit_dict(h) for h in result.hits]
    if args.json:
        print_json(con, {"hits": hits, "timings": result.timings})
    else:
        print_hits(con, hits)
    return EXIT_OK


def cmd_query(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.generator.prompt import PromptTooLongError
    from ragserve.rag import RagRequest, build_pipeline
    from ragserve.retrieval import hit_dict, resolve_top_k

    access = access_of(args)
    sampling = cfg.generator.sampling
    if args.max_tokens:
        sampling = sampling.model_copy(update={"max_tokens": args.max_tokens})
    top_k = resolve_top_k(args.top_k, cfg.prompt.top_k)
    # Checked here, before the slow engine start (ValueError naming the field: exit 2).
    request = RagRequest(args.question, sampling, top_k, access=access)
    embed_queries, store = open_search(cfg)
    generator = start_generator(cfg)
    try:
        pipeline = build_pipeline(
            cfg, embed_queries, store, generator, generator.get_tokenizer(), open_reranker(cfg)
        )
        try:
            answer = asyncio.run(pipeline.answer(request))
        except PromptTooLongError as err:
            raise CliError(f"question: {err}") from None
    finally:
        generator.shutdown()
    body = {
        "answer": answer.answer,
        "sources": [hit_dict(h) for h in answer.sources],
        "usage": answer.usage,
        "timings": answer.timings,
        "finish_reason": answer.finish_reason,
        "contexts_dropped": answer.contexts_dropped,
        "grounded": answer.grounded,
        "model": generator.model_name,
    }
    if args.json:
        print_json(con, body)
    else:
        print_answer(con, body)
    return EXIT_OK


def cmd_stats(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.store.schema import SchemaMismatchError

    access = access_of(args)
    store = open_store(cfg)
    try:
        print_json(con, store.stats(access=access))
    except SchemaMismatchError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    finally:
        store.close()
    return EXIT_OK


def cmd_config(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    from ragserve.config import dump_config

    print_json(con, dump_config(cfg))
    return EXIT_OK


def cmd_serve_config(cfg: AppConfig, args: argparse.Namespace, con: Console) -> int:
    import yaml

    from ragserve.app import serve_config

    print(yaml.safe_dump(serve_config(cfg), sort_keys=False), end="", file=con.out)
    return EXIT_OK
