"""Answer scoring rules (ragserve/answer_eval.py): key facts, citations, abstention, loops."""

from __future__ import annotations

from ragserve.answer_eval import (
    abstains,
    citations,
    contains,
    key_facts,
    loops,
    recall,
    score_answer,
    summarize,
)
from ragserve.evaluate import EvalItem
from ragserve.generator.citations import attribute
from ragserve.generator.citations import citations as cite


def test_key_facts_are_numbers_code_and_names_not_in_the_question() -> None:
    hint = "`topk` (number of the most similar result to return) is limited to 16,384."
    assert key_facts(hint, "what's the max topk allowed in one search request?") == ["16384"]
    hint = "Yes; change `etcd.rootPath` to a separate value for each Milvus instance before starting them."
    assert key_facts(hint, "can 2 milvus instances share a single etcd?") == ["etcd.rootpath"]
    hint = (
        "The default consistency level in Milvus is bounded staleness (`Bounded`). Deletes use FLAT, e.g. x."
    )
    assert key_facts(hint) == ["bounded", "milvus", "flat"]  # not 'The', 'Deletes' (openers) or 'e.g'


def test_facts_match_whole_words_whatever_the_formatting() -> None:
    assert contains("The limit is 16384 results.", "16384") and contains("up to 16,384", "16384")
    assert not contains("4096 tenants", "4") and contains("set `mmap.enabled` to True", "mmap.enabled")
    assert recall("Use FLAT.", ["flat", "ivf_pq"]) == 0.5


def test_citations_count_and_validity() -> None:
    chunks = ["Milvus Lite supports only the FLAT index type.", "HNSW builds a graph."]
    total, valid = citations("Milvus Lite supports only FLAT [1]. It builds a graph [2]. See [7].", chunks)
    assert (total, valid) == (3, 2)  # [7] names no returned source
    assert citations("Milvus Lite uses HNSW graphs with many layers and edges [1].", chunks) == (1, 0)


def test_an_answer_without_marks_is_attributed_sentence_by_sentence() -> None:
    chunks = ["The default consistency level is Bounded.", "Milvus Lite supports only the FLAT index type."]
    answer = "Milvus Lite uses the FLAT index type. The default level is Bounded staleness. Yes."
    assert attribute(answer, chunks) == [2, 1]
    assert cite(answer, chunks) == ([2, 1], "attributed")
    assert cite("Only FLAT [2], see [9].", chunks) == ([2], "model")  # its own valid marks win
    assert attribute("Bake the bread at 220 degrees.", chunks) == []  # nothing supports it


def test_abstention_and_loops() -> None:
    assert abstains("The documents do not cover this question.") and not abstains("Use FLAT [1].")
    assert loops("a 32-bit integer that is a 4-byte integer that is a 32-bit integer that is a 4-byte")
    assert not loops("Milvus Lite supports only the FLAT index type [1].")


def test_a_report_puts_rag_beside_closed_book_and_the_ceiling() -> None:
    item = EvalItem("q1", "Which index does Milvus Lite use?", ["lite.md"], "factual", "Only `FLAT`.")
    held = [("about/lite.md", "Lite supports only FLAT.")]
    good = score_answer(item, "Only FLAT [1].", held, True, "HNSW.", {"total_ms": 900}, 5)
    unanswerable = EvalItem("q2", "capital of australia?", [], "unanswerable", "")
    abstained = score_answer(
        unanswerable, "The documents do not cover this question.", [], False, None, {}, 0
    )
    report = summarize([good, abstained])
    assert report["key_fact_recall"] == {
        "rag": 1.0,
        "closed_book": 0.0,
        "context_ceiling": 1.0,
        "rag_over_ceiling": 1.0,
        "model_text": 1.0,
        "model_text_over_ceiling": 1.0,
    }
    assert report["citations"] == {
        "answers_citing": 1.0,
        "valid": 1.0,
        "answers_with_a_source": 1.0,
        "sources_gold": 1.0,
    }
    assert report["abstention"] == {"unanswerable": 1, "unanswerable_abstained": 1, "answerable_abstained": 0}


def test_the_models_text_is_scored_apart_from_its_evidence_section() -> None:
    """The quotes' facts count for the answer as read, not for the model's text; their [n] are not the
    model's marks."""
    from ragserve.generator.evidence import Quote, render

    item = EvalItem("q1", "Which index does Milvus Lite use?", ["lite.md"], "factual", "Only `FLAT`.")
    held = [("about/lite.md", "Lite supports only FLAT.")]
    model_text = "Lite has a single index type."
    answer = model_text + render([Quote("Lite supports only FLAT.", 1)])[0]
    row = score_answer(item, answer, held, True, None, {}, 5, evidence_at=len(model_text))
    assert (row.recall, row.recall_generated, row.citations, row.cited) == (1.0, 0.0, 0, False)
    whole = score_answer(item, answer, held, True, None, {}, 5)  # without the split: the quote's mark counts
    assert (whole.recall_generated, whole.citations) == (1.0, 1)
    # A quote saying "not covered" (documentation can) does not make the answer an abstention.
    quoting = model_text + render([Quote("Upserts are not covered by this limit.", 1)])[0]
    assert not score_answer(item, quoting, held, True, None, {}, 5, evidence_at=len(model_text)).abstained
