"""Evidence: the sentences of the retrieved context that best match the question, quoted after the answer
with their source numbers (``prompt.evidence_quotes``).

A small model (the local profile's SmolLM2-135M) often paraphrases a chunk's number or identifier away, or
answers from the wrong block; the sentence that holds the fact is usually in the context. Quoting it lets the
reader check the answer and see the fact even when the model dropped it (load-tests/RESULTS.md, "Answer
quality", measures both the model's own text and the answer with its evidence).

Selection is lexical and cheap (no model): each sentence of each prompt context scores the question's
content words it holds, weighted by how few contexts hold them (IDF over the contexts), lightly penalised
for length and for its chunk's rank. Sentences mostly said already by the answer, and repeats, are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragserve.generator.citations import content_words

HEADER = "From the sources:"
_OPENING = "\n\n" + HEADER  # how the section starts after the answer
RANK_DECAY = 0.85  # a sentence of the k-th best chunk (0-based) scores 0.85^k of its matches
LENGTH_PENALTY = 0.02  # per content word: a long sentence holds the question's words by chance
MAX_CHARS = 300  # a longer sentence is cut at a word boundary, with an ellipsis
MIN_WORDS = 3  # content words a quote needs: shorter lines (a heading, "Parameter") say nothing
CAPS_SHARE = 0.5  # a line whose words are at least this share ALL-CAPS is a list of names, not a sentence
SAID_SHARE = 0.6  # a sentence whose content words the answer holds at least this share of is not quoted

# A sentence ends at . ! ? before white space, or before a capitalised word with no space ("them.You").
_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z][a-z])")
_TAG = re.compile(r"<[^>]{1,200}>")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*\*|(?<![\w`])__|__(?![\w`])")  # bold; `__init__` in backticks stays
_LEAD = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+]\s+|\d{1,3}[.)]\s+)+")
_SPACE = re.compile(r"\s+")
_TABLE_RULE = re.compile(r"^[|:\-\s]+$")
_BLOCK = re.compile(r"^(?:#{1,6}\s|\||[-*+]\s|>|\d{1,3}[.)]\s|<)")  # a line that starts a block
_UNWRAPPED = re.compile(r"^(?:#{1,6}\s|\||<)")  # blocks that never continue on the next line
_WORD = re.compile(r"[A-Za-z][\w\-]*")


@dataclass(frozen=True)
class Quote:
    text: str
    source: int  # 1-based number of the returned source (best first), as ``[n]`` marks use


def _plain(line: str) -> str:
    """A context line as plain text: no HTML tags, images, link targets, bold markers, list or heading
    markers, table pipes."""
    if _TABLE_RULE.match(line):
        return ""
    text = _EMPHASIS.sub("", _LINK.sub(r"\1", _IMAGE.sub(" ", _TAG.sub(" ", line))))
    if text.lstrip().startswith("|"):
        text = "; ".join(cell.strip() for cell in text.strip().strip("|").split("|") if cell.strip())
    return _LEAD.sub("", _SPACE.sub(" ", text).strip())


def _short(sentence: str) -> str:
    """At most MAX_CHARS, cut at a word boundary with an ellipsis."""
    if len(sentence) <= MAX_CHARS:
        return sentence
    return sentence[:MAX_CHARS].rsplit(" ", 1)[0] + " …"


def _lines(chunk: str) -> list[str]:
    """The chunk's logical lines: a paragraph or list item wrapped over several lines is one line; code
    fences go, the code lines between them stay one each, as do headings, table rows and HTML lines."""
    lines: list[str] = []
    fenced = joinable = False
    for raw in chunk.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            fenced, joinable = not fenced, False
        elif not line:
            joinable = False
        elif joinable and not _BLOCK.match(line):
            lines[-1] += " " + line
        else:
            lines.append(line)
            joinable = not fenced and not _UNWRAPPED.match(line)
    return lines


def sentences(chunk: str) -> list[str]:
    """The chunk's sentences (of plain-text lines) that hold enough content words to quote and are more
    than a list of names."""
    found = (_short(part.strip()) for line in _lines(chunk) for part in _SPLIT.split(_plain(line)))
    return [s for s in found if len(content_words(s)) >= MIN_WORDS and not _names_only(s)]


def _names_only(sentence: str) -> bool:
    """A line of constants ("FLAT IVF_FLAT IVF_SQ8 HNSW DISKANN"): it matches a question naming one of them
    and tells the reader nothing."""
    words = _WORD.findall(sentence)
    return sum(w.isupper() for w in words) >= CAPS_SHARE * len(words)


def select(question: str, answer: str, chunks_best_first: Sequence[str], limit: int) -> list[Quote]:
    """Up to ``limit`` quotes, best first: the sentences of ``chunks_best_first`` that match the question
    best and that the answer has not already said."""
    if limit <= 0 or not chunks_best_first:
        return []
    asked = set(content_words(question))
    vocab = [set(content_words(c)) for c in chunks_best_first]
    n = len(vocab)
    weight = {w: 1.0 + math.log(1 + n / (1 + sum(w in v for v in vocab))) for w in asked}
    said = set(content_words(answer))
    scored: list[tuple[float, int, int, str]] = []
    seen: set[str] = set()
    for rank, chunk in enumerate(chunks_best_first):
        for order, sentence in enumerate(sentences(chunk)):
            key = sentence.lower()
            words = set(content_words(sentence))
            if key in seen or len(words & said) >= SAID_SHARE * len(words):
                continue
            seen.add(key)
            matched = sum(weight[w] for w in asked & words)
            if matched:
                score = matched / (1 + LENGTH_PENALTY * len(words)) * RANK_DECAY**rank
                scored.append((score, rank, order, sentence))
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    return [Quote(text, rank + 1) for _, rank, _, text in scored[:limit]]


def render(quotes: Sequence[Quote]) -> tuple[str, list[tuple[int, int]]]:
    """The evidence section appended to an answer (empty without quotes), and each quote line's span in it."""
    if not quotes:
        return "", []
    section, spans = _OPENING, []
    for q in quotes:
        line = f'- "{q.text}" [{q.source}]'
        section += "\n"
        spans.append((len(section), len(section) + len(line)))
        section += line
    return section, spans


def without_section(answer: str) -> str:
    """An earlier answer as the model wrote it, its evidence section cut off: what a chat's history and
    follow-up query keep of it (clients send the whole answer back)."""
    cut = answer.find(_OPENING + "\n")
    return answer if cut < 0 else answer[:cut]
