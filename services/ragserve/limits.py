"""Bounds on client input: one owner for each, used by the HTTP models and the pipeline alike.

Bounds that operators tune (``router.max_top_k``, ``router.max_body_bytes``) live in the config; these are
the hard limits the code is built for.
"""

from __future__ import annotations

MAX_QUESTION_CHARS = 8000  # a question or search query
MAX_TOP_K = 1000  # chunks per retrieval, whatever router.max_top_k allows
MAX_FILTER_SOURCES = 100  # sources listed in one filter
MAX_SOURCE_CHARS = 1024  # a source path or URL (filters, documents)
MAX_SOURCE_BYTES = 2048  # the same in UTF-8: the store's field width (a longer one could never be matched)
MAX_TITLE_CHARS = 1000
MAX_DOCUMENT_CHARS = 5_000_000  # one document sent to POST /v1/documents
MAX_DOCUMENTS = 1000  # documents in one POST /v1/documents
MAX_MESSAGES = 200  # chat messages in one request
MAX_CHAT_CHARS = 100_000  # the text of all messages of one chat request together
MAX_NEW_TOKENS = 32768  # max_tokens a client may ask for (the model's context bounds it further)


def check_question(text: object, field: str = "question") -> str:
    """The stripped text, or ValueError naming ``field``."""
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise ValueError(f"{field}: must not be empty")
    if len(text) > MAX_QUESTION_CHARS:
        raise ValueError(f"{field}: at most {MAX_QUESTION_CHARS} characters (got {len(text)})")
    return text


def check_source(value: object, field: str = "source") -> str:
    """A document's source name as every entry point must take it: 1..MAX_SOURCE_CHARS characters and at
    most MAX_SOURCE_BYTES in UTF-8 (stored whole, so it can be found and deleted by name), no control
    characters. Returns it, or raises ValueError naming ``field``."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SOURCE_CHARS:
        raise ValueError(f"{field}: each value must be 1..{MAX_SOURCE_CHARS} characters")
    if len(value.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
        raise ValueError(f"{field}: at most {MAX_SOURCE_BYTES} bytes in UTF-8")
    if any(ord(c) < 32 and c != "\t" for c in value):
        raise ValueError(f"{field}: control characters are not allowed")
    return value


def check_top_k(top_k: int, maximum: int = MAX_TOP_K) -> int:
    if not 1 <= top_k <= min(maximum, MAX_TOP_K):
        raise ValueError(f"top_k: must be between 1 and {min(maximum, MAX_TOP_K)} (got {top_k})")
    return top_k
