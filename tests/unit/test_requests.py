"""Input is checked once, where it enters (HTTP, CLI, eval), into a typed request the pipeline trusts
(issue 28 item 3): a bad field is a 422 or exit 2 naming it, before any model, store or engine is touched."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragserve import cli
from ragserve.cli import commands, dispatch
from ragserve.config import SamplingConfig, load_config
from ragserve.limits import MAX_QUESTION_CHARS, MAX_TOP_K
from ragserve.observability.logging import Console
from ragserve.rag import RagPipeline, RagRequest
from ragserve.retrieval import Search, SearchResult, resolve_top_k
from ragserve.router.api import create_api
from ragserve.router.guard import GuardSettings
from ragserve.router.models import QueryRequest
from ragserve.router.service import RagService
from ragserve.store.filters import Filter


def test_a_rag_request_checks_itself_when_built_and_keeps_the_question_stripped() -> None:
    assert RagRequest("  What is HNSW?\n", SamplingConfig()).question == "What is HNSW?"
    with pytest.raises(ValueError, match=r"^question: must not be empty"):
        RagRequest(" \n\t ", SamplingConfig())
    with pytest.raises(ValueError, match=f"^question: at most {MAX_QUESTION_CHARS} characters"):
        RagRequest("x" * (MAX_QUESTION_CHARS + 1), SamplingConfig())
    for bad in (0, MAX_TOP_K + 1):
        with pytest.raises(ValueError, match=f"^top_k: must be between 1 and {MAX_TOP_K}"):
            RagRequest("q", SamplingConfig(), bad)
    with pytest.raises(ValueError, match=r"^top_k: must be between 1 and 50 \(got 51\)"):
        RagRequest("q", SamplingConfig(), 51, max_top_k=50)  # the HTTP edge's router.max_top_k


def test_a_search_from_client_input_is_checked_and_names_the_query() -> None:
    assert Search.checked(" hnsw ", 3).query == "hnsw"
    with pytest.raises(ValueError, match=r"^query: must not be empty"):
        Search.checked("   ", 3)
    with pytest.raises(ValueError, match=r"^top_k: must be between 1 and 10"):
        Search.checked("q", 11, max_top_k=10)


def test_the_default_top_k_is_the_configured_one_only_when_none_is_asked() -> None:
    assert resolve_top_k(None, 5) == 5 and resolve_top_k(2, 5) == 2
    with pytest.raises(ValueError, match=r"^top_k"):  # 0 is asked for, not "the default"
        RagRequest("q", SamplingConfig(), resolve_top_k(0, 5))


def test_an_http_filter_is_built_once_when_the_body_is_read() -> None:
    body = QueryRequest.model_validate({"question": "q", "filter": {"sources": ["a.md"]}})
    assert body.filter is not None
    built = body.filter.to_store()
    assert built == Filter(("a.md",)) and body.filter.to_store() is built


class Untouchable:
    """A retriever that fails the test if a request reaches it (bad input must stop at the edge)."""

    cfg = load_config().retrieval
    store = None

    def __init__(self) -> None:
        self.searched: list[Search] = []

    async def run(self, search: Search) -> SearchResult:
        self.searched.append(search)
        return SearchResult([], {})


@pytest.fixture
def api() -> tuple[TestClient, Untouchable]:
    cfg = load_config(overrides={"router": {"max_top_k": 50}})
    retriever = Untouchable()
    pipeline = RagPipeline(retriever, None, None, cfg.prompt.top_k, "")  # type: ignore[arg-type]
    service = RagService(cfg, pipeline, None)  # type: ignore[arg-type]
    return TestClient(create_api(service, GuardSettings(), 5.0, lambda: "")), retriever


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/v1/query", {"question": " \n "}, "question", "question: must not be empty"),
        ("/v1/query", {"question": "q", "top_k": 51}, "top_k", "top_k: must be between 1 and 50 (got 51)"),
        ("/v1/search", {"query": "\t"}, "query", "query: must not be empty"),
        ("/v1/search", {"query": "q", "top_k": 51}, "top_k", "top_k: must be between 1 and 50 (got 51)"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x" * (MAX_QUESTION_CHARS + 1)}]},
            "question",
            f"question: at most {MAX_QUESTION_CHARS} characters (got {MAX_QUESTION_CHARS + 1})",
        ),
    ],
)
def test_bad_input_is_a_422_naming_the_field_before_retrieval(
    api: tuple[TestClient, Untouchable], path: str, body: dict[str, Any], field: str, message: str
) -> None:
    client, retriever = api
    r = client.post(path, json=body)
    assert r.status_code == 422
    assert r.json() == {"error": {"type": "invalid_request_error", "message": message, "field": field}}
    assert retriever.searched == []


def test_a_search_reaches_the_retriever_resolved_and_stripped(api: tuple[TestClient, Untouchable]) -> None:
    client, retriever = api
    body = {"query": " hnsw ", "filter": {"source_prefix": "reference/"}}
    assert client.post("/v1/search", json=body).status_code == 200
    (search,) = retriever.searched
    assert (search.query, search.top_k) == ("hnsw", load_config().prompt.top_k)  # prompt.top_k
    assert search.where == Filter(source_prefix="reference/")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", "   "], "question: must not be empty"),
        (["search", " \n "], "query: must not be empty"),
        (["search", "q", "--top-k", str(MAX_TOP_K + 1)], f"top_k: must be between 1 and {MAX_TOP_K}"),
    ],
)
def test_the_cli_refuses_bad_input_with_exit_2_before_opening_anything(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("bad input reached the store or the models")

    monkeypatch.setenv("RAGSERVE_HOME", str(tmp_path))
    monkeypatch.setattr(dispatch, "prepare_environment", lambda cfg, args: Console(sys.stdout, sys.stderr))
    for name in ("open_search", "start_generator", "open_reranker"):
        monkeypatch.setattr(commands, name, never)
    assert cli.main(argv) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
