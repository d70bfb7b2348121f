"""The whole application's settings (``AppConfig``): the HTTP router and its auth, observability, and the
role sections of the sibling modules."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ragserve.config.base import Section
from ragserve.config.ingest import IngestConfig
from ragserve.config.models import EmbedderConfig, GeneratorConfig, RerankerConfig, StoreConfig
from ragserve.config.profiles import PROFILES
from ragserve.config.query import PromptConfig, RetrievalConfig
from ragserve.config.serve import Resources, ServeOptions


class TracingConfig(Section):
    """OpenTelemetry traces through Ray Serve's own tracing (docs/observability.md, "Traces")."""

    enabled: bool = Field(
        False, description="Export one trace per request (proxy, router, replicas) over OTLP."
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="OTLP/HTTP traces endpoint, e.g. http://tempo.monitoring:4318/v1/traces (required when "
        "enabled); set as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT for every ragserve process.",
    )
    sampling_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of requests traced (parent-based: a trace is whole or absent).",
    )

    @model_validator(mode="after")
    def _endpoint_when_enabled(self) -> TracingConfig:
        if self.enabled and not self.endpoint:
            raise ValueError("endpoint is required when tracing is enabled")
        return self


class ObservabilityConfig(Section):
    tracing: TracingConfig = Field(default_factory=TracingConfig, description="Distributed traces (OTLP).")
    serve_access_log: bool = Field(
        False,
        description="Serve's access log: a line per request in each replica's log file. Off: ragserve's "
        "metrics (and traces, when on) record every request, and the line costs 0.3-0.5 ms of every replica "
        'call on a 2-core node (load-tests/RESULTS.md, "HAProxy ingress").',
    )


# What an API key or token may do (router/auth.py maps routes to these).
ScopeName = Literal["read", "write", "admin"]


def read_only() -> list[ScopeName]:
    return ["read"]


class OidcConfig(Section):
    """Bearer JWTs from an OpenID Connect issuer, checked against its published keys."""

    issuer: str = Field(description="The tokens' `iss`, exactly (e.g. https://idp.example.com/realms/x).")
    audience: str = Field(description="The `aud` a token must carry for this API.")
    jwks_url: str | None = Field(None, description="Where the issuer publishes its keys (JWKS).")
    jwks_file: Path | None = Field(
        None, description="The issuer's keys (JWKS JSON) on disk, instead of a URL."
    )
    jwks_cache_s: int = Field(
        300, ge=0, le=86400, description="How long keys fetched from jwks_url are kept."
    )
    tenant_claim: str = Field("tenant", description="The claim naming the caller's tenant (absent: default).")
    groups_claim: str = Field("groups", description="The claim listing the caller's groups.")
    default_scopes: list[ScopeName] = Field(
        default_factory=read_only, description="Scopes of a token without a `scope` claim."
    )
    leeway_s: int = Field(30, ge=0, le=600, description="Clock skew allowed on exp/nbf/iat.")

    @model_validator(mode="after")
    def _one_key_source(self) -> OidcConfig:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("router.auth.oidc: set exactly one of jwks_url and jwks_file")
        return self


class AuthConfig(Section):
    api_keys_env: str = Field(
        "RAGSERVE_API_KEYS", description="Environment variable with comma-separated API keys (from a Secret)."
    )
    key_sha256: list[str] = Field(
        default_factory=list, description="Accepted keys as SHA-256 hex digests (no plaintext in config)."
    )
    keys_file: Path | None = Field(
        None,
        description="YAML list of {name, key_sha256, tenant, groups, scopes}: one principal per key (mount "
        "it from a Secret). Keys from api_keys_env and key_sha256 stay the operator's: tenant default, "
        "every group and scope.",
    )
    oidc: OidcConfig | None = Field(None, description="Accept OIDC bearer tokens (JWTs) as well as keys.")
    required: bool = Field(False, description="Refuse to start without at least one key or OIDC.")
    rate_limit_per_minute: int | None = Field(
        None,
        ge=1,
        description="Requests per minute per API key, bursts of up to 10 s worth; 429 with Retry-After "
        "beyond. Each router replica counts on its own, so N replicas admit up to N times this; without "
        "keys all clients share one count per replica. Unset: no limit.",
    )

    @field_validator("key_sha256")
    @classmethod
    def _check_digests(cls, v: list[str]) -> list[str]:
        for d in v:
            if not re.fullmatch(r"(sha256:)?[0-9a-fA-F]{64}", d):
                raise ValueError("each entry must be a SHA-256 hex digest (64 hex characters)")
        return v


