import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragserve.ingest.chunker import Chunk, RecursiveSplitter, StructuredSplitter

TEXT = "\n\n".join(
    f"Paragraph {i}. " + " ".join(f"word{i}_{j}" for j in range(40 + 7 * i)) + "\nA second line here."
    for i in range(12)
)


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_chunks_respect_size_and_cover_every_word() -> None:
    splitter = RecursiveSplitter(512, 51)
    chunks = splitter.split(TEXT)
    assert len(chunks) > 5
    assert all(0 < len(c) <= 512 for c in chunks)
    seen = set()
    for c in chunks:
        seen.update(words(c))
    assert seen == set(words(TEXT))


def test_neighbouring_chunks_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(2000))  # one paragraph: split on spaces
    chunks = RecursiveSplitter(200, 40).split(text)
    for left, right in pairwise(chunks):
        tail = words(left)[-3:]
        assert " ".join(tail) in right, "the next chunk must start with the previous chunk's tail"
        shared = len(set(words(left)) & set(words(right)))
        assert 0 < shared * 4 <= 45  # roughly chunk_overlap characters (4 chars per token here)


def test_prefers_paragraph_then_line_boundaries() -> None:
    text = "alpha " * 30 + "\n\n" + "beta " * 30
    chunks = RecursiveSplitter(200, 0).split(text)
    assert chunks == [("alpha " * 30).strip(), ("beta " * 30).strip()]


def test_long_unbroken_text_is_split_by_characters() -> None:
    chunks = RecursiveSplitter(100, 10).split("x" * 950)
    assert all(len(c) <= 100 for c in chunks)
    assert "".join(c[10:] if i else c for i, c in enumerate(chunks)) == "x" * 950  # 10-char overlaps


