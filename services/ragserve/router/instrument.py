"""HTTP-level metrics: every request counted by route template and status, and timed (stage "total").

A pure ASGI middleware, outermost, so requests the guard rejects (401/413/429) are counted too, and a
streamed response is timed until its last byte. A request cancelled before its response started (the
client went away and Serve cancelled the handler) counts as 499, nginx's "client closed request", not as a
server error. Routes are labelled by their template (``/v1/documents/{source:path}``), never by the raw
path, to keep the label set bounded.
"""

from __future__ import annotations

import asyncio
import time

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp as StarletteApp

from ragserve.observability import metrics
from ragserve.router.guard import ASGIApp, Message, Receive, Scope, Send


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
        if match == Match.PARTIAL and partial is None:  # path known, method not allowed
            partial = str(getattr(route, "path", "other"))
    return partial or "unmatched"


class RequestMetrics:
    def __init__(self, app: ASGIApp, api: StarletteApp):
        self.app = app
        self.api = api  # read its routes per request: Serve's ingress re-registers them on the replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_template(getattr(self.api, "routes", []), scope)
        token = metrics.current_route.set(route)
        status = 0  # no response started yet
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            status = status or 499
            raise
        finally:
            metrics.current_route.reset(token)
            # 0: an exception escaped before any response, which the server answers with 500.
            metrics.REQUESTS.inc(route=route, status=str(status or 500))
            metrics.STAGE_LATENCY.observe(time.perf_counter() - started, stage="total", route=route)
