"""Principals and scopes (issue 31 items 1, 2, 6): the keys file, OIDC bearer tokens checked with keys made
here, 403 naming the missing scope, and writes attributed to their principal in the log."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from ragserve.config import OidcConfig
from ragserve.router.api import create_api
from ragserve.router.auth import AuthError, OidcVerifier, Principal, digest, load_keys_file, required_scope
from ragserve.router.guard import GuardSettings

ISSUER, AUDIENCE = "https://idp.example.test/realms/r", "ragserve"


def keys_file(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(json.dumps(entries))  # JSON is YAML
    return path


ENTRIES = [
    {
        "name": "reader",
        "key_sha256": digest("r-key"),
        "tenant": "acme",
        "groups": ["eng"],
        "scopes": ["read"],
    },
    {
        "name": "writer",
        "key_sha256": "sha256:" + digest("w-key"),
        "tenant": "acme",
        "scopes": ["read", "write"],
    },
    {"name": "root", "key_sha256": digest("a-key"), "tenant": "acme", "scopes": ["read", "write", "admin"]},
]


def test_the_keys_file_gives_each_key_its_principal(tmp_path: Path) -> None:
    principals = load_keys_file(keys_file(tmp_path, ENTRIES))
    reader = principals[digest("r-key")]
    assert reader == Principal("reader", "acme", frozenset({"eng"}), frozenset({"read"}))
    assert principals[digest("w-key")].groups == frozenset()  # no groups: only documents without groups
    bad = [{**ENTRIES[0], "scopes": ["delete"]}]
    with pytest.raises(AuthError, match=r"entry 0: scopes\.0"):
        load_keys_file(keys_file(tmp_path, bad))
    with pytest.raises(AuthError, match="repeats a name or key"):
        load_keys_file(keys_file(tmp_path, [ENTRIES[0], {**ENTRIES[0], "name": "again"}]))


def test_routes_need_their_scope() -> None:
    assert required_scope("POST", "/v1/query") == "read"
    assert required_scope("GET", "/v1/models") == "read"
    assert required_scope("POST", "/v1/documents") == "write"
    assert required_scope("DELETE", "/v1/documents/a/b.md") == "admin"
    assert required_scope("GET", "/v1/collections/stats") == "admin"
    assert required_scope("GET", "/openapi.json") is None


class Recorder:
    """The service side of the routes under test: records which principal each call came with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": []}

    async def add_documents(self, body: Any, principal: Principal) -> dict[str, Any]:
        self.calls.append(("add", principal.name))
        return {"files": len(body.documents)}

    async def delete_document(self, source: str, principal: Principal) -> dict[str, Any]:
        self.calls.append(("delete", principal.name))
        return {"source": source}

    async def stats(self, principal: Principal) -> dict[str, Any]:
        self.calls.append(("stats", principal.name))
        return {"chunks": 0}


def client(settings: GuardSettings) -> tuple[TestClient, Recorder]:
    service = Recorder()
    return TestClient(create_api(service, settings, 5.0, lambda: "")), service  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_request_outside_its_scopes_gets_403_naming_the_scope(tmp_path: Path) -> None:
    settings = GuardSettings.build(
        ["operator"], [], None, 1 << 20, load_keys_file(keys_file(tmp_path, ENTRIES))
    )
    api, service = client(settings)
    doc = {"documents": [{"source": "a.md", "text": "x"}]}
    assert api.get("/v1/models", headers=bearer("r-key")).status_code == 200
    refused = api.post("/v1/documents", json=doc, headers=bearer("r-key"))
    assert refused.status_code == 403 and "'write' scope" in refused.json()["error"]["message"]
    assert api.post("/v1/documents", json=doc, headers=bearer("w-key")).status_code == 200
    assert api.delete("/v1/documents/a.md", headers=bearer("w-key")).status_code == 403
    assert api.get("/v1/collections/stats", headers=bearer("w-key")).status_code == 403
    assert api.delete("/v1/documents/a.md", headers=bearer("a-key")).status_code == 200
    assert api.delete("/v1/documents/a.md", headers=bearer("operator")).status_code == 200  # every scope
    assert api.get("/v1/models", headers=bearer("nope")).status_code == 401
    assert [c[0] for c in service.calls] == ["add", "delete", "delete"]
    assert service.calls[0][1] == "writer" and service.calls[1][1] == "root"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_file(tmp_path: Path, key: rsa.RSAPrivateKey, kid: str = "k1") -> Path:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}))
    return path


def token(key: rsa.RSAPrivateKey, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def test_oidc_tokens_are_checked_and_carry_tenant_groups_and_scopes(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey, caplog: Any
) -> None:
    cfg = OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file(tmp_path, signing_key), leeway_s=0)
    verifier = OidcVerifier(cfg)
    good = verifier.verify(token(signing_key, tenant="acme", groups=["hr"], scope="read write"))
    assert good == Principal("oidc:u-1", "acme", frozenset({"hr"}), frozenset({"read", "write"}))
    assert verifier.verify(token(signing_key)) == Principal(
        "oidc:u-1", "default", frozenset(), frozenset({"read"})
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with caplog.at_level(logging.WARNING, logger="ragserve.router.auth"):
        assert verifier.verify(token(signing_key, exp=int(time.time()) - 10)) is None  # expired
        assert verifier.verify(token(signing_key, aud="someone-else")) is None
        assert verifier.verify(token(signing_key, iss="https://evil.example.test")) is None
        assert verifier.verify(token(other)) is None  # signed by a key the issuer never published
    assert len(caplog.records) == 4
    api, _ = client(GuardSettings(oidc=verifier))
    assert api.get("/v1/models", headers=bearer(token(signing_key))).status_code == 200
    assert api.get("/v1/models", headers=bearer(token(other))).status_code == 401
    doc = {"documents": [{"source": "a.md", "text": "x"}]}
    assert api.post("/v1/documents", json=doc, headers=bearer(token(signing_key))).status_code == 403


def test_oidc_needs_exactly_one_key_source() -> None:
    with pytest.raises(ValueError, match="exactly one of jwks_url and jwks_file"):
        OidcConfig(issuer=ISSUER, audience=AUDIENCE)
