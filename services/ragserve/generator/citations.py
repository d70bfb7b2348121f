"""Which returned sources an answer rests on: the model's own ``[n]`` marks, or, when it wrote none,
attribution after generation.

The prompt numbers each context block by its rank in the returned ``sources`` and asks for ``[n]``. Larger
models such as Llama-3.1-8B follow that; SmolLM2-135M (the local profile's model) practically never does
(load-tests/RESULTS.md, "Answer quality"), so an answer without valid marks is attributed: each of its
sentences goes to the context whose chunk holds the largest share of the sentence's content words, if that
share is at least half. Either way the result is a list of 1-based source numbers, valid by construction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MARK = re.compile(r"\[(\d{1,3})\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
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


def content_words(text: str) -> list[str]:
    """Lower-cased words of three or more characters (numbers and identifiers included), minus stopwords."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", MARK.sub(" ", text.lower().replace("`", "")))
    return [w for w in re.findall(r"[a-z0-9_]{3,}", text) if w not in STOPWORDS]


def marked(answer: str, n_sources: int) -> list[int]:
    """The answer's own ``[n]`` marks that name a returned source, in order of first use."""
    numbers = (int(m) for m in MARK.findall(answer))
    return list(dict.fromkeys(n for n in numbers if 1 <= n <= n_sources))


def attribute(answer: str, chunks_best_first: Sequence[str]) -> list[int]:
    """For each sentence, the 1-based number of the chunk that best supports it (at least MIN_SHARE of its
    content words), in order of first use; sentences no chunk supports add nothing."""
    vocab = [set(content_words(c)) for c in chunks_best_first]
    found: list[int] = []
    for sentence in _SENTENCE.split(answer):
        words = content_words(sentence)
        if len(words) < MIN_WORDS:
            continue
        shares = [sum(w in v for w in words) / len(words) for v in vocab]
        if shares and max(shares) >= MIN_SHARE:
            found.append(shares.index(max(shares)) + 1)  # ties: the better-ranked chunk
    return list(dict.fromkeys(found))


def citations(answer: str, chunks_best_first: Sequence[str]) -> tuple[list[int], str]:
    """(source numbers, "model" or "attributed"): the model's valid marks when it wrote any, else the
    attribution."""
    own = marked(answer, len(chunks_best_first))
    if own:
        return own, "model"
    return attribute(answer, chunks_best_first), "attributed"