class RouterConfig(Section):
    host: str = Field("127.0.0.1", description="`ragserve serve`: HTTP bind address.")
    port: int = Field(8000, ge=1, le=65535, description="`ragserve serve`: HTTP port.")
    route_prefix: str = Field("/", pattern=r"^/", description="URL prefix of the API.")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="End-to-end limit per request.")
    first_token_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="503 when the generator yields no token within this (dead/restarting); a stream whose "
        "next token takes longer ends with an error event.",
    )
    max_top_k: int = Field(50, ge=1, le=1000, description="Largest top_k a client may ask for.")
    document_writes: int = Field(
        1,
        ge=1,
        le=64,
        description="POST /v1/documents requests one router replica runs at once; more get 429 with "
        "Retry-After, so ingestion through the API cannot starve searches of the replica's threads.",
    )
    embed_documents_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="One embedding call of a document write (up to ingest.write_group_chunks chunks) slower "
        "than this fails the write with 504; what was written before stays (writes are idempotent).",
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    ui: bool = Field(
        False,
        description="Serve the web playground at <route_prefix>/ui (docs/ui.md): a static page that calls "
        "the public API with the key its user types; the page itself loads without a key.",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys and rate limits.")
    deployment: ServeOptions = Field(
        description="Router (HTTP ingress): replicas, autoscaling, admission (Serve options)."
    )
    resources: Resources = Field(description="Per-replica CPUs and GPUs.")


class AppConfig(Section):
    profile: str = Field(
        "local",
        description="Profile the defaults came from (a file of ragserve/profiles).",
        json_schema_extra={"enum": list(PROFILES)},
    )
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(os.environ),
        description="Per-user state: the Milvus Lite file and generated models.",
    )
    hf_offline: bool = Field(True, description="Set HF_HUB_OFFLINE=1: load models only from disk.")
    embedder: EmbedderConfig = Field(description="Query/document encoder.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Milvus vector store.")
    generator: GeneratorConfig = Field(description="vLLM generator.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt building.")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="Dense or hybrid search.")
    reranker: RerankerConfig = Field(description="Optional cross-encoder reranking of the candidates.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Document ingestion.")
    router: RouterConfig = Field(description="HTTP API (Serve ingress).")
    observability: ObservabilityConfig = Field(
        default_factory=ObservabilityConfig, description="Traces (metrics need no settings)."
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        if v not in PROFILES:
            raise ValueError(f"unknown profile {v!r}; choose one of {', '.join(PROFILES)}")
        return v

    @model_validator(mode="after")
    def _resolve_store_uri(self) -> AppConfig:
        if self.store.uri is None:
            if self.profile == "production":
                raise ValueError("store.uri is required in the production profile (http(s)://host:19530)")
            self.store.uri = str(self.data_dir / "milvus.db")
        return self

    @model_validator(mode="after")
    def _resolve_export_dir(self) -> AppConfig:
        if self.embedder.export_dir is None:
            self.embedder.export_dir = self.cache_dir
        return self

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "models"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$RAGSERVE_HOME``, else ``$XDG_DATA_HOME/ragserve``, else ``~/.local/share/ragserve``."""
    if env.get("RAGSERVE_HOME"):
        return Path(env["RAGSERVE_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "ragserve"
