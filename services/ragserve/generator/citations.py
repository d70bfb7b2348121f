"""Which returned sources each sentence of an answer rests on: the model's own ``[n]`` marks, or, where a
sentence has none, attribution after generation.

The prompt numbers each context block by its rank in the returned ``sources`` and asks for ``[n]``. Larger
models such as Llama-3.1-8B follow that; SmolLM2-135M (the local profile's model) practically never does
(load-tests/RESULTS.md, "Answer quality"), so a sentence without valid marks is attributed to the context
whose chunk holds the largest share of the sentence's content words, if that share is at least half. Either
way a citation names 1-based source numbers, valid by construction, and the sentence's span in the answer:
the API returns them (``citations``) and the playground links each sentence to its sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

MARK = re.compile(r"\[(\d{1,3})\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Words too common to show where a sentence came from.
STOPWORDS = frozenset(
    str.split(
        "the and for with that this these those from into over under are was were been being have has had "
        "can could will would should may might must does did not but you your our its their them they then "
        "than there here what which when where who why how all any each some such more most also only use "
        "used using about after before between both other same very just one two"
    )
)
MIN_SHARE = 0.5  # of a sentence's content words found in the chunk it is attributed to
MIN_WORDS = 2  # shorter sentences ("Yes.") are attributed to nothing
# How a citation was made: the model's own marks, attribution after generation, or a quote of the context
# appended after the answer (generator/evidence.py).
CitedBy = Literal["model", "attributed", "quoted"]


@dataclass(frozen=True)
class Citation:
    """``answer[start:end]`` (one sentence) rests on the returned sources numbered ``sources``."""

    start: int
    end: int
    sources: tuple[int, ...]
    by: CitedBy

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sources": list(self.sources)}


def content_words(text: str) -> list[str]:
    """Lower-cased words of three or more characters (numbers and identifiers included), minus stopwords."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", MARK.sub(" ", text.lower().replace("`", "")))
    return [w for w in re.findall(r"[a-z0-9_]{3,}", text) if w not in STOPWORDS]


def marked(text: str, n_sources: int) -> list[int]:
    """The ``[n]`` marks in ``text`` that name a returned source, in order of first use."""
    numbers = (int(m) for m in MARK.findall(text))
    return list(dict.fromkeys(n for n in numbers if 1 <= n <= n_sources))


def sentence_spans(answer: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of ``answer``, surrounding white space excluded."""
    spans, start = [], 0
    for cut in [*_SENTENCE_END.finditer(answer), None]:
        end = cut.start() if cut else len(answer)
        text = answer[start:end]
        if text.strip():
            lead = len(text) - len(text.lstrip())
            spans.append((start + lead, start + len(text.rstrip())))
        start = cut.end() if cut else end
    return spans


def cite(answer: str, chunks_best_first: Sequence[str]) -> list[Citation]:
    """A citation for each sentence that names or rests on a returned source, in answer order."""
    vocab: list[set[str]] | None = None  # built on the first sentence without marks
    found: list[Citation] = []
    for start, end in sentence_spans(answer):
        sentence = answer[start:end]
        own = marked(sentence, len(chunks_best_first))
        if own:
            found.append(Citation(start, end, tuple(own), "model"))
            continue
        words = content_words(sentence)
        if len(words) < MIN_WORDS or not chunks_best_first:
            continue
        vocab = vocab or [set(content_words(c)) for c in chunks_best_first]
        shares = [sum(w in v for w in words) / len(words) for v in vocab]
        if max(shares) >= MIN_SHARE:
            found.append(Citation(start, end, (shares.index(max(shares)) + 1,), "attributed"))  # ties: best
    return found


def attribute(answer: str, chunks_best_first: Sequence[str]) -> list[int]:
    """Source numbers the answer's sentences are attributed to (marks ignored), in order of first use."""
    return cited_sources(cite(MARK.sub(" ", answer), chunks_best_first))


def cited_sources(found: Sequence[Citation]) -> list[int]:
    return list(dict.fromkeys(n for c in found for n in c.sources))


def citations(answer: str, chunks_best_first: Sequence[str]) -> tuple[list[int], str]:
    """(source numbers, "model" or "attributed") for the whole answer: the model's valid marks when it wrote
    any, else the attribution of every sentence."""
    own = marked(answer, len(chunks_best_first))
    if own:
        return own, "model"
    return attribute(answer, chunks_best_first), "attributed"
