"""What answers say, with the real model (SmolLM2-135M-Instruct, the local profile's generator), greedy.

A made-up fact (a code word no model can know) is answered from the one document that states it, and the
answer's citation (its own [n], else attribution: generator/citations.py) names that document among the
returned sources; a question the documents do not cover abstains. A random-weight model fails the first
(tests/integration/test_generator.py covers the engine path with one). One vLLM engine for the module: the
session's only engine with the real model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.answer_eval import abstains
from ragserve.config import SMOLLM2, load_config
from ragserve.rag import RagRequest, build_pipeline
from ragserve.retrieval import local_query_embedder
from tests.conftest import copy_subset

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CODE_WORD = "PERIWINKLE-7342"
NOTE_SOURCE = "notes/release-train.md"
NOTE = f"""# The Zephyr release train

The code word for the Zephyr release train is {CODE_WORD}. Operators type the code word into the deploy
console to unlock a release of the Zephyr train. The code word rotates every quarter.
"""


@pytest.fixture(scope="module")
def pipeline(smollm2: Path, model_cache: Path, encoder, corpus_dir: Path, tmp_path_factory, loop) -> Iterator:
    from ragserve.generator.engine import VLLMGenerator
    from ragserve.ingest.pipeline import Ingestor
    from ragserve.store.milvus import MilvusStore

    home = tmp_path_factory.mktemp("answers-home")
    docs = copy_subset(corpus_dir, home / "docs")
    (docs / NOTE_SOURCE).parent.mkdir(parents=True, exist_ok=True)
    (docs / NOTE_SOURCE).write_text(NOTE, encoding="utf-8")
    # The local profile as shipped (greedy, repetition penalty), the model from the session's cache.
    cfg = load_config(env={"RAGSERVE_HOME": str(home)}, overrides={"generator": {"model": SMOLLM2}})
    store = MilvusStore(cfg.store)
    Ingestor(encoder, store, cfg.ingest).run(docs)
    generator = VLLMGenerator(cfg.generator, model_cache)
    generator.start()
    yield build_pipeline(cfg, local_query_embedder(encoder), store, generator, generator.get_tokenizer())
    generator.shutdown()  # before the loop closes (fixture order)
    store.close()


def ask(pipeline, loop, question: str):
    sampling = load_config(env={}).generator.sampling
    return loop.run_until_complete(pipeline.answer(RagRequest(question, sampling)))


def test_a_made_up_fact_is_answered_and_cited_from_its_document(pipeline, loop) -> None:
    answer = ask(pipeline, loop, "What is the code word for the Zephyr release train?")
    print(f"answer: {answer.answer!r}; sources: {[h.source for h in answer.sources]}")
    # The model's own text holds the code word: the evidence section after it (prompt.evidence_quotes,
    # on in the local profile) quotes the context, which holds it whatever the model says.
    model_text = answer.answer[: answer.evidence_at]
    assert answer.grounded and CODE_WORD in model_text
    # The answer's citations: its own [n] marks where it writes them (SmolLM2-135M rarely does), else
    # attribution after generation. The sentence holding the code word names the note, and only the note.
    print(f"citations: {answer.citations}")
    stating = [
        c for c in answer.citations if c.end <= len(model_text) and CODE_WORD in model_text[c.start : c.end]
    ]
    assert stating and {answer.sources[n - 1].source for c in stating for n in c.sources} == {NOTE_SOURCE}
    # The evidence quotes the note first (the best match), whole sentences of it as written.
    quoted = [c for c in answer.citations if c.by == "quoted"]
    assert quoted and answer.sources[quoted[0].sources[0] - 1].source == NOTE_SOURCE
    note = " ".join(NOTE.split())
    for c in quoted:
        line = answer.answer[c.start : c.end]
        if answer.sources[c.sources[0] - 1].source == NOTE_SOURCE:
            assert line.startswith('- "') and line[3 : line.rindex('"')] in note


def test_a_question_the_documents_do_not_cover_abstains(pipeline, loop) -> None:
    answer = ask(pipeline, loop, "What is a good substitute for buttermilk in pancakes?")
    print(f"answer: {answer.answer!r}")
    assert abstains(answer.answer) and CODE_WORD not in answer.answer


# Both match the corpus subset weakly (best cosine 0.40 and 0.41 with MiniLM, between the local profile's
# retrieval.min_relevance 0.35 and weak_relevance 0.45); only the first names terms no chunk mentions.
UNEXPLAINED = "How do I set up Oracle Data Guard replication between two Milvus clusters?"
EXPLAINED = "What is a good way to back up Milvus?"


def test_a_weak_match_abstains_only_when_what_the_question_names_is_nowhere(pipeline, loop) -> None:
    """retrieval.weak_relevance on real retrieval (MiniLM, Milvus Lite, hybrid): the weak match naming
    Oracle Data Guard abstains without generating; the weak match whose terms the chunks hold is answered."""
    retriever, cfg = pipeline.retriever, pipeline.retriever.cfg
    for question, covered in ((UNEXPLAINED, False), (EXPLAINED, True)):
        found = loop.run_until_complete(retriever.search(question, pipeline.top_k))
        print(f"{question!r}: best cosine {found.best_similarity:.3f}")
        assert cfg.min_relevance <= found.best_similarity < cfg.weak_relevance  # the band the rule acts in
        assert retriever.covers(question, found) is covered
    answer = ask(pipeline, loop, UNEXPLAINED)
    assert not answer.grounded and answer.usage["completion_tokens"] == 0 and abstains(answer.answer)
