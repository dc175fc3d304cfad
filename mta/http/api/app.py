"""The API's aiohttp server: routes, the error and metrics middleware, start and stop. It runs in
the daemon's event loop beside the SMTP listeners (`MtaDaemon` starts it when `[api] listen` is
set)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from mta.http.api import campaigns, erasure, feeds, messages
from mta.http.api import idempotency as idem
from mta.http.api.context import CTX, ApiContext
from mta.http.api.errors import make_error_middleware
from mta.http.api.holdback import HoldbackReleaser
from mta.http.api.holdback import ensure_table as ensure_holdback_table
from mta.http.api.openapi import document
from mta.http.console import routes as console
from warmup_base.listen import parse_hostport

log = logging.getLogger("mta.api")


class _MalformedRequests(logging.Filter):
    """aiohttp logs a malformed request (the client's fault, already answered 400) as an error
    with a traceback; one line at info level says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "malformed HTTP request refused: %s", (first,)
        return True


server_log = logging.getLogger("mta.api.http")
server_log.addFilter(_MalformedRequests())


def _metrics_middleware(ctx: ApiContext) -> Any:
    @web.middleware
    async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        response = await handler(request)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
        ctx.metrics.requests.labels(route, str(response.status)).inc()
        return response

    return count


async def openapi(_request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json")


def make_app(ctx: ApiContext) -> web.Application:
    app = web.Application(client_max_size=int(ctx.cfg.api.max_body),
                          middlewares=[_metrics_middleware(ctx),
                                       make_error_middleware(lambda code: ctx.metrics.errors.labels(code).inc())])
    app[CTX] = ctx
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/v1/messages", messages.post_message)
    app.router.add_post("/v1/messages/batch", messages.post_batch)
    app.router.add_get("/v1/messages/{id}", messages.get_message)
    app.router.add_delete("/v1/messages/{id}", messages.delete_message)
    app.router.add_get("/v1/events", feeds.get_events)
    app.router.add_get("/v1/suppressions", feeds.get_suppressions)
    app.router.add_post("/v1/suppressions", feeds.post_suppression)
    app.router.add_delete("/v1/suppressions", feeds.delete_suppression)
    console.install(app, ctx)
    app.router.add_get("/v1/campaigns/{id}", campaigns.get_campaign)
    app.router.add_post("/v1/erasure", erasure.post_erasure)
    return app


class ApiServer:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.runner: web.AppRunner | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self.releaser = HoldbackReleaser(ctx)      # A/B winner_after: held-back shares, sent when due

    async def start(self) -> None:
        ctx = self.ctx
        await ctx.spool.call(lambda s: idem.ensure_table(s.db))
        await ctx.spool.call(lambda s: ensure_holdback_table(s.db))
        ctx.index.start()
        host, port = parse_hostport(ctx.cfg.api.listen, "api.listen")
        self.runner = web.AppRunner(make_app(ctx), access_log=None, handle_signals=False, shutdown_timeout=5.0,
                                    logger=server_log, keepalive_timeout=75.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port, backlog=1024).start()
        self._housekeeping = asyncio.get_running_loop().create_task(self._prune_loop())
        self.releaser.start()
        log.info("HTTP API on %s", ctx.cfg.api.listen)

    async def stop_listening(self) -> None:
        """Stops taking requests; requests in progress finish (their messages are durable first)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def close(self) -> None:
        await self.releaser.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.stop_listening()
        await self.ctx.index.close()

    async def _prune_loop(self) -> None:
        """Idempotency records older than their time to live go (the event index prunes itself)."""
        while True:
            await asyncio.sleep(600)
            before = self.ctx.clock() - self.ctx.cfg.api.idempotency_ttl
            try:
                await self.ctx.spool.call(lambda s, before=before: idem.prune(s.db, before))
            except Exception as exc:    # a full disk: they go next time
                log.warning("pruning idempotency records failed: %s", exc)
