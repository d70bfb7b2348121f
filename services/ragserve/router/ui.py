"""The web playground at ``/ui``: three static files shipped in the package, served by the Router.

Served by a middleware placed outside the API guard, not by a route behind it: the page must load before
the user has typed a key. The page holds no secret; every API call it makes carries the key the user typed
and passes the guard like any other client's. The files are read once at app build (a handful of KB) and
served only by name, so no path from the URL ever reaches the file system.

The Content-Security-Policy allows the page's own files only: no inline script or style, no other origin,
no framing. Links are relative (``ui/`` -> ``../v1/...``) so the page works under any route prefix.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI

from ragserve.router.guard import ASGIApp, Receive, Scope, Send

PREFIX = "/ui"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def load_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, content type), from the installed package."""
    folder = resources.files("ragserve.router") / "ui"
    return {name: ((folder / name).read_bytes(), kind) for name, kind in FILES.items()}


class PlaygroundMiddleware:
    """Answers GET/HEAD under ``/ui`` (below the route prefix); passes everything else on."""

    def __init__(self, app: ASGIApp, files: dict[str, tuple[bytes, str]]):
        self.app = app
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "").rstrip("/")
        if root and path.startswith(root):  # Serve may pass the route prefix in both
            path = path[len(root) :]
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("GET", "HEAD"):
            await _respond(
                scope, send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET, HEAD")]
            )
        elif path == PREFIX:  # relative links need the trailing slash
            await _respond(scope, send, 308, b"", "text/plain", [(b"location", b"ui/")])
        else:
            found = self.files.get(path[len(PREFIX) + 1 :] or "index.html")
            if found is None:
                await _respond(scope, send, 404, b"not found\n", "text/plain")
            else:
                await _respond(scope, send, 200, *found)


async def _respond(
    scope: Scope,
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-cache"),  # a rollout's new page is picked up at once
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


def add_playground(api: FastAPI, enabled: bool) -> None:
    """Called by create_api between the guard and the metrics middleware, so the page loads without a key
    and its requests are still counted (route "unmatched"). Does nothing when ``router.ui`` is off."""
    if enabled:
        api.add_middleware(PlaygroundMiddleware, files=load_files())
