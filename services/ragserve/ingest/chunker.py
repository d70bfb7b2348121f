"""Chunkers: LangChain's recursive character splitter, and a structure-aware splitter for Markdown-like text.

``RecursiveSplitter`` (LangChain's RecursiveCharacterTextSplitter) splits on the coarsest separator that
occurs ("\\n\\n", "\\n", " ", ""), recurses into pieces still too long, and merges neighbouring pieces up to
``chunk_size``, starting each chunk with about ``chunk_overlap`` characters of the previous one. Blind to
structure, it cuts code blocks that would fit and mixes sections.

``StructuredSplitter`` keeps sections and blocks whole, and gives each chunk its *breadcrumb* (title and
headings above it) to embed and show. Rules:

* ATX headings (``#``..``######``, not in ``` or ~~~ fences) start sections; no chunk spans two sections;
  a heading line stays in its section's first chunk. A heading with no body (``## Setup`` right before
  ``### Install``) opens the next section's first chunk, which has the next (deeper) breadcrumb. Short
  sections with a body are not merged with siblings: the second one's text would get the first's breadcrumb.
* Breadcrumb: title > headings in effect (emphasis, backticks, links, closing ``#``s, ``{#anchor}``
  removed); a top-level heading equal to the title (case ignored) is dropped. Over 200 characters, the
  middle levels become "…", then it is cut.
* Whole blocks (paragraphs, lists, tables, fenced code, heading lines) are packed greedily up to
  ``chunk_size``: a code block that fits is never cut. A block larger than ``chunk_size`` starts a new chunk
  and is split into lines, then sentences (not code), then by ``RecursiveSplitter`` (words, characters);
  the pieces are packed the same way. Fences of a split code block are not re-opened around the cut. A
  prose block that does not fit after a lone heading is split so that the heading is not a chunk alone.
* Overlap: a chunk after another of its section starts with the longest whole trailing sentences or lines
  (lines for code) of the previous chunk's last block totalling at most ``chunk_overlap`` characters, if
  they fit; none after a heading or a complete code block, nor across sections. After a cut inside a
  sentence longer than ``chunk_size``: whole trailing words.
* Chunks are stripped slices of the input, non-empty, at most ``chunk_size`` long, and together cover every
  non-blank character. Text without headings is one section with the title as breadcrumb. Deterministic.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SEPARATORS: tuple[str, ...] = ("\n\n", "\n", " ", "")


class RecursiveSplitter:
    def __init__(self, chunk_size: int, chunk_overlap: int, separators: Sequence[str] = DEFAULT_SEPARATORS):
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError("chunk_overlap must be in [0, chunk_size)")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.separators = tuple(separators)

    def split(self, text: str) -> list[str]:
        return [c for c in self._split(text, self.separators) if c]

    def _split(self, text: str, separators: Sequence[str]) -> list[str]:
        separator = separators[-1]
        rest: tuple[str, ...] = ()
        for i, sep in enumerate(separators):
            if sep == "" or sep in text:
                separator, rest = sep, tuple(separators[i + 1 :])
                break
        pieces = text.split(separator) if separator else list(text)
        chunks: list[str] = []
        short: list[str] = []
        for piece in pieces:
            if len(piece) <= self.chunk_size:
                short.append(piece)
                continue
            if short:
                chunks.extend(self._merge(short, separator))
                short = []
            chunks.extend(self._split(piece, rest) if rest else [piece])
        if short:
            chunks.extend(self._merge(short, separator))
        return chunks

    def _merge(self, pieces: list[str], separator: str) -> list[str]:
        sep_len = len(separator)
        chunks: list[str] = []
        window: list[str] = []
        total = 0
        for piece in pieces:
            joined_len = total + len(piece) + (sep_len if window else 0)
            if joined_len > self.chunk_size and window:
                chunk = separator.join(window).strip()
                if chunk:
                    chunks.append(chunk)
                # Drop from the front until the kept tail fits the overlap and the new piece fits the chunk.
                while window and (
                    total > self.chunk_overlap
                    or total + len(piece) + (sep_len if window else 0) > self.chunk_size
                ):
                    total -= len(window[0]) + (sep_len if len(window) > 1 else 0)
                    window.pop(0)
            window.append(piece)
            total += len(piece) + (sep_len if len(window) > 1 else 0)
        chunk = separator.join(window).strip()
        if chunk:
            chunks.append(chunk)
        return chunks


# Structure-aware splitting.

_FENCE = re.compile(r"[ \t]*(`{3,}(?!.*`)|~{3,})")
_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*")
_LINES = re.compile(r"\n")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_SENTENCES_OR_LINES = re.compile(r"\n\s*|(?<=[.!?])\s+")
_WORDS = re.compile(r"\s+")
_HEADING_MARKUP = (
    (re.compile(r"\s*\{#[^}]*\}"), ""),  # {#anchor}
    (re.compile(r"(^|\s+)#+\s*$"), ""),  # closing sequence: "## Title ##"
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # [text](url) -> text
    (re.compile(r"[*`]|(?<!\w)_+|_+(?!\w)"), ""),  # emphasis and code marks; IVF_FLAT keeps its "_"
)
MAX_BREADCRUMB = 200

Block = tuple[int, int, str]  # text[start:end] and its kind: "heading", "prose" or "code"


@dataclass(frozen=True)
class Chunk:
    text: str  # the original text of the chunk, shown to users (no breadcrumb added)
    breadcrumb: str  # "Title > Section > Subsection" of the headings above the chunk ('' if none)


@dataclass(frozen=True)
class _Unit:
    """A span text[start:end] packed whole: a block, or a piece of a block too long to fit in a chunk."""

    start: int
    end: int
    block: int  # start of the block the span belongs to
    kind: str
    level: int = 0  # how finely the block is split already: the next index into _FINER_*


# How a unit too long to fit is split, coarsest first; None: RecursiveSplitter (words, then characters).
_FINER_CODE: tuple[re.Pattern[str] | None, ...] = (_LINES, None)
_FINER_TEXT: tuple[re.Pattern[str] | None, ...] = (_LINES, _SENTENCES, None)


class StructuredSplitter:
    """Split Markdown-like text along its sections and blocks; the rules are in the module docstring."""

    def __init__(self, chunk_size: int, chunk_overlap: int):
        RecursiveSplitter(chunk_size, chunk_overlap)  # validates the settings
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        self._words = RecursiveSplitter(chunk_size, 0)

    def split(self, text: str, title: str) -> list[Chunk]:
        title = clean_heading(title)
        sections = parse_sections(text)
        chunks: list[Chunk] = []
        units: list[_Unit] = []
        for i, (path, blocks) in enumerate(sections):
            units += [_Unit(start, end, start, kind) for start, end, kind in blocks]
            if i + 1 < len(sections) and all(unit.kind == "heading" for unit in units):
                continue  # only headings so far: they open the next section's first chunk
            crumb = breadcrumb(title, path)
            chunks += [Chunk(text[s:e].strip(), crumb) for s, e in self._pack(text, units)]
            units = []
        return chunks

    def _pack(self, text: str, units: list[_Unit]) -> list[tuple[int, int]]:
        """Greedily pack one section's units into chunk spans (start, end)."""
        spans: list[tuple[int, int]] = []
        queue = deque(units)
        start = end = 0
        last: _Unit | None = None
        headings_only = True  # the current chunk holds nothing but heading lines
        while queue:
            unit = queue.popleft()
            begin = start if last else unit.start
            too_long = unit.end - begin > self.chunk_size
            if too_long and (
                unit.end - unit.start > self.chunk_size or (headings_only and unit.kind == "prose")
            ):
                pieces = self._finer(text, unit)
                if pieces:
                    queue.extendleft(reversed(pieces))
                    continue
            # The first piece of a split block starts a chunk, unless the chunk holds only headings.
            opens_split_block = unit.level > 0 and unit.start == unit.block and not headings_only
            if last and (too_long or opens_split_block):
                spans.append((start, end))
                begin = self._overlap_start(text, start, end, last, unit)
                headings_only = begin == unit.start
            start, end, last = begin, unit.end, unit
            headings_only = headings_only and unit.kind == "heading"
        if last:
            spans.append((start, end))
        return spans

    def _finer(self, text: str, unit: _Unit) -> list[_Unit]:
        """The unit split at the next level that gives more than one piece; [] if none does."""
        patterns = _FINER_CODE if unit.kind == "code" else _FINER_TEXT
        for level in range(unit.level, len(patterns)):
            spans = self._spans(text, unit.start, unit.end, patterns[level])
            if len(spans) > 1:
                return [_Unit(start, end, unit.block, unit.kind, level + 1) for start, end in spans]
        return []

    def _spans(self, text: str, start: int, end: int, sep: re.Pattern[str] | None) -> list[tuple[int, int]]:
        """text[start:end] split at `sep` (None: by RecursiveSplitter), blank pieces left out."""
        spans: list[tuple[int, int]] = []
        if sep is None:
            # Without overlap RecursiveSplitter's chunks follow each other, only whitespace in between.
            for piece in self._words.split(text[start:end]):
                start = text.index(piece, start, end)
                spans.append((start, start + len(piece)))
                start += len(piece)
            return spans
        for match in sep.finditer(text, start, end):
            spans.append((start, match.start()))
            start = match.end()
        spans.append((start, end))
        return [(s, e) for s, e in spans if text[s:e].strip()]

    def _overlap_start(self, text: str, start: int, end: int, last: _Unit, unit: _Unit) -> int:
        """Where the chunk after text[start:end] (last unit `last`) starts; `unit` is its first unit."""
        same_block = unit.block == last.block
        if last.kind == "heading" or (last.kind == "code" and not same_block):
            return unit.start
        if same_block and "\n" not in text[end : unit.start] and text[end - 1] not in ".!?":
            separator = _WORDS  # a sentence (or code line) longer than chunk_size was cut between words
        else:
            separator = _LINES if last.kind == "code" else _SENTENCES_OR_LINES
        lowest = max(start, last.block)  # the overlap comes from the previous chunk's last block only
        for pos in [lowest, *(match.end() for match in separator.finditer(text, lowest, end))]:
            if end - pos <= self.chunk_overlap and unit.end - pos <= self.chunk_size:
                return pos
        return unit.start


