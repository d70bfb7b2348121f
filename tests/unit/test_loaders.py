from pathlib import Path

import pytest

from ragserve.ingest.chunker import StructuredSplitter
from ragserve.ingest.loaders import LoaderError, load_document

HTML = b"""<!doctype html><html><head><title>HNSW parameters</title><style>.x{color:red}</style>
<script>var tracking = 1;</script></head><body>
<nav><a href="/">Home</a> <a href="/docs">Docs</a> Why Milvus</nav>
<header>Try Managed Milvus FREE</header>
<main><h1>In-memory Index</h1><p>HNSW builds a graph.</p><p>M is the maximum degree&nbsp;of nodes.</p></main>
<footer>Copyright Zilliz</footer></body></html>"""


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_html_strips_navigation_and_markup(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "index.html", HTML))
    assert doc.title == "HNSW parameters"
    assert "HNSW builds a graph." in doc.text and "M is the maximum degree of nodes." in doc.text
    for noise in ("Why Milvus", "Managed Milvus", "Copyright", "tracking", "color:red", "<p>"):
        assert noise not in doc.text


def test_html_headings_become_atx_lines_and_pre_blocks_fenced_code(tmp_path: Path) -> None:
    html = b"""<html><head><title>Search</title></head><body><nav>Docs menu</nav><main>
    <h1>Vector <em>search</em><a class="headerlink" href="#s">\xc2\xb6</a></h1><p>Search the <b>index</b>.</p>
    <h3>Python example</h3><pre><code class="language-python">def search(q):
        return  client.search(q)


    print("```")</code></pre><p>Inline <code>top_k</code> stays in its line.</p></main></body></html>"""
    doc = load_document(write(tmp_path, "search.html", html))
    assert doc.title == "Search"
    assert "Docs menu" not in doc.text
    lines = doc.text.split("\n")
    assert "# Vector search" in lines and "### Python example" in lines
    code = '````python\ndef search(q):\n        return  client.search(q)\n\n    print("```")\n````'
    assert code in doc.text  # indentation and spacing kept; the fence is longer than the ``` inside
    assert "\ntop_k\n" in doc.text  # inline code is text, not a fenced block
    chunks = StructuredSplitter(512, 51).split(doc.text, doc.title)
    assert [c.breadcrumb for c in chunks] == [
        "Search > Vector search",
        "Search > Vector search > Python example",
    ]
    assert code in chunks[1].text


def test_markdown_front_matter_title_and_layout_tags(tmp_path: Path) -> None:
    lines = ["---", "id: index.md", "title: In-memory Index", "---", "", "# Heading", ""]
    lines += ['<div class="alert note">', "A note.", "</div>", "", "Use `List<String>`.", ""]
    md = "\n".join(lines).encode()
    doc = load_document(write(tmp_path, "index.md", md))
    assert doc.title == "In-memory Index"
    assert "id: index.md" not in doc.text
    assert "<div" not in doc.text and "A note." in doc.text
    assert "List<String>" in doc.text


def test_markdown_title_falls_back_to_heading(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "page.md", b"Intro\n\n# The Heading\n\nBody\n"))
    assert doc.title == "The Heading"


def test_blank_lines_collapse_without_losing_code_indentation(tmp_path: Path) -> None:
    md = b"```python\ndef f():\n    x = 1\n   \n\n\n    return x\n```\n"
    doc = load_document(write(tmp_path, "code.md", md))
    assert doc.text == "```python\ndef f():\n    x = 1\n\n    return x\n```"


def test_text_file_and_whitespace_cleanup(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "notes.txt", b"\xef\xbb\xbfline one   \r\n\r\n\r\n\r\nline two\n"))
    assert doc.text == "line one\n\nline two"
    assert doc.title == "notes"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("bin.txt", b"\x00\x01\x02binary\x00", "binary"),
        ("latin1.md", "café crème".encode("latin-1"), "UTF-8"),
        ("empty.txt", b"   \n\n", "no text"),
        ("fake.pdf", b"hello", "not a PDF"),
    ],
)
def test_unloadable_files_raise_a_clear_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    with pytest.raises(LoaderError, match=reason):
        load_document(write(tmp_path, name, data))


def pdf_from_objects(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of numbered objects (1 is the catalog), xref offsets computed; ``trailer``: extra entries."""
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        trailer,
        xref,
    )
    return out


def pdf_stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a Helvetica text line."""
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            pdf_stream(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "guide.pdf", minimal_pdf("Milvus supports HNSW indexes")))
    assert "Milvus supports HNSW indexes" in doc.text
    assert doc.title == "guide"
