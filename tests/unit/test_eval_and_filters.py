import json
import math
from pathlib import Path

import pytest

from ragserve.evaluate import EvalFileError, load_eval_file, matches, score_ranking
from ragserve.store import filters


def test_gold_matching_accepts_suffixes_only_on_path_boundaries() -> None:
    assert matches("reference/index.md", "reference/index.md")
    assert matches("https://milvus.io/docs/reference/index.md", "reference/index.md")
    assert not matches("reference/disk_index.md", "index.md")


def test_score_ranking() -> None:
    recall, hit, rr = score_ranking(["x.md", "a.md", "x.md", "b.md"], ["a.md", "b.md", "c.md"])
    assert recall == pytest.approx(2 / 3) and hit and rr == 0.5
    assert score_ranking(["x.md"], ["a.md"]) == (0.0, False, 0.0)


def test_eval_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"id": "1", "question": "q", "gold_sources": ["a.md"]}) + "\n{broken\n")
    with pytest.raises(EvalFileError, match=r"e\.jsonl:2"):
        load_eval_file(path)
    path.write_text(json.dumps({"id": "1", "question": "", "gold_sources": []}) + "\n")
    with pytest.raises(EvalFileError, match="question"):
        load_eval_file(path)
    with pytest.raises(EvalFileError, match="not found"):
        load_eval_file(tmp_path / "missing.jsonl")


def test_conversation_items_give_their_follow_up_turns_and_standalone(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    item = {
        "id": "c-1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "How do I enable mmap?"},
            {"role": "assistant", "content": "Set mmap.enabled."},
            {"role": "user", "content": "and for one field?"},
        ],
        "gold_sources": ["a.md"],
        "standalone": "How do I enable mmap for one field?",
        "kind": "ellipsis",
        "notes": "unknown fields are ignored",
    }
    path.write_text(json.dumps(item) + "\n" + json.dumps({"id": "q", "question": "plain?"}) + "\n")
    follow_up, plain = load_eval_file(path)
    assert follow_up.question == "and for one field?" and follow_up.standalone == item["standalone"]
    assert [t["role"] for t in follow_up.turns] == ["user", "assistant"]  # the system line is not a turn
    assert plain.turns == () and plain.standalone == ""
    path.write_text(json.dumps({**item, "messages": item["messages"][:3]}) + "\n")
    with pytest.raises(EvalFileError, match=r"c\.jsonl:1: the last of 'messages' must be the user's"):
        load_eval_file(path)


def test_filter_values_are_quoted_not_injected() -> None:
    expr = filters.compile_filter(filters.Filter(('a.md" or source != "',)))
    assert expr == '(source in ["a.md\\" or source != \\""])'
    assert filters.stale_chunks("a\\b.md", "h") == 'source == "a\\\\b.md" and doc_hash != "h"'
    with pytest.raises(ValueError, match="sources: control"):
        filters.Filter(("a\nb",))
    with pytest.raises(ValueError, match="source_prefix: control"):
        filters.Filter(source_prefix="docs\x00")
    with pytest.raises(ValueError, match="at least one"):
        filters.Filter.of_sources([])


def test_filters_compile_to_one_expression_with_like_escaped() -> None:
    both = filters.Filter(("a.md", "b.md"), source_prefix="user_guide/50%")
    # LIKE escapes (\\% \\_) inside a quoted literal: the expression text holds two backslashes each.
    assert (
        filters.compile_filter(both)
        == '(source in ["a.md", "b.md"]) and (source like "user\\\\_guide/50\\\\%%")'
    )
    with pytest.raises(ValueError, match="source_prefix: backslashes"):
        filters.Filter(source_prefix="docs\\windows")
    assert filters.compile_filter(None) == "" and filters.compile_filter(filters.Filter()) == ""
    with pytest.raises(ValueError, match="at most 100"):
        filters.Filter(tuple(f"s{i}" for i in range(101)))


def test_ndcg_credits_each_gold_source_once_at_its_first_rank() -> None:
    from ragserve.evaluate import ndcg

    assert ndcg(["a.md", "b.md"], ["a.md", "b.md"]) == pytest.approx(1.0)
    assert ndcg(["x.md", "a.md"], ["a.md"]) == pytest.approx(1 / math.log2(3))
    # a second chunk of the same gold page earns nothing: ideal is one hit at rank 1
    assert ndcg(["a.md", "a.md", "x.md"], ["a.md"]) == pytest.approx(1.0)
    two_gold_one_found = (1 / math.log2(2)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert ndcg(["docs/a.md", "x.md"], ["a.md", "b.md"]) == pytest.approx(two_gold_one_found)
    assert ndcg(["x.md"], ["a.md"]) == 0.0


def test_evaluate_scores_kinds_and_abstention() -> None:
    import asyncio

    from ragserve.config import RetrievalConfig
    from ragserve.evaluate import EvalItem, evaluate
    from ragserve.retrieval import SearchResult
    from ragserve.store.milvus import Hit

    class Ranked:
        """A retriever whose rankings are given: the scoring is under test, not the search."""

        cfg = RetrievalConfig(min_relevance=0.5)

        def __init__(self, rankings: dict[str, list[tuple[str, float]]]):
            self.rankings = rankings

        async def search(self, question: str, top_k: int) -> SearchResult:
            hits = [Hit(str(i), s, src, "t", "c", 0, s) for i, (src, s) in enumerate(self.rankings[question])]
            return SearchResult(hits[:top_k], {}, max(h.similarity for h in hits))

        def covers(self, query: str, result: SearchResult) -> bool:
            return result.best_similarity >= 0.5

    retriever = Ranked(
        {
            "q1": [("a.md", 0.9), ("b.md", 0.8)],
            "q2": [("x.md", 0.7), ("c.md", 0.6)],
            "q3": [("a.md", 0.4)],  # answerable, but below the threshold: abstained (counted)
            "off": [("a.md", 0.2)],  # unanswerable and abstained
            "near": [("a.md", 0.55)],  # unanswerable but answered
        }
    )
    items = [
        EvalItem("1", "q1", ["a.md"], "factual"),
        EvalItem("2", "q2", ["c.md", "d.md"], "howto"),
        EvalItem("3", "q3", ["a.md"], "howto"),
        EvalItem("4", "off", [], "unanswerable"),
        EvalItem("5", "near", [], "unanswerable"),
    ]
    report = asyncio.run(evaluate(retriever, items, 2))  # type: ignore[arg-type]
    assert report.n == 3 and report.no_gold == ["4", "5"]
    assert report.hit_rate_at_k == pytest.approx(1.0)
    assert report.recall_at_k == pytest.approx((1 + 0.5 + 1) / 3)
    assert report.mrr == pytest.approx((1 + 0.5 + 1) / 3)
    assert report.per_kind["howto"]["n"] == 2 and report.per_kind["factual"]["mrr"] == 1.0
    assert report.abstention == {
        "min_relevance": 0.5,
        "unanswerable": 2,
        "unanswerable_abstained": 1,
        "answerable_abstained": 1,
        "unanswerable_best_similarity": {"4": 0.2, "5": 0.55},
    }
    assert set(report.latency_ms) == {"p50", "p95"}
