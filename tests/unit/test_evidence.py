"""The evidence section (generator/evidence.py): which context sentences are quoted, cleaned, and where."""

from __future__ import annotations

from ragserve.generator.evidence import HEADER, MAX_CHARS, Quote, render, select, sentences, without_section

CHUNKS = [
    "## Limits\nThe maximum topK of a search is 16,384. Each request may also set an offset.",
    "| Parameter | Description |\n|---|---|\n| <code>topK</code> | The maximum number of results, at most "
    "16,384 with the offset. |",
    "See [the search guide](https://milvus.io/search.md) for the maximum topK of a search request.",
]


def test_sentences_are_plain_text_without_markup_and_short_lines() -> None:
    assert sentences(CHUNKS[0]) == [
        "The maximum topK of a search is 16,384.",
        "Each request may also set an offset.",
    ]
    assert sentences(CHUNKS[1]) == ["topK; The maximum number of results, at most 16,384 with the offset."]
    assert sentences(CHUNKS[2]) == ["See the search guide for the maximum topK of a search request."]
    assert sentences("Parameter\nDescription") == []  # headings and table labels say nothing
    assert sentences("| HNSW | DISKANN | IVF_FLAT | GPU_CAGRA |\nFLAT IVF_SQ8 HNSW SCANN") == []  # names only
    assert sentences("Use HNSW or IVF_FLAT for most workloads.") == [
        "Use HNSW or IVF_FLAT for most workloads."
    ]
    long = sentences("topK search limit " + "word " * 200)[0]
    assert len(long) <= MAX_CHARS + 2 and long.endswith(" …")
    # A paragraph is one line in Markdown: every sentence of it counts, however long the line.
    paragraph = (
        "The index is built in the background and may take a while. " * 8
        + "The hard limit of segments is 65,536."
    )
    assert sentences(paragraph)[-1] == "The hard limit of segments is 65,536."
    wrapped = "Operators type the code word into the deploy\nconsole to unlock a release.\n\n## Next section"
    assert sentences(wrapped) == ["Operators type the code word into the deploy console to unlock a release."]
    code = "```python\nclient.create_collection(name, dimension=768)\nclient.insert(name, data=rows)\n```"
    assert sentences(code) == [
        "client.create_collection(name, dimension=768)",
        "client.insert(name, data=rows)",
    ]
    marked = (
        "__Which GPU indexes suit batch search?__ Omit the __index_type__ in `__init__` calls.![a](b.png)"
    )
    assert sentences(marked) == [
        "Which GPU indexes suit batch search?",
        "Omit the index_type in `__init__` calls.",
    ]


def test_the_sentences_matching_the_question_best_are_quoted_best_first() -> None:
    quotes = select("What is the maximum topK of one search?", "", CHUNKS, 2)
    assert quotes == [
        Quote("The maximum topK of a search is 16,384.", 1),  # all the question's words, a short sentence
        Quote("See the search guide for the maximum topK of a search request.", 3),
    ]
    assert select("What is the maximum topK of one search?", "", CHUNKS, 0) == []
    assert select("What is the maximum topK of one search?", "", [], 3) == []
    assert select("How do I bake bread?", "", CHUNKS, 3) == []  # nothing matches: nothing quoted


def test_what_the_answer_already_says_and_repeats_are_not_quoted() -> None:
    said = "The maximum topK of a search is 16,384."
    quotes = select("What is the maximum topK of one search?", said, CHUNKS, 3)
    assert Quote(said, 1) not in quotes and quotes[0].source == 3
    twice = [CHUNKS[0], CHUNKS[0]]
    assert [q.text for q in select("maximum topK search", "", twice, 5)] == [
        "The maximum topK of a search is 16,384."
    ]  # the second chunk's copy is a repeat


def test_the_section_lists_each_quote_with_its_source_and_spans_index_its_lines() -> None:
    quotes = [Quote("The maximum topK is 16,384.", 1), Quote('Use "offset" to page.', 3)]
    section, spans = render(quotes)
    assert section == f'\n\n{HEADER}\n- "The maximum topK is 16,384." [1]\n- "Use "offset" to page." [3]'
    assert [section[a:b] for a, b in spans] == [
        '- "The maximum topK is 16,384." [1]',
        '- "Use "offset" to page." [3]',
    ]
    assert render([]) == ("", [])


def test_a_chat_keeps_an_earlier_answer_without_its_evidence_section() -> None:
    """Clients send the whole answer back: a follow-up's history and retrieval query get its text."""
    from types import SimpleNamespace

    from ragserve.config import load_config
    from ragserve.router.models import ChatRequest
    from ragserve.router.service import RagService

    section, _ = render([Quote("The maximum topK is 16,384.", 1)])
    earlier = "It is 16,384." + section
    assert without_section(earlier) == "It is 16,384." and without_section("Plain.") == "Plain."
    pipeline = SimpleNamespace(
        retriever=SimpleNamespace(store=None), generator=SimpleNamespace(model_name="m")
    )
    service = RagService(load_config(), pipeline, SimpleNamespace())  # type: ignore[arg-type]
    chat = ChatRequest.model_validate(
        {
            "messages": [
                {"role": "user", "content": "What is the max topK?"},
                {"role": "assistant", "content": earlier},
                {"role": "user", "content": "And with an offset?"},
            ]
        }
    )
    request = service._chat_request(chat, SimpleNamespace())  # type: ignore[arg-type]
    assert [t["content"] for t in request.turns] == ["What is the max topK?", "It is 16,384."]
    assert [t["content"] for t in request.history] == ["What is the max topK?", "It is 16,384."]
