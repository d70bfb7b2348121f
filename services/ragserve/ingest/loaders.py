"""File loaders: HTML (navigation and markup stripped), Markdown, plain text and PDF -> clean text + title.

Files come from users, so a hostile one must fail alone: every parser here is linear in the file's size
(regexes without nested scans, YAML front matter without aliases, HTML markup that would make Python's
html.parser rescan to the end of input defused first) and every error a parser raises becomes a
LoaderError, which callers report per file while the run goes on. PDFs also take ``time_limit_s``, checked
between pages and content-stream operators: a long document is cut off with a reason instead of holding a
worker.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePath

import yaml
from bs4 import BeautifulSoup, ParserRejectedMarkup, Tag

# Elements that carry site chrome rather than content.
_HTML_NOISE = (
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "svg",
    "button",
    "iframe",
)
_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Fences of horizontal whitespace only: with \s* the opening fence could swallow newlines and be retried at
# each one, quadratic in a file of "---" and blank lines.
_FRONT_MATTER = re.compile(r"\A---[ \t\r]*\n(.*?)\n---[ \t\r]*\n", re.DOTALL)
_FRONT_MATTER_MAX_CHARS = 64 * 1024  # YAML is parsed in pure Python; real front matter is a few lines
_FRONT_MATTER_MAX_DEPTH = 32  # PyYAML's composer recurses once per level
# Layout tags that documentation Markdown embeds; code such as `List<String>` is left alone. Attributes
# stop at the next "<": with [^>]* every unclosed "<div" would scan to the end of the file (quadratic).
_MD_LAYOUT_TAGS = re.compile(
    r"</?(div|span|p|br|img|a|table|thead|tbody|tr|td|th|sup|sub|details|summary)\b[^<>]*>", re.I
)
# What html.parser reads as markup, and the openers it closes by searching ahead: _defuse_unclosed_markup.
_HTML_TAG_START = re.compile(rb"<[a-zA-Z/!?]")
_HTML_OPENERS = re.compile(rb"<!(?:--|\[([a-zA-Z][-_.a-zA-Z0-9]*)?)")
_BLANK_RUNS = re.compile(r"\n{3,}")  # after rstrip; keeps the indentation of the next line


class LoaderError(ValueError):
    """The file cannot be turned into text (binary, wrong encoding, unreadable, empty)."""


@dataclass(frozen=True)
class Document:
    text: str
    title: str


def load_document(path: Path, *, time_limit_s: float | None = None) -> Document:
    """Load one file by extension. Raises LoaderError with a reason a user can act on."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise LoaderError(f"cannot read file: {err.strerror or err}") from None
    return parse_document(raw, path, time_limit_s=time_limit_s)


