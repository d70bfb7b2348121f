import re
from itertools import pairwise

import pytest

from ragserve.ingest.chunker import RecursiveSplitter

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
