"""Request and response bodies of the HTTP API, with the bounds every field must respect."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ragserve import limits
from ragserve.config import ConversationMethod
from ragserve.generator.citations import CitedBy
from ragserve.store.filters import MAX_GROUPS, check_groups
from ragserve.store.filters import Filter as StoreFilter

RerankChoice = Annotated[
    bool | None,
    Field(
        description="Rerank the candidates with the cross-encoder (null: when a reranker is deployed; true "
        "without one is an error)."
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filter(_Strict):
    """Structured metadata filter; the store compiles it to Milvus' language (no raw expressions accepted)."""

    sources: list[str] | None = Field(
        None,
        min_length=1,
        max_length=limits.MAX_FILTER_SOURCES,
        description="Only chunks from these sources.",
    )
    source_prefix: str | None = Field(
        None,
        min_length=1,
        max_length=limits.MAX_SOURCE_CHARS,
        description="Only sources starting with this folder/URL prefix.",
    )

    _store: StoreFilter = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> Filter:
        """Built once, here: the store's own checks (lengths, control characters) are reported as 422."""
        self._store = StoreFilter(tuple(self.sources or ()), self.source_prefix)
        return self

    def to_store(self) -> StoreFilter:
        return self._store


def store_filter(f: Filter | None) -> StoreFilter | None:
    return f.to_store() if f else None


class Sampling(_Strict):
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=limits.MAX_NEW_TOKENS)


class QueryRequest(_Strict):
    question: str = Field(
        ..., min_length=1, max_length=limits.MAX_QUESTION_CHARS, description="The user's question."
    )
    top_k: int | None = Field(
        None, ge=1, le=limits.MAX_TOP_K, description="Chunks to retrieve (default from config)."
    )
    filter: Filter | None = None
    rerank: RerankChoice = None
    stream: bool = Field(False, description="Server-sent events instead of one JSON body.")
    sampling: Sampling | None = None


class SearchRequest(_Strict):
    query: str = Field(..., min_length=1, max_length=limits.MAX_QUESTION_CHARS)
    top_k: int | None = Field(None, ge=1, le=limits.MAX_TOP_K)
    filter: Filter | None = None
    rerank: RerankChoice = None


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


class CitationOut(BaseModel):
    start: int = Field(description="Where the sentence starts in `answer` (characters).")
    end: int = Field(description="Where it ends (exclusive).")
    sources: list[int] = Field(description="1-based numbers in `sources` the sentence rests on.")
    by: CitedBy = Field(
        description="`model`: the answer's own [n] marks; `attributed`: matched after generation to the "
        "source chunk holding most of the sentence's words (generator/citations.py); `quoted`: a line of "
        "the evidence section quoting that source (prompt.evidence_quotes, generator/evidence.py)."
    )


class QueryResponse(BaseModel):
    answer: str
    sources: list[SourceOut]
    usage: Usage
    timings: dict[str, float]
    model: str
    finish_reason: str | None = None
    contexts_dropped: int = 0
    grounded: bool = Field(
        True,
        description="False: nothing relevant was retrieved; the answer says the documents do not cover it.",
    )
    citations: list[CitationOut] = Field(
        default_factory=list, description="Each answer sentence that names or rests on a returned source."
    )


class SearchResponse(BaseModel):
    hits: list[SourceOut]
    timings: dict[str, float]


class DocumentIn(_Strict):
    source: str = Field(
        ..., min_length=1, max_length=limits.MAX_SOURCE_CHARS, description="Unique id/path of the document."
    )
    text: str = Field(
        ..., min_length=1, max_length=limits.MAX_DOCUMENT_CHARS, description="Plain text or Markdown."
    )
    title: str | None = Field(None, max_length=limits.MAX_TITLE_CHARS)
    groups: list[str] | None = Field(
        None,
        max_length=MAX_GROUPS,
        description="Who may read the document within the caller's tenant: principals sharing one of these "
        "groups (each among the caller's own). Absent or empty: everyone in the tenant.",
    )

    @field_validator("groups")
    @classmethod
    def _check_groups(cls, groups: list[str] | None) -> list[str] | None:
        return None if groups is None else list(check_groups(groups))

    @field_validator("source")
    @classmethod
    def _check_source(cls, source: str) -> str:
        return limits.check_source(source)


class DocumentsRequest(_Strict):
    documents: list[DocumentIn] = Field(..., min_length=1, max_length=limits.MAX_DOCUMENTS)


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
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=limits.MAX_MESSAGES)

    @field_validator("messages")
    @classmethod
    def _bound_text(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The whole conversation is templated and tokenized for every request: bound its size here."""
        total = sum(len(m.text()) for m in messages)
        if total > limits.MAX_CHAT_CHARS:
            raise ValueError(f"at most {limits.MAX_CHAT_CHARS} characters in all messages (got {total})")
        return messages

    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=limits.MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=limits.MAX_NEW_TOKENS)
    n: int = Field(1, ge=1, le=1, description="Only one choice is supported.")
    top_k: int | None = Field(
        None, ge=1, le=limits.MAX_TOP_K, description="ragserve extension: chunks to retrieve."
    )
    filter: Filter | None = Field(None, description="ragserve extension: metadata filter.")
    rerank: bool | None = Field(
        None, description="ragserve extension: rerank with the cross-encoder (null: when deployed)."
    )
    conversation: ConversationMethod | None = Field(
        None,
        description="ragserve extension: how a follow-up's retrieval query is built from the conversation "
        "(last, append, fused, rewrite; null: retrieval.conversation).",
    )


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
