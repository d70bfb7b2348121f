import asyncio
import json
from typing import Any

import pytest

from ragserve.router.guard import BodyTooLarge, GuardMiddleware, GuardSettings, TokenBucket, digest


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def call(
    settings: GuardSettings,
    path: str = "/v1/query",
    headers: dict[str, str] | None = None,
    body: bytes = b"{}",
):
    sent: list[dict[str, Any]] = []
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)] or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "path": path, "headers": raw}
    asyncio.run(GuardMiddleware(ok_app, settings)(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), sent[1]["body"]


def test_no_keys_configured_means_open() -> None:
    assert call(GuardSettings())[0] == 200


def test_api_keys_are_required_and_compared_by_digest() -> None:
    settings = GuardSettings.build(["s3cret"], [], None, 1 << 20)
    assert "s3cret" not in repr(settings)  # only digests are kept
    status, headers, body = call(settings)
    assert status == 401 and headers[b"www-authenticate"].startswith(b"Bearer")
    assert json.loads(body)["error"]["type"] == "authentication_error"
    assert call(settings, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert call(settings, headers={"Authorization": "Bearer s3cret"})[0] == 200
    assert call(settings, headers={"X-API-Key": "s3cret"})[0] == 200
    by_digest = GuardSettings.build([], ["sha256:" + digest("other")], None, 1 << 20)
    assert call(by_digest, headers={"Authorization": "Bearer other"})[0] == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_need_no_key(path: str) -> None:
    assert call(GuardSettings.build(["k"], [], None, 1 << 20), path=path)[0] == 200


def test_rate_limit_per_key_answers_429_with_retry_after() -> None:
    settings = GuardSettings.build(["a", "b"], [], 6, 1 << 20)  # burst 1, then one per 10 s
    assert call(settings, headers={"X-API-Key": "a"})[0] == 200
    status, headers, _ = call(settings, headers={"X-API-Key": "a"})
    assert status == 429 and 1 <= int(headers[b"retry-after"]) <= 10
    assert call(settings, headers={"X-API-Key": "b"})[0] == 200  # buckets are per key


def test_body_limit_by_header_and_by_stream() -> None:
    settings = GuardSettings.build([], [], None, 2048)
    status, _, body = call(settings, headers={"Content-Length": "4096"}, body=b"x" * 4096)
    assert status == 413 and b"2048" in body
    with pytest.raises(BodyTooLarge):  # chunked upload without Content-Length: FastAPI maps this to 413
        call(settings, body=b"x" * 4096)
    assert call(settings, body=b"x" * 1000)[0] == 200


def test_token_bucket_admits_a_burst_then_waits() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1)
    assert bucket.take() == 0 and bucket.take() > 0
