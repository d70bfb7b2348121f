"""The ``ragserve`` argument parser: every command's flags, checked by argparse (a bad one exits 2)."""

from __future__ import annotations

import argparse

from ragserve.store.filters import DEFAULT_TENANT

API_KEY_ENV = "RAGSERVE_API_KEY"  # the key `--url` sends when --api-key is not given


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
    # Checked where profiles are known (ragserve.config: unknown profile -> exit 2 naming them), not here.
    common.add_argument("--profile", help="defaults to start from: a profile of services/ragserve/profiles/")
    common.add_argument("--collection", help="override store.collection (e.g. one collection per corpus)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress and engine output")
    tenancy = argparse.ArgumentParser(add_help=False)
    tenancy.add_argument(
        "--tenant",
        help=f"whose documents (default: {DEFAULT_TENANT}); the operator sees all of them, of every group",
    )
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--url",
        metavar="URL",
        help="send the request to a running `ragserve serve` (e.g. http://127.0.0.1:8000) over its HTTP "
        "API instead of loading the models here; the server's configuration and key decide the rest",
    )
    remote.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"with --url: the API key or token sent as a bearer token (default: ${API_KEY_ENV})",
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

    p = sub.add_parser(
        "search", parents=[common, tenancy, remote], help="retrieve the top-k chunks for a query"
    )
    p.add_argument("query")
    p.add_argument("--top-k", type=_positive, help="number of chunks (default: prompt.top_k)")
    p.add_argument("--source", action="append", help="restrict to this source (repeatable)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "query", parents=[common, tenancy, remote], help="answer a question from the documents"
    )
    p.add_argument("question")
    p.add_argument("--top-k", type=_positive)
    p.add_argument("--max-tokens", type=_positive, help="override generator.sampling.max_tokens")
    p.add_argument("--json", action="store_true")

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

    p = sub.add_parser("serve-config", parents=[common], help="print the Serve config (serveConfigV2) YAML")

    p = sub.add_parser("stats", parents=[common, tenancy, remote], help="collection size (chunks, documents)")

    p = sub.add_parser("config", parents=[common], help="print the resolved configuration (secrets masked)")
    return parser
