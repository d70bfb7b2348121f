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
