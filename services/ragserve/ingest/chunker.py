"""Recursive character splitter (the algorithm of LangChain's RecursiveCharacterTextSplitter).

Split on the coarsest separator that occurs ("\\n\\n", then "\\n", " ", ""), recurse into pieces that are
still too long, then merge neighbouring pieces up to ``chunk_size`` keeping about ``chunk_overlap``
characters of the previous chunk at the start of the next.
"""

from __future__ import annotations

from collections.abc import Sequence

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
