"""Request and response bodies of the HTTP API, with the bounds every field must respect."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragserve.store import filters

MAX_QUESTION = 8000
MAX_SOURCES_IN_FILTER = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filter(_Strict):
    """Structured metadata filter; the server builds the Milvus expression (no raw expressions accepted)."""

    sources: list[str] | None = Field(
        None, min_length=1, max_length=MAX_SOURCES_IN_FILTER, description="Only chunks from these sources."
    )
    source_prefix: str | None = Field(
        None, min_length=1, max_length=1024, description="Only sources starting with this folder/URL prefix."
    )

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, v: list[str] | None) -> list[str] | None:
        for s in v or []:
            if not s or len(s) > 1024:
                raise ValueError("each source must be 1..1024 characters")
            filters.quote(s)  # rejects control characters
        return v

    def expression(self) -> str:
        return filters.all_of(
            filters.source_in(self.sources) if self.sources else None,
            filters.source_prefix(self.source_prefix) if self.source_prefix else None,
        )


def filter_expression(f: Filter | None) -> str:
    """The Milvus expression of an optional request filter ('' = no filter)."""
    return f.expression() if f else ""


class Sampling(_Strict):
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=32768)


class QueryRequest(_Strict):
    question: str = Field(..., min_length=1, max_length=MAX_QUESTION, description="The user's question.")
    top_k: int | None = Field(None, ge=1, le=1000, description="Chunks to retrieve (default from config).")
    filter: Filter | None = None
    stream: bool = Field(False, description="Server-sent events instead of one JSON body.")
    sampling: Sampling | None = None


class SearchRequest(_Strict):
    query: str = Field(..., min_length=1, max_length=MAX_QUESTION)
    top_k: int | None = Field(None, ge=1, le=1000)
    filter: Filter | None = None


class SourceOut(BaseModel):
    source: str
    title: str
    chunk_index: int
    score: float
    chunk: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class QueryResponse(BaseModel):
    answer: str
    sources: list[SourceOut]
    usage: Usage
    timings: dict[str, float]
    model: str
    finish_reason: str | None = None
    contexts_dropped: int = 0


class SearchResponse(BaseModel):
    hits: list[SourceOut]
    timings: dict[str, float]


class DocumentIn(_Strict):
    source: str = Field(..., min_length=1, max_length=1024, description="Unique id/path of the document.")
    text: str = Field(..., min_length=1, max_length=5_000_000, description="Plain text or Markdown.")
    title: str | None = Field(None, max_length=1000)


class DocumentsRequest(_Strict):
    documents: list[DocumentIn] = Field(..., min_length=1, max_length=1000)


# ---- OpenAI-compatible chat ----------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ... are accepted and ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    # The official client sends fields we do not use (user, metadata, ...): accept and ignore them.
    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, max_length=256)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    n: int = Field(1, ge=1, le=1, description="Only one choice is supported.")
    top_k: int | None = Field(None, ge=1, le=1000, description="ragserve extension: chunks to retrieve.")
    filter: Filter | None = Field(None, description="ragserve extension: metadata filter.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragserve"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_body(type_: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "message": message}
    if field:
        body["field"] = field
    return {"error": body}