def parse_document(raw: bytes, path: PurePath, *, time_limit_s: float | None = None) -> Document:
    """A file's bytes as a Document: its suffix picks the parser, its stem is the fallback title (files read
    from object storage come here directly). Only LoaderError escapes, for any input. ``time_limit_s``: the
    time a PDF may take, checked between pages and operators (the other formats are linear in their size,
    which ingest.max_file_mb bounds)."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        doc = _load_pdf(path, raw, time_limit_s)
    elif suffix in (".html", ".htm"):
        doc = _load_html(raw, path)
    else:
        text = _decode_text(raw)
        doc = _load_markdown(text, path) if suffix in (".md", ".markdown") else Document(text, path.stem)
    text = clean_text(doc.text)
    if not text:
        raise LoaderError("no text content")
    return Document(text=text, title=clean_text(doc.title)[:1000] or path.stem)


def clean_text(text: str) -> str:
    # NUL is never text (only the first 8 KiB are sniffed for binary files); nor does it reach the store.
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _decode_text(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise LoaderError("binary file (contains NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LoaderError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})") from None


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with bounded nesting. An alias is shared when loaded, but turning the
    value into a string expands it: nine levels of nine aliases in ~300 bytes make a title of 9**9 items."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not allowed in front matter")
        if self._depth >= _FRONT_MATTER_MAX_DEPTH:
            raise yaml.YAMLError(f"front matter nested deeper than {_FRONT_MATTER_MAX_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _front_matter_title(block: str) -> str:
    """The ``title`` of YAML front matter, or "" when there is none or the block is unusable (malformed,
    over 64 KiB, aliases, deep nesting, a value its type cannot hold): such front matter is ignored like any
    broken metadata, and the body is still loaded with its heading as the title."""
    if len(block) > _FRONT_MATTER_MAX_CHARS:
        return ""
    try:
        meta = yaml.load(block, Loader=_FrontMatterLoader)  # a SafeLoader: no arbitrary objects
        return str(meta["title"]) if isinstance(meta, dict) and meta.get("title") else ""
    except Exception:  # not only YAMLError: "date: 2020-13-45" and 5000 digits raise ValueError, "!!bool x"
        return ""  # KeyError, "!!timestamp x" AttributeError (PyYAML's constructors leak what they call)


def _load_markdown(text: str, path: PurePath) -> Document:
    title = ""
    match = _FRONT_MATTER.match(text)
    if match:
        title = _front_matter_title(match.group(1))
        text = text[match.end() :]
    if not title:
        heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
        title = heading.group(1).strip() if heading else path.stem
    return Document(_MD_LAYOUT_TAGS.sub("", text), title)


def _load_html(raw: bytes, path: PurePath) -> Document:
    if b"\x00" in raw[:8192]:
        raise LoaderError("binary file (contains NUL bytes), not HTML")
    # NUL later on is dropped: the code placeholders below are NUL-delimited.
    raw = _defuse_unclosed_markup(raw.replace(b"\x00", b""))
    if not raw.strip():  # BeautifulSoup would log a decoding warning for it
        raise LoaderError("no text content")
    try:
        soup = BeautifulSoup(raw, "html.parser")
    except ParserRejectedMarkup as err:  # e.g. "<![" without a keyword, before Python 3.13.5
        raise LoaderError(f"unparsable HTML: {err}") from None
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    for tag in soup(_HTML_NOISE):
        tag.decompose()
    body = soup.find("main") or soup.find("article") or soup.body or soup
    if not title:
        h1 = body.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else path.stem
    code_blocks = _mark_code_and_headings(body)
    lines = (" ".join(s.split()) for s in body.get_text("\n").split("\n"))
    return Document("\n".join(code_blocks.get(line, line) for line in lines), title)


def _defuse_unclosed_markup(raw: bytes) -> bytes:
    """Before Python 3.13.5 (gh-135462) html.parser retries markup left open at end of input once per "<",
    each time searching to the end for a closer: 200 KB of "<a" took 20 s, 400 KB of "<!--" 76 s. So cut
    the input at the first tag after the last ">" (HTML5 drops a tag open at the end, and no closer can lie
    there), and escape each "<!--" or "<![" with no closer after it that every Python accepts (escaped, a
    closer further on stays one). Linear: openers are visited in order and a closer is searched for again
    only once the one found last lies behind."""
    end = len(raw)
    if tag := _HTML_TAG_START.search(raw, raw.rfind(b">") + 1):
        end = tag.start()
    unclosed: list[int] = []
    next_closer: dict[bytes, int] = {}  # closer -> where it was found last; `end`: nowhere further on
    for m in _HTML_OPENERS.finditer(raw, 0, end):
        if m[0] == b"<!--":
            closer, start = b"-->", m.end()
        else:  # marked section: MS Office "<![if ...]>" ends in "]>", CDATA and the rest in "]]>"
            name = (m[1] or b"").lower()
            closer, start = (b"]>" if name in (b"if", b"else", b"endif") else b"]]>"), m.start() + 3
        found = next_closer.get(closer, -1)
        if found < start:
            found = raw.find(closer, start, end)
            next_closer[closer] = found = end if found < 0 else found
        if found == end:
            unclosed.append(m.start())
    parts, prev = [], 0
    for pos in unclosed:
        parts += [raw[prev:pos], b"&lt;"]
        prev = pos + 1
    return b"".join([*parts, raw[prev:end]])


def _mark_code_and_headings(body: Tag | BeautifulSoup) -> dict[str, str]:
    """Turn h1..h6 into Markdown ATX heading lines, and <pre> (or multi-line <code>) into placeholder lines
    mapped to their fenced code blocks, whose whitespace the line clean-up would otherwise collapse. Once an
    element is handled its descendants are skipped, so nested <pre>/<code>/headings cost linear time."""
    blocks: dict[str, str] = {}
    seen: set[int] = set()  # ids of the descendants of handled elements, which find_all still returns
    for el in body.find_all(["pre", "code"]):
        if id(el) in seen:
            continue  # inside a <pre> (or code block) already, or inside inline code
        seen.update(id(d) for d in el.descendants)
        code = el.get_text().strip("\n")
        if el.name == "code" and "\n" not in code.strip():
            continue  # inline code
        classes = [c for tag in (el, el.find("code")) if tag for c in tag.get("class") or []]
        lang = next((c.removeprefix("language-") for c in classes if c.startswith("language-")), "")
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
        placeholder = f"\x00{len(blocks)}\x00"  # NUL: not in HTML text
        blocks[placeholder] = f"{fence}{lang}\n{code}\n{fence}"
        el.replace_with(f"\n\n{placeholder}\n\n")
    seen.clear()
    for el in body.find_all(_HTML_HEADINGS):
        if id(el) in seen:
            continue  # a heading inside a heading went with its parent
        seen.update(id(d) for d in el.descendants)
        text = " ".join(el.get_text(" ").replace("\u00b6", " ").split())  # ¶: permalink of Sphinx/MkDocs
        el.replace_with(f"\n\n{'#' * int(el.name[1])} {text}\n\n" if text else "\n")
    return blocks


def _load_pdf(path: PurePath, raw: bytes, time_limit_s: float | None) -> Document:
    if not raw.startswith(b"%PDF"):
        raise LoaderError("not a PDF file (missing %PDF header)")
    from pypdf import PdfReader

    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    pages: list[str] = []

    def check_time(*_: object) -> None:
        """Between pages and before each content-stream operator: one page can hold millions of them (a
        75 MB decompressed stream is pypdf's limit)."""
        if deadline is not None and time.monotonic() > deadline:
            raise LoaderError(f"PDF text extraction took over {time_limit_s:g} s ({len(pages)} pages read)")

    try:
        reader = PdfReader(io.BytesIO(raw))
        for page in reader.pages:
            check_time()
            pages.append(page.extract_text(visitor_operand_before=check_time) or "")
        title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else path.stem
    except LoaderError:
        raise
    except Exception as err:  # pypdf raises far more than PdfReadError on broken files (issue 27)
        raise LoaderError(f"unreadable PDF: {type(err).__name__}: {err}"[:500]) from None
    return Document("\n\n".join(pages), title)
