"""Who is asking: an API key or an OIDC bearer token becomes a Principal (tenant, groups, scopes).

- Keys from ``$router.auth.api_keys_env`` and ``key_sha256`` are the operator's: tenant ``default``, every
  group, every scope (what they could do before principals existed).
- ``router.auth.keys_file``: a YAML list of ``{name, key_sha256, tenant, groups, scopes}``, one principal per
  key, mounted from a Secret. Keys are compared as SHA-256 digests, never stored or logged in plain text.
- ``router.auth.oidc``: a JWT signed by the issuer's keys (JWKS from a URL or a file) with the configured
  issuer and audience, not expired; tenant and groups come from the configured claims, scopes from the
  ``scope`` claim (space separated) or the configured defaults. PyJWT checks signature, expiry, issuer and
  audience.

Scopes: ``read`` (search, query, chat, models), ``write`` (add documents), ``admin`` (delete documents,
collection stats). What a principal may see is its tenant's documents, and of those the ones without groups
or sharing one of its groups (``groups`` None: every group; store/filters.py compiles that into Milvus).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragserve.config import OidcConfig, ScopeName, read_only
from ragserve.store.filters import DEFAULT_TENANT, Access

log = logging.getLogger(__name__)

Scope = ScopeName
ALL_SCOPES: frozenset[str] = frozenset({"read", "write", "admin"})
# (method, path prefix) -> the scope it needs; anything else under /v1 needs read.
ROUTE_SCOPES: tuple[tuple[str, str, Scope], ...] = (
    ("POST", "/v1/documents", "write"),
    ("DELETE", "/v1/documents/", "admin"),
    ("GET", "/v1/collections/stats", "admin"),
)


class AuthError(ValueError):
    """The keys file or the OIDC settings cannot be used (the message names the entry)."""


@dataclass(frozen=True)
class Principal:
    name: str
    tenant: str = DEFAULT_TENANT
    groups: frozenset[str] | None = None  # None: every group of the tenant (operator keys, auth off)
    scopes: frozenset[str] = ALL_SCOPES

    @property
    def access(self) -> Access:
        """What this principal may read and change in the store."""
        return Access(self.tenant, self.groups)


ANONYMOUS = Principal("anonymous")  # authentication off: one tenant, everything allowed


def required_scope(method: str, path: str) -> Scope | None:
    """The scope a request needs, or None for paths outside the API (the page, the schema)."""
    for route_method, prefix, scope in ROUTE_SCOPES:
        if method == route_method and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
            return scope
    return "read" if path.startswith("/v1/") else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyEntry(BaseModel):
    """One entry of the keys file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    key_sha256: str = Field(pattern=r"^(sha256:)?[0-9a-fA-F]{64}$")
    tenant: str = Field(DEFAULT_TENANT, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    groups: list[str] = Field(default_factory=list, max_length=64)
    scopes: list[Scope] = Field(default_factory=read_only, min_length=1)

    @field_validator("groups")
    @classmethod
    def _check_groups(cls, groups: list[str]) -> list[str]:
        return [check_group(g) for g in groups]

    def principal(self) -> Principal:
        return Principal(self.name, self.tenant, frozenset(self.groups), frozenset(self.scopes))


def check_group(group: str) -> str:
    if not 1 <= len(group) <= 128 or any(ord(c) < 32 for c in group):
        raise ValueError(f"a group name must be 1..128 printable characters (got {group!r})")
    return group


def load_keys_file(path: Path) -> dict[str, Principal]:
    """key digest -> principal, from the keys file; AuthError naming the entry when it is wrong."""
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise AuthError(f"router.auth.keys_file {path}: {err}") from None
    if not isinstance(entries, list):
        raise AuthError(f"router.auth.keys_file {path}: expected a YAML list of keys")
    principals: dict[str, Principal] = {}
    names: set[str] = set()
    for i, raw in enumerate(entries):
        try:
            entry = KeyEntry.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise AuthError(f"router.auth.keys_file {path}: entry {i}: {where}: {first['msg']}") from None
        key = entry.key_sha256.removeprefix("sha256:").lower()
        if key in principals or entry.name in names:
            raise AuthError(f"router.auth.keys_file {path}: entry {i} ({entry.name}) repeats a name or key")
        principals[key] = entry.principal()
        names.add(entry.name)
    return principals


class OidcVerifier:
    """Checks bearer JWTs against the issuer's keys (PyJWT): signature, expiry, issuer, audience."""

    ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")

    def __init__(self, cfg: OidcConfig):
        import jwt

        self.cfg = cfg
        if cfg.jwks_file is not None:
            try:
                jwks = yaml.safe_load(Path(cfg.jwks_file).read_text(encoding="utf-8"))
                self._keys: Any = jwt.PyJWKSet.from_dict(jwks)
            except (OSError, yaml.YAMLError, jwt.PyJWTError) as err:
                raise AuthError(f"router.auth.oidc.jwks_file {cfg.jwks_file}: {err}") from None
            self._client = None
        else:
            self._client = jwt.PyJWKClient(str(cfg.jwks_url), cache_keys=True, lifespan=cfg.jwks_cache_s)

    def _key(self, token: str) -> Any:
        import jwt

        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError(f"no key {kid!r} in the JWKS")

    def verify(self, token: str) -> Principal | None:
        """The token's principal, or None when it does not verify (the reason is logged, not answered)."""
        import jwt

        cfg = self.cfg
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=list(self.ALGORITHMS),
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as err:
            log.warning("bearer token refused: %s", err)
            return None
        tenant = claims.get(cfg.tenant_claim) or DEFAULT_TENANT
        groups = claims.get(cfg.groups_claim) or []
        raw_scopes = claims.get("scope")
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else list(cfg.default_scopes)
        if not isinstance(tenant, str) or not isinstance(groups, list):
            log.warning(
                "bearer token refused: %s / %s claims of the wrong type", cfg.tenant_claim, cfg.groups_claim
            )
            return None
        try:
            checked = frozenset(check_group(str(g)) for g in groups)
        except ValueError as err:
            log.warning("bearer token refused: %s", err)
            return None
        return Principal(f"oidc:{claims['sub']}", tenant, checked, frozenset(scopes) & ALL_SCOPES)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")
