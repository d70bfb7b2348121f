"""File loaders: HTML (navigation and markup stripped), Markdown, plain text and PDF -> clean text + title."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

import yaml
from bs4 import BeautifulSoup, Tag

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
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
# Layout tags that documentation Markdown embeds; code such as `List<String>` is left alone.
_MD_LAYOUT_TAGS = re.compile(
    r"</?(div|span|p|br|img|a|table|thead|tbody|tr|td|th|sup|sub|details|summary)\b[^>]*>", re.I
)
_BLANK_RUNS = re.compile(r"\n{3,}")  # after rstrip; keeps the indentation of the next line


class LoaderError(ValueError):
    """The file cannot be turned into text (binary, wrong encoding, unreadable, empty)."""


@dataclass(frozen=True)
class Document:
    text: str
    title: str


def load_document(path: Path) -> Document:
    """Load one file by extension. Raises LoaderError with a reason a user can act on."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise LoaderError(f"cannot read file: {err.strerror or err}") from None
    return parse_document(raw, path)


def parse_document(raw: bytes, path: PurePath) -> Document:
    """A file's bytes as a Document: its suffix picks the parser, its stem is the fallback title (files read
    from object storage come here directly)."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        doc = _load_pdf(path, raw)
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
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _decode_text(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise LoaderError("binary file (contains NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LoaderError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})") from None


def _load_markdown(text: str, path: PurePath) -> Document:
    title = ""
    match = _FRONT_MATTER.match(text)
    if match:
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError:
            meta = None
        if isinstance(meta, dict) and meta.get("title"):
            title = str(meta["title"])
        text = text[match.end() :]
    if not title:
        heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
        title = heading.group(1).strip() if heading else path.stem
    return Document(_MD_LAYOUT_TAGS.sub("", text), title)


def _load_html(raw: bytes, path: PurePath) -> Document:
    if b"\x00" in raw[:8192]:
        raise LoaderError("binary file (contains NUL bytes), not HTML")
    soup = BeautifulSoup(raw, "html.parser")
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


def _mark_code_and_headings(body: Tag | BeautifulSoup) -> dict[str, str]:
    """Turn h1..h6 into Markdown ATX heading lines, and <pre> (or multi-line <code>) into placeholder lines
    mapped to their fenced code blocks, whose whitespace the line clean-up would otherwise collapse."""
    blocks: dict[str, str] = {}
    for el in body.find_all(["pre", "code"]):
        code = el.get_text().strip("\n")
        if el.find_parent("pre") or (el.name == "code" and "\n" not in code.strip()):
            continue  # inside a <pre> already, or inline code
        classes = [c for tag in (el, el.find("code")) if tag for c in tag.get("class") or []]
        lang = next((c.removeprefix("language-") for c in classes if c.startswith("language-")), "")
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
        placeholder = f"\x00{len(blocks)}\x00"  # NUL: not in HTML text
        blocks[placeholder] = f"{fence}{lang}\n{code}\n{fence}"
        el.replace_with(f"\n\n{placeholder}\n\n")
    for el in body.find_all(_HTML_HEADINGS):
        text = " ".join(el.get_text(" ").replace("\u00b6", " ").split())  # ¶: permalink of Sphinx/MkDocs
        el.replace_with(f"\n\n{'#' * int(el.name[1])} {text}\n\n" if text else "\n")
    return blocks


def _load_pdf(path: PurePath, raw: bytes) -> Document:
    if not raw.startswith(b"%PDF"):
        raise LoaderError("not a PDF file (missing %PDF header)")
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else path.stem
    except (PdfReadError, ValueError, KeyError) as err:
        raise LoaderError(f"unreadable PDF: {err}") from None
    return Document("\n\n".join(pages), title)
