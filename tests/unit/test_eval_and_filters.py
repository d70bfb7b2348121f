import json
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
    assert filters.compile_filter(both) == (
        '(source in ["a.md", "b.md"]) and (source like "user\\_guide/50\\%%")'
    )
    assert filters.compile_filter(None) == "" and filters.compile_filter(filters.Filter()) == ""
    with pytest.raises(ValueError, match="at most 100"):
        filters.Filter(tuple(f"s{i}" for i in range(101)))
