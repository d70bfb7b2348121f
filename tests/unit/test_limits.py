"""Source names are checked whole, by characters and by bytes, at every entry point (issue 27 item 10)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragserve.config import IngestConfig
from ragserve.ingest.loaders import Document, LoaderError
from ragserve.ingest.prepare import make_splitter, prepare_text
from ragserve.limits import MAX_SOURCE_BYTES, MAX_SOURCE_CHARS
from ragserve.router.models import DocumentsRequest
from ragserve.store.filters import Filter

CJK = "文" * MAX_SOURCE_CHARS  # within the character limit, 3 bytes each: over the store's field width


def test_a_source_over_the_stores_width_in_bytes_is_refused_everywhere() -> None:
    assert len(CJK) == MAX_SOURCE_CHARS and len(CJK.encode()) > MAX_SOURCE_BYTES
    with pytest.raises(ValidationError) as err:
        DocumentsRequest.model_validate({"documents": [{"source": CJK, "text": "x"}]})
    (error,) = err.value.errors()
    assert error["loc"] == ("documents", 0, "source") and f"at most {MAX_SOURCE_BYTES} bytes" in error["msg"]
    with pytest.raises(ValueError, match=f"sources: at most {MAX_SOURCE_BYTES} bytes"):
        Filter((CJK,))  # DELETE /v1/documents/{source} and filters go through here
    cfg = IngestConfig()
    with pytest.raises(LoaderError, match="bytes"):  # a file whose path is that long: reported, not cut
        prepare_text(Document("text", "t"), CJK, cfg, make_splitter(cfg))


def test_a_source_just_within_both_limits_is_taken() -> None:
    fits = "文" * (MAX_SOURCE_BYTES // 3)
    assert DocumentsRequest.model_validate({"documents": [{"source": fits, "text": "x"}]}).documents
    assert Filter((fits,)).sources == (fits,)
