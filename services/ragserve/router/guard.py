"""Admission in front of the API: API keys, per-key rate limits, body size.

A pure ASGI middleware (not BaseHTTPMiddleware) so streamed responses and client disconnects pass
through untouched. Keys are compared as SHA-256 digests with ``hmac.compare_digest`` and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")  # cluster-network only: the Ingress does not route them


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 when admitted, else the seconds until a token is available."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


@dataclass
class GuardSettings:
    key_digests: list[str] = field(default_factory=list)  # empty: authentication off
    rate_per_minute: int | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    @classmethod
    def build(
        cls, keys: Iterable[str], digests: Iterable[str], rate_per_minute: int | None, max_body: int
    ) -> GuardSettings:
        all_digests = [digest(k) for k in keys if k] + [d.removeprefix("sha256:").lower() for d in digests]
        return cls(all_digests, rate_per_minute, max_body)

    def identify(self, presented: str | None) -> str | None:
        """The matching key digest, or None. Compares against every digest (no early exit)."""
        if not presented:
            return None
        candidate = digest(presented)
        match = None
        for known in self.key_digests:
            if hmac.compare_digest(candidate, known):
                match = known
        return match


def _presented_key(scope: Scope) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key")


async def _reject(
    send: Send, status: int, type_: str, message: str, retry_after: float | None = None
) -> None:
    body = json.dumps({"error": {"type": type_, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="ragserve"'))
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Settings are passed in by the app factory (router/api.py): one object per router replica."""

    def __init__(self, app: ASGIApp, settings: GuardSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        s = self.settings
        identity = "anonymous"
        if s.key_digests:
            match = s.identify(_presented_key(scope))
            if match is None:
                await _reject(
                    send,
                    401,
                    "authentication_error",
                    "a valid API key is required (Authorization: Bearer KEY)",
                )
                return
            identity = match
        if s.rate_per_minute:
            bucket = s.buckets.setdefault(
                identity, TokenBucket(s.rate_per_minute / 60, max(1, s.rate_per_minute / 6))
            )
            wait = bucket.take()
            if wait:
                await _reject(send, 429, "rate_limit_exceeded", "rate limit exceeded for this API key", wait)
                return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > s.max_body_bytes:
            await _reject(send, 413, "request_too_large", f"request body exceeds {s.max_body_bytes} bytes")
            return
        await self.app(scope, _limited(receive, s.max_body_bytes), send)


def _limited(receive: Receive, limit: int) -> Receive:
    """Enforce the body limit on chunked uploads too (no Content-Length)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit
