"""Admission in front of the API: who is asking (router/auth.py: API keys, OIDC tokens) and whether that
principal has the route's scope, failed-authentication lockout, per-principal rate limits, body size.
The principal goes to the app in ``scope["state"]["principal"]`` (``request.state.principal``).

A pure ASGI middleware (not BaseHTTPMiddleware) so streamed responses and client disconnects pass
through untouched. Keys are compared as SHA-256 digests with ``hmac.compare_digest`` and never logged.
All state (token buckets, failure counts) is per router replica: N replicas admit up to N times a limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ragserve.router.auth import ANONYMOUS, OidcVerifier, Principal, digest, looks_like_jwt, required_scope
from ragserve.router.models import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")  # cluster-network only: the Ingress does not route them

# Failed authentications per client address and window, then 429 until the window ends. Constants, not
# config: 20 a minute is far too few to guess a random key and far more than a client with a wrong key
# needs to notice. Addresses tracked per replica are capped so a flood of addresses cannot grow memory.
AUTH_FAILURES_PER_WINDOW = 20
AUTH_FAILURE_WINDOW_S = 60.0
AUTH_TRACKED_ADDRESSES = 10_000
MAX_ADDRESS_CHARS = 64  # an IPv6 address is at most 45; a forged X-Forwarded-For is cut to this

log = logging.getLogger(__name__)


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
class FailedAuthLimiter:
    """Failed authentications per client address, in fixed windows that start at an address's first
    failure. An address with ``limit`` failures in its window gets 429 until the window ends whatever key
    it presents: admitting a right key there would tell a guesser which guess was right. A success does
    not clear the count (clients behind one address would clear a guesser's). The oldest windows are
    dropped first once ``max_addresses`` are tracked."""

    limit: int = AUTH_FAILURES_PER_WINDOW
    window_s: float = AUTH_FAILURE_WINDOW_S
    max_addresses: int = AUTH_TRACKED_ADDRESSES
    clock: Callable[[], float] = time.monotonic
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)  # address -> (start, failures)

    def retry_after(self, address: str) -> float:
        """0 when ``address`` may present a key, else the seconds until its window ends."""
        window = self.windows.get(address)
        if window is None:
            return 0.0
        start, failures = window
        left = start + self.window_s - self.clock()
        if left <= 0:
            del self.windows[address]
            return 0.0
        return left if failures >= self.limit else 0.0

    def failed(self, address: str) -> int:
        """Count a failure; returns the address's failures in its window."""
        now = self.clock()
        start, failures = self.windows.get(address, (now, 0))
        if now - start >= self.window_s:
            start, failures = now, 0
        if failures == 0:  # a new window goes last, so the dict stays ordered by window start
            self.windows.pop(address, None)
            while len(self.windows) >= self.max_addresses:
                del self.windows[next(iter(self.windows))]
        self.windows[address] = (start, failures + 1)
        return failures + 1


@dataclass
class GuardSettings:
    key_digests: list[str] = field(default_factory=list)  # the operator's keys: default tenant, everything
    principals: dict[str, Principal] = field(default_factory=dict)  # keys file: digest -> principal
    oidc: OidcVerifier | None = None
    rate_per_minute: int | None = None  # per principal; without authentication one bucket for every client
    max_body_bytes: int = 10 * 1024 * 1024
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    failed_auth: FailedAuthLimiter = field(default_factory=FailedAuthLimiter)

    @classmethod
    def build(
        cls,
        keys: Iterable[str],
        digests: Iterable[str],
        rate_per_minute: int | None,
        max_body: int,
        principals: dict[str, Principal] | None = None,
        oidc: OidcVerifier | None = None,
    ) -> GuardSettings:
        all_digests = [digest(k) for k in keys if k] + [d.removeprefix("sha256:").lower() for d in digests]
        return cls(all_digests, principals or {}, oidc, rate_per_minute, max_body)

    @property
    def enabled(self) -> bool:
        return bool(self.key_digests or self.principals or self.oidc)

    def identify(self, presented: str | None) -> Principal | None:
        """The principal of a key or token, or None. Keys are compared against every digest (no early
        exit); a JWT goes to the OIDC verifier when one is configured."""
        if not presented:
            return None
        if self.oidc is not None and looks_like_jwt(presented):
            return self.oidc.verify(presented)
        candidate = digest(presented)
        match = None
        for known in self.key_digests:
            if hmac.compare_digest(candidate, known):
                match = Principal(f"key:{known[:12]}")
        for known, principal in self.principals.items():
            if hmac.compare_digest(candidate, known):
                match = principal
        return match


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; of a repeated header the last one (for X-Forwarded-For: the nearest proxy's)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _presented_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key")


def client_address(scope: Scope, headers: dict[str, str]) -> str:
    """The address the edge saw: the last X-Forwarded-For entry, which the Ingress appends, else the TCP
    peer. The peer alone would not do: behind Serve's HAProxy every request comes from the node, and one
    client's failures would lock out all. Earlier entries are the client's to forge; the last one is
    forgeable only by a client that reaches the Router without the Ingress (the cluster network)."""
    forwarded = headers.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip()
    if forwarded:
        return forwarded[:MAX_ADDRESS_CHARS]
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _reject(
    send: Send,
    status: int,
    type_: str,
    message: str,
    retry_after: float | None = None,
    field_: str | None = None,
) -> None:
    body = json.dumps(error_body(type_, message, field_)).encode()
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
        headers = _headers(scope)
        principal = ANONYMOUS
        if s.enabled:
            address = client_address(scope, headers)
            locked_s = s.failed_auth.retry_after(address)
            if locked_s:  # before the key is looked at: see FailedAuthLimiter
                await _reject(send, 429, "rate_limit_exceeded", "too many failed authentications", locked_s)
                return
            presented = _presented_key(headers)
            match = s.identify(presented)
            if match is None:
                failures = s.failed_auth.failed(address)
                log.warning(  # never the key itself
                    "failed authentication from %s on %s: %s (%d in this window, %d allowed)",
                    address,
                    scope.get("path", ""),
                    "an unknown key" if presented else "no key",
                    failures,
                    s.failed_auth.limit,
                )
                await _reject(
                    send,
                    401,
                    "authentication_error",
                    "a valid API key or token is required (Authorization: Bearer KEY)",
                )
                return
            principal = match
            needed = required_scope(scope.get("method", "GET"), scope.get("path", ""))
            if needed is not None and needed not in principal.scopes:
                await _reject(send, 403, "permission_denied", f"this key lacks the {needed!r} scope")
                return
        scope.setdefault("state", {})["principal"] = principal
        if s.rate_per_minute:
            bucket = s.buckets.setdefault(
                principal.name, TokenBucket(s.rate_per_minute / 60, max(1, s.rate_per_minute / 6))
            )
            wait = bucket.take()
            if wait:
                await _reject(send, 429, "rate_limit_exceeded", "rate limit exceeded for this API key", wait)
                return
        length = headers.get("content-length")
        too_large = f"request body exceeds {s.max_body_bytes} bytes"
        if length is not None and length.isdigit() and int(length) > s.max_body_bytes:
            await _reject(send, 413, "request_too_large", too_large, field_="body")
            return
        # Read the body here, not as the app reads it: a chunked upload (no Content-Length) over the
        # limit must be answered 413 by us, and FastAPI turns any error raised while it reads into 400.
        received = await _read_body(receive, s.max_body_bytes)
        if received is None:
            await _reject(send, 413, "request_too_large", too_large, field_="body")
            return
        await self.app(scope, _replay(received, receive), send)


async def _read_body(receive: Receive, limit: int) -> list[Message] | None:
    """The request's messages up to the end of its body (or a disconnect); None past ``limit`` bytes.
    The app reads a whole body before it answers anyway, so holding it here costs no extra memory."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body"):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The messages read already, then the server's own (a disconnect while a response streams)."""
    pending = deque(messages)

    async def replayed() -> Message:
        return pending.popleft() if pending else await receive()

    return replayed
