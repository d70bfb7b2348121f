"""The router's FastAPI app is built per replica: admission settings are the app's own, never a global."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from ragserve.router.api import create_api
from ragserve.router.guard import GuardSettings, digest


class ModelsOnly:
    """Just what GET /v1/models and /healthz touch (the admission path is under test, not the service)."""

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]}


def build(guard: GuardSettings) -> TestClient:
    return TestClient(create_api(ModelsOnly(), guard, 5.0, lambda: ""))  # type: ignore[arg-type]


def test_two_apps_keep_their_own_guard_settings() -> None:
    locked = build(GuardSettings(key_digests=[digest("k1")]))
    open_ = build(GuardSettings())
    assert locked.get("/v1/models").status_code == 401
    assert locked.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
    assert open_.get("/v1/models").status_code == 200  # building the locked app changed nothing here
    assert locked.get("/healthz").status_code == 200  # probes stay open


def test_guard_settings_refuse_a_required_key_that_is_missing() -> None:
    import pytest

    from ragserve.config import AuthConfig
    from ragserve.router.deployment import guard_settings

    auth = AuthConfig(required=True, api_keys_env="MY_KEYS")
    with pytest.raises(RuntimeError, match=r"\$MY_KEYS"):
        guard_settings(auth, 1024, environ={})
    settings = guard_settings(auth, 1024, environ={"MY_KEYS": "a, b"})
    assert settings.key_digests == [digest("a"), digest("b")]


class Broken(ModelsOnly):
    """A service whose Milvus is down: the internal error names hosts and collections."""

    INTERNAL = "Milvus hybrid_search on 'ragserve_chunks' failed: connect to 10.0.0.7:19530 refused"

    async def search(self, body: Any, principal: Any) -> Any:
        from ragserve.store.connection import StoreError

        raise StoreError(self.INTERNAL)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        return False, {"milvus": f"unavailable: MilvusException: {self.INTERNAL}", "generator": "ok"}


def test_503_names_the_dependency_and_logs_the_error(caplog: Any) -> None:
    client = TestClient(create_api(Broken(), GuardSettings(), 5.0, lambda: ""))  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="ragserve.router.api"):
        r = client.post("/v1/search", json={"query": "q"}, headers={"X-Request-ID": "req-42"})
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json() == {"error": {"type": "service_unavailable", "message": "Milvus unavailable"}}
    logged = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert any("req-42" in m and Broken.INTERNAL in m for m in logged), logged  # the detail: in the log


def test_readyz_names_failed_checks_without_their_error_text(caplog: Any) -> None:
    client = TestClient(create_api(Broken(), GuardSettings(), 5.0, lambda: ""))  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="ragserve.router.api"):
        r = client.get("/readyz", headers={"X-Request-ID": "probe-1"})
    assert r.status_code == 503
    assert r.json() == {"ready": False, "checks": {"milvus": "unavailable", "generator": "ok"}}
    logged = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert any("probe-1" in m and Broken.INTERNAL in m for m in logged), logged


def test_chunked_upload_over_the_body_limit_gets_413() -> None:
    client = build(GuardSettings(max_body_bytes=2048))

    def chunks() -> Any:  # a generator body: Transfer-Encoding: chunked, no Content-Length
        for _ in range(4):
            yield b"x" * 1024

    r = client.post("/v1/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {
        "error": {"type": "request_too_large", "message": "request body exceeds 2048 bytes", "field": "body"}
    }
    small = client.post("/v1/models", content=iter([b"{}"]))  # under the limit: passes the guard
    assert small.status_code == 405