def parse_sections(text: str) -> list[tuple[tuple[str, ...], list[Block]]]:
    """(heading path, blocks) for the text before the first heading, then for each heading's section."""
    sections: list[tuple[tuple[str, ...], list[Block]]] = [((), [])]
    stack: list[tuple[int, str]] = []  # (level, name) of the headings in effect
    fence, fence_indent = "", 0  # the marker and indentation of the open code fence
    in_prose = False
    pos = 0
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip())
        start, end, pos = pos + indent, pos + len(line), pos + len(line) + 1
        blocks = sections[-1][1]
        if fence and line.strip() and indent < fence_indent:
            fence = ""  # as in CommonMark, the end of the list item holding an indented fence closes it
        if fence:
            blocks[-1] = (blocks[-1][0], end, "code")
            marker = line.strip()
            if len(marker) >= len(fence) and marker == fence[0] * len(marker):
                fence = ""
        elif match := _FENCE.match(line):
            fence, fence_indent, in_prose = match[1], indent, False
            blocks.append((start, end, "code"))
        elif match := _HEADING.fullmatch(line):
            level, name, in_prose = len(match[1]), clean_heading(match[2] or ""), False
            stack = [(lv, n) for lv, n in stack if lv < level] + [(level, name)]
            sections.append((tuple(name for _, name in stack), [(start, end, "heading")]))
        elif not line.strip():
            in_prose = False
        elif in_prose:
            blocks[-1] = (blocks[-1][0], end, "prose")
        else:
            blocks.append((start, end, "prose"))
            in_prose = True
    return sections


def clean_heading(text: str) -> str:
    for pattern, replacement in _HEADING_MARKUP:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def breadcrumb(title: str, path: Sequence[str]) -> str:
    names = [name for name in path if name]
    if names and names[0].casefold() == title.casefold():
        names.pop(0)  # "# In-memory Index" under the title "In-memory Index"
    parts = [title, *names] if title else names
    crumb = " > ".join(parts)
    for drop in range(1, len(parts) - 1):  # too long: replace the middle levels with "…"
        if len(crumb) <= MAX_BREADCRUMB:
            break
        crumb = " > ".join([parts[0], "…", *parts[1 + drop :]])
    return crumb if len(crumb) <= MAX_BREADCRUMB else crumb[: MAX_BREADCRUMB - 1] + "…"