def test_small_and_empty_text() -> None:
    splitter = RecursiveSplitter(512, 51)
    assert splitter.split("short text") == ["short text"]
    assert splitter.split("") == []
    assert splitter.split("   \n\n  ") == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_invalid_settings(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        RecursiveSplitter(size, overlap)


# StructuredSplitter


def fence_lines(text: str) -> int:
    return sum(1 for line in text.split("\n") if line.strip().startswith("```"))


def sentences(n: int, tag: str = "s") -> str:
    return " ".join(f"Sentence {tag}{i} has a few words." for i in range(n))


DOC = f"""# Index Explained

Intro paragraph.

## Floating-point embeddings

Float text.

### HNSW {{#hnsw}}

HNSW builds a graph.

### `IVF_FLAT` index

{sentences(30, "ivf")}

## **Binary** embeddings ##

Binary text.
"""


def test_breadcrumbs_follow_nested_and_sibling_headings_without_repeating_the_title() -> None:
    chunks = StructuredSplitter(512, 51).split(DOC, "index explained ")
    crumbs = [c.breadcrumb for c in chunks]
    base = "index explained"
    assert crumbs[:4] == [
        base,
        f"{base} > Floating-point embeddings",
        f"{base} > Floating-point embeddings > HNSW",
        f"{base} > Floating-point embeddings > IVF_FLAT index",
    ]
    assert crumbs[-1] == f"{base} > Binary embeddings"
    assert chunks[2].text == "### HNSW {#hnsw}\n\nHNSW builds a graph."  # the heading line stays, as written


def test_an_h1_other_than_the_title_is_kept_and_text_before_headings_has_the_title() -> None:
    chunks = StructuredSplitter(512, 51).split("Preamble.\n\n# Guide\n\nBody.", "Milvus Docs")
    assert [(c.breadcrumb, c.text) for c in chunks] == [
        ("Milvus Docs", "Preamble."),
        ("Milvus Docs > Guide", "# Guide\n\nBody."),
    ]


def test_no_chunk_spans_two_sections() -> None:
    text = "\n\n".join(f"{'#' * (1 + i % 3)} Part {i}\n\n{sentences(4 + i % 5, f'p{i}-')}" for i in range(12))
    chunks = StructuredSplitter(160, 40).split(text, "T")
    assert len(chunks) > 12
    for c in chunks:
        section = c.breadcrumb.rsplit(" ", 1)[-1]  # "T > Part 2 > Part 3" -> "3"
        assert set(re.findall(r"Sentence p(\d+)-", c.text)) == {section}, c
        assert not re.search(r"\n#", c.text)  # a heading line only at the start
    assert sum(c.text.startswith("#") for c in chunks) == 12  # no overlap across sections


def test_a_heading_without_body_opens_the_next_sections_chunk() -> None:
    chunks = StructuredSplitter(512, 51).split(
        "## Setup\n\n### Install\n\npip install pymilvus", "Quickstart"
    )
    assert chunks == [
        Chunk("## Setup\n\n### Install\n\npip install pymilvus", "Quickstart > Setup > Install")
    ]


def test_a_code_block_that_fits_is_never_cut() -> None:
    code = "```python\n" + "\n\n".join(f"step_{i} = compute({i})  # step {i}" for i in range(10)) + "\n```"
    text = f"# Example\n\n{sentences(8)}\n\n{code}\n\nAfter the code."
    assert len(code) < 512 < len(text)
    recursive = RecursiveSplitter(512, 51).split(text)
    assert any(fence_lines(c) % 2 for c in recursive), "the recursive splitter cuts the code block"
    chunks = StructuredSplitter(512, 51).split(text, "Example")
    assert sum(code in c.text for c in chunks) == 1
    assert all(fence_lines(c.text) % 2 == 0 for c in chunks)


def test_oversized_blocks_are_split_within_chunk_size() -> None:
    code_lines = [f"    value_{i} = transform(value_{i - 1}, factor={i})" for i in range(40)]
    code = "```python\n" + "\n".join(code_lines) + "\n```"
    prose = sentences(40) + " " + "x" * 300 + " " + "y" * 700  # sentences, a long word, an unsplittable one
    chunks = StructuredSplitter(200, 40).split(f"# Big\n\n{code}\n\n{prose}", "Big")
    assert all(0 < len(c.text) <= 200 for c in chunks)
    code_chunks = [c.text for c in chunks if "value_" in c.text]
    assert len(code_chunks) > 5
    whole_lines = {line.strip() for line in code.split("\n")}
    for c in code_chunks:  # cut on line boundaries: every line is a whole line of the block
        assert all(line.strip() in whole_lines for line in c.split("\n") if "value_" in line)
    assert sum(len(c.text) for c in chunks if set(c.text) == {"x"}) == 300  # cut by characters
    assert sum(len(c.text) for c in chunks if set(c.text) == {"y"}) == 700


def test_a_block_larger_than_chunk_size_starts_a_new_chunk() -> None:
    chunks = StructuredSplitter(512, 51).split(f"## S\n\nShort intro.\n\n{sentences(25)}", "T")
    assert [c.text for c in chunks[:2]] == ["## S\n\nShort intro.", f"Short intro.\n\n{sentences(16)}"]


def test_a_prose_block_after_a_lone_heading_is_split_rather_than_leave_the_heading_alone() -> None:
    assert len(sentences(17)) == 499  # fits in 500 by itself, not after the heading
    chunks = StructuredSplitter(500, 50).split("## Why\n\n" + sentences(17), "T")
    assert len(chunks) == 2
    assert chunks[0].text.startswith("## Why\n\nSentence s0")


def test_overlap_is_whole_trailing_sentences_within_the_limit() -> None:
    text = "## Part\n\n" + sentences(40)
    chunks = StructuredSplitter(200, 70).split(text, "T")
    assert len(chunks) > 5
    for left, right in pairwise(chunks):
        overlap = max((right.text[:i] for i in range(71) if left.text.endswith(right.text[:i])), key=len)
        # Two whole sentences (~57 characters): a third would exceed the 70 allowed.
        assert re.fullmatch(r"Sentence s\d+ has a few words\. Sentence s\d+ has a few words\.", overlap)
    no_overlap = StructuredSplitter(200, 0).split(text, "T")
    assert sum(len(c.text) for c in no_overlap) < sum(len(c.text) for c in chunks)
    assert not any(b.text.split(".")[0] in a.text for a, b in pairwise(no_overlap))
    assert " ".join(c.text for c in no_overlap) == text


def test_no_overlap_after_a_complete_code_block_or_a_sentence_longer_than_the_overlap() -> None:
    code = "```\n" + "\n".join(f"line {i}" for i in range(20)) + "\n```"
    long = "word " * 32 + "end."
    text = f"{code}\n\n{sentences(3)}\n\n{long}\n\nFinal words."
    texts = [c.text for c in StructuredSplitter(200, 60).split(text, "T")]
    assert texts == [
        code,
        sentences(3),
        f"Sentence s2 has a few words.\n\n{long}",  # the previous chunk's last sentence fits in 60
        "Final words.",  # the last sentence before is longer than 60: no overlap
    ]


def test_text_without_headings_packs_paragraphs_under_the_title() -> None:
    paragraphs = [f"Paragraph {i} " + "filler " * 12 for i in range(9)]
    chunks = StructuredSplitter(250, 25).split("\n\n".join(p.strip() for p in paragraphs), "notes")
    assert {c.breadcrumb for c in chunks} == {"notes"}
    assert [c.text.count("Paragraph") for c in chunks] == [2, 2, 2, 2, 1]
    assert all(c.text.startswith("Paragraph") and c.text.endswith("filler") for c in chunks)


def test_headings_inside_code_fences_are_ignored() -> None:
    text = "# Guide\n\n```bash\n# install it\npip install x\n```\n\n~~~\n## not a heading\n~~~\n\nText."
    chunks = StructuredSplitter(512, 51).split(text, "T")
    assert chunks == [Chunk(text, "T > Guide")]
    unclosed = StructuredSplitter(512, 51).split("## A\n\n```\n# comment\ncode", "T")
    assert [c.breadcrumb for c in unclosed] == ["T > A"]


def test_an_unclosed_fence_in_a_list_item_ends_with_the_item() -> None:
    text = "- Step one:\n\n    ```\n    run it\n\nBack at the top level.\n\n## Next\n\nMore."
    chunks = StructuredSplitter(512, 51).split(text, "T")
    assert [c.breadcrumb for c in chunks] == ["T", "T > Next"]


def test_long_breadcrumbs_drop_middle_levels() -> None:
    text = "\n\n".join(f"{'#' * level} {'Level ' * 8}{level}\n\nBody {level}." for level in range(1, 7))
    crumb = StructuredSplitter(512, 51).split(text, "Title")[-1].breadcrumb
    assert len(crumb) <= 200
    assert crumb.startswith("Title > … > ") and crumb.endswith("Level 6")


def test_structured_small_and_invalid_input() -> None:
    splitter = StructuredSplitter(512, 51)
    assert splitter.split("", "T") == []
    assert splitter.split(" \n\n ", "T") == []
    assert splitter.split("  short text  ", "") == [Chunk("short text", "")]
    with pytest.raises(ValueError):
        StructuredSplitter(100, 100)
    with pytest.raises(ValueError):
        StructuredSplitter(0, 0)


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
LINE = st.lists(WORD, min_size=1, max_size=20).map(" ".join)
HEADING = st.tuples(st.integers(1, 6), LINE).map(lambda t: "#" * t[0] + " " + t[1])
PARAGRAPH = st.lists(LINE.map(lambda s: s + "."), min_size=1, max_size=12).map(" ".join)
LIST = st.lists(LINE, min_size=1, max_size=6).map(lambda items: "\n".join(f"- {i}" for i in items))
CODE = st.lists(st.one_of(LINE, HEADING, st.just("")), min_size=0, max_size=15).map(
    lambda lines: "```\n" + "\n".join(lines) + "\n```"
)
MARKDOWN = st.lists(st.one_of(HEADING, PARAGRAPH, LIST, CODE), max_size=15).map("\n\n".join)


@settings(max_examples=200, deadline=None)
@given(text=MARKDOWN, size=st.integers(40, 400), overlap_share=st.floats(0, 0.5))
def test_every_word_is_in_a_chunk_and_chunks_fit(text: str, size: int, overlap_share: float) -> None:
    splitter = StructuredSplitter(size, int(size * overlap_share))
    chunks = splitter.split(text, "Generated")
    assert all(c.text and c.text == c.text.strip() and len(c.text) <= size for c in chunks)
    assert all(c.text in text for c in chunks)  # slices of the input
    seen = {w for c in chunks for w in words(c.text)}
    assert set(words(text)) <= seen
    assert splitter.split(text, "Generated") == chunks  # deterministic
    fits = [block for block in re.findall(r"^```\n.*?^```$", text, re.M | re.S) if len(block) <= size]
    assert all(any(block in c.text for c in chunks) for block in fits)
