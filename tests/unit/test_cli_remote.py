"""``ragserve search|query|stats --url``: the flags it takes and refuses, the request it sends, what it
prints, and how the server's errors become exit codes. The server is a real HTTP server (the stdlib's) that
answers what each test scripts: the injected faults."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragserve import cli
from ragserve.cli.output import print_hits
from ragserve.config import load_config
from ragserve.observability.logging import Console

HIT = {
    "source": "reference/index.md",
    "title": "Index",
    "chunk_index": 40,
    "score": 0.0313,
    "chunk": "HNSW  M\nef",
}
ANSWER = {
    "answer": "M is the maximum degree [1].",
    "sources": [HIT],
    "usage": {"prompt_tokens": 300, "completion_tokens": 9, "total_tokens": 309},
    "timings": {"embed_ms": 8.0, "search_ms": 20.0, "prompt_ms": 1.0, "generate_ms": 700.0, "ttft_ms": 90.0},
    "model": "smollm2",
    "finish_reason": "stop",
    "grounded": True,
}


class Scripted(ThreadingHTTPServer):
    """Answers every request with ``reply`` (status, body bytes) and records what it received."""

    reply: tuple[int, bytes] = (200, b"{}")
    seen: list[dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
        )
        status, payload = self.server.reply
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    httpd = Scripted(("127.0.0.1", 0), Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def url_of(httpd: Scripted) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/"  # a trailing slash is fine


def error(status: int, message: str, field: str | None = None) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"type": "x", "message": message, "field": field}}).encode()


def test_search_sends_the_query_and_prints_the_local_commands_lines(
    server: Scripted, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGSERVE_API_KEY", "from-env")
    server.reply = (200, json.dumps({"hits": [HIT], "timings": {"search_ms": 3.0}}).encode())
    argv = ["search", "what is M?", "--url", url_of(server), "--top-k", "2", "--source", "reference/index.md"]
    assert cli.main(argv) == cli.EXIT_OK
    assert server.seen == [
        {
            "method": "POST",
            "path": "/v1/search",
            "auth": "Bearer from-env",
            "body": {"query": "what is M?", "top_k": 2, "filter": {"sources": ["reference/index.md"]}},
        }
    ]
    printed = capsys.readouterr().out
    assert printed == " 1. 0.0313  reference/index.md#40  HNSW M ef\n"
    local = Console(sys.stdout, sys.stderr)  # the local command prints through the same function
    print_hits(local, [HIT])
    assert capsys.readouterr().out == printed

    assert cli.main(["search", "q", "--url", url_of(server), "--json", "--api-key", "flag-wins"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"] == [HIT]
    assert server.seen[-1]["auth"] == "Bearer flag-wins"
    assert server.seen[-1]["body"] == {"query": "q", "top_k": None}  # the server's default top_k


def test_query_and_stats(
    server: Scripted, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGSERVE_API_KEY", raising=False)
    server.reply = (200, json.dumps(ANSWER).encode())
    assert cli.main(["query", "what is M?", "--url", url_of(server), "--max-tokens", "16"]) == 0
    assert server.seen[-1]["body"] == {
        "question": "what is M?",
        "top_k": None,
        "sampling": {"max_tokens": 16},
    }
    assert server.seen[-1]["auth"] is None  # no key anywhere: none sent
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ANSWER["answer"] and "  0.0313  reference/index.md#40" in out
    assert out[-1].startswith("embed 8 ms, search 20 ms, prompt 1 ms, generate 700 ms (ttft 90 ms); tokens {")

    server.reply = (200, b'{"chunks": 1244, "documents": 53}')
    assert cli.main(["stats", "--url", url_of(server)]) == 0
    assert server.seen[-1]["method"] == "GET" and server.seen[-1]["path"] == "/v1/collections/stats"
    assert json.loads(capsys.readouterr().out) == {"chunks": 1244, "documents": 53}


@pytest.mark.parametrize(
    ("reply", "code", "said"),
    [
        (error(422, "must be at most 100", "top_k"), cli.EXIT_USAGE, "HTTP 422: top_k: must be at most 100"),
        (error(401, "a valid API key or token is required"), cli.EXIT_USAGE, "HTTP 401: a valid API key"),
        (error(403, "scope admin required"), cli.EXIT_USAGE, "HTTP 403: scope admin required"),
        (error(429, "overloaded, retry"), cli.EXIT_BUSY, "HTTP 429: overloaded, retry"),
        (error(503, "Milvus is unavailable"), cli.EXIT_DEPENDENCY, "HTTP 503: Milvus is unavailable"),
        (error(504, "timed out after 60 s"), cli.EXIT_DEPENDENCY, "HTTP 504: timed out after 60 s"),
        ((502, b"<html>Bad Gateway</html>"), cli.EXIT_DEPENDENCY, "HTTP 502: <html>Bad Gateway</html>"),
        ((200, b"not json"), cli.EXIT_DEPENDENCY, "the response is not JSON"),
    ],
    ids=["422", "401", "403", "429", "503", "504", "502-html", "200-not-json"],
)
def test_server_errors_map_to_exit_codes_with_the_servers_message(
    server: Scripted, capsys: pytest.CaptureFixture[str], reply: tuple[int, bytes], code: int, said: str
) -> None:
    server.reply = reply
    for argv in (["search", "q"], ["query", "q"], ["stats"]):
        assert cli.main([*argv, "--url", url_of(server)]) == code
        err = capsys.readouterr().err
        assert err.startswith(f"error: {url_of(server).rstrip('/')}/v1/") and said in err, err


def test_an_unreachable_server_is_a_dependency_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    assert cli.main(["search", "q", "--url", f"http://127.0.0.1:{port}"]) == cli.EXIT_DEPENDENCY
    assert "cannot reach the server" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["search", "q", "--url", "127.0.0.1:8000"], "--url: expected http://HOST:PORT"),
        (["query", "q", "--url", "http://"], "--url: expected http://HOST:PORT"),
        (["search", "q", "--api-key", "k"], "--api-key: only used with --url"),
        (["stats", "--url", "http://h", "--collection", "c"], "--collection: not used with --url"),
        (["search", "q", "--url", "http://h", "--tenant", "acme"], "--tenant: not used with --url"),
        (["query", "q", "--url", "http://h", "--config", "f.yaml"], "--config: not used with --url"),
        (["search", "q", "--url", "http://h", "--profile", "local"], "--profile: not used with --url"),
    ],
)
def test_flags_that_do_not_apply_to_url_are_refused(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert said in capsys.readouterr().err


def test_url_imports_none_of_the_model_or_milvus_stack(server: Scripted) -> None:
    """What `python -X importtime` lists for `ragserve search --url` (a fresh interpreter)."""
    server.reply = (200, json.dumps({"hits": [HIT], "timings": {}}).encode())
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ragserve.cli", "search", "q", "--url", url_of(server)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "reference/index.md#40" in run.stdout, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "import time:" in line}
    assert "json" in imported and "ragserve.cli.remote" in imported  # the listing is what was imported
    heavy = {"torch", "sentence_transformers", "transformers", "pymilvus", "ray", "vllm", "onnxruntime"}
    assert heavy.isdisjoint(imported)
    assert not {"ragserve.config", "ragserve.rag", "ragserve.cli.commands"} & imported


def test_questions_run_on_the_query_backend_and_documents_on_the_backend() -> None:
    e = load_config(env={}).embedder
    assert (e.backend, e.query_backend, e.device) == ("torch", "onnx", "cpu")  # the local profile
    assert e.for_queries().backend == "onnx" and e.for_queries().model == e.model
    assert e.for_queries().export_dir == e.export_dir
    for same in ({"query_backend": None}, {"query_backend": "torch"}):
        assert e.model_copy(update=same).for_queries().backend == "torch"
    with pytest.raises(ValueError, match="query_backend 'onnx' runs on the CPU"):
        load_config(env={}, overrides={"embedder": {"device": "cuda"}})
    assert load_config(env={}, overrides={"embedder": {"device": "cuda", "query_backend": None}})
