import asyncio
import json
import logging
from typing import Any

import pytest

from ragserve.router import guard
from ragserve.router.guard import GuardMiddleware, GuardSettings, TokenBucket, digest


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
    client: str = "203.0.113.1",
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
    scope = {"type": "http", "path": path, "headers": raw, "client": (client, 50000)}
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
    status, _, body = call(settings, body=b"x" * 4096)  # chunked upload: no Content-Length
    assert status == 413
    assert json.loads(body) == {
        "error": {"type": "request_too_large", "message": "request body exceeds 2048 bytes", "field": "body"}
    }
    assert call(settings, body=b"x" * 1000)[0] == 200


def test_token_bucket_admits_a_burst_then_waits() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1)
    assert bucket.take() == 0 and bucket.take() > 0


def test_failed_authentications_lock_out_the_address_for_a_window(caplog: Any) -> None:
    settings = GuardSettings.build(["s3cret"], [], None, 1 << 20)
    now = [1000.0]
    settings.failed_auth.clock = lambda: now[0]
    wrong = {"Authorization": "Bearer guess"}
    with caplog.at_level(logging.WARNING, logger="ragserve.router.guard"):
        for _ in range(guard.AUTH_FAILURES_PER_WINDOW):
            assert call(settings, headers=wrong, client="198.51.100.7")[0] == 401
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "198.51.100.7" in logged and "guess" not in logged  # logged, without the key
    # Over the limit: 429 without looking at the key, so a right guess is not told apart from a wrong one.
    status, headers, body = call(settings, headers={"Authorization": "Bearer s3cret"}, client="198.51.100.7")
    assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_exceeded"
    assert 1 <= int(headers[b"retry-after"]) <= guard.AUTH_FAILURE_WINDOW_S
    assert call(settings, headers={"X-API-Key": "s3cret"}, client="198.51.100.8")[0] == 200  # per address
    now[0] += guard.AUTH_FAILURE_WINDOW_S
    assert call(settings, headers={"X-API-Key": "s3cret"}, client="198.51.100.7")[0] == 200  # window over


def test_failed_authentications_count_the_address_the_ingress_saw() -> None:
    """Behind HAProxy every request comes from the node's address: the last X-Forwarded-For entry (the
    one the Ingress appended) tells clients apart, so one client's failures do not lock out the rest."""
    settings = GuardSettings.build(["s3cret"], [], None, 1 << 20)
    for _ in range(guard.AUTH_FAILURES_PER_WINDOW):
        forged_then_real = {"X-Forwarded-For": "192.0.2.1, 198.51.100.7", "X-API-Key": "guess"}
        assert call(settings, headers=forged_then_real, client="10.0.0.5")[0] == 401
    locked = {"X-Forwarded-For": "198.51.100.7", "X-API-Key": "s3cret"}
    assert call(settings, headers=locked, client="10.0.0.5")[0] == 429
    other = {"X-Forwarded-For": "192.0.2.1", "X-API-Key": "s3cret"}
    assert call(settings, headers=other, client="10.0.0.5")[0] == 200


def test_failed_authentication_tracking_is_bounded() -> None:
    limiter = guard.FailedAuthLimiter(limit=2, window_s=60, max_addresses=100, clock=lambda: 0.0)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter.windows) == 100
    limiter.failed("10.0.3.231")  # the newest addresses are kept
    assert limiter.retry_after("10.0.3.231") > 0 and limiter.retry_after("10.0.0.0") == 0
