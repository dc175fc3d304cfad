"""The console's HTTP side, on the API's aiohttp app under /console/: the page and its assets
(from the package), the log-in and log-out forms, and the JSON views and actions under api/.

Who may: an operator API key, either as `Authorization: Bearer KEY` or through a session cookie
the log-in form sets (HttpOnly, SameSite=Strict, Path=/console, expiring after
`api.console_session`). Without either the page shows its log-in form and every api/* is 401; a
tenant key is 403. POSTs made with the cookie need the session's CSRF token (csrf.py).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mta.http.api.auth import ApiKey, bearer_key, hash_key
from mta.http.api.context import CTX, ApiContext
from mta.http.api.errors import ApiError
from mta.http.console import actions, csrf, data
from mta.http.console.session import COOKIE, Session, Sessions
from mta.http.console.stats import DeliverabilityStats
from warmup_base.policy_protocol.client import PolicyUnavailable

log = logging.getLogger("mta.console")

PREFIX = "/console/"
ASSETS = {"": ("index.html", "text/html"), "console.js": ("console.js", "text/javascript"),
          "console.css": ("console.css", "text/css")}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "object-src 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass
class Caller:
    operator: str                   # the key's name
    session: Session | None         # None: a Bearer request


class Console:
    """What the console keeps while the daemon runs: sessions, deliverability counts, the queue view."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.sessions = Sessions(float(ctx.cfg.api.console_session), ctx.clock)
        self.stats = DeliverabilityStats()
        self.queue = data.QueueView(ctx.cfg.mta.spool_dir)
        self._early: list[Any] | None = None
        self._replay: asyncio.Task[None] | None = None
        self.assets = {name: (importlib.resources.files("mta.http.console").joinpath("static", file).read_bytes(),
                              ctype) for name, (file, ctype) in ASSETS.items()}

    async def start(self, _app: web.Application | None = None) -> None:
        """Counts the event log's recent past, then follows it. The buffer is flushed and the
        subscription made in one step, so every event is counted once: what is in the file by
        replay (on a thread), what comes later by the subscription (held back until the replay is in)."""
        events = self.ctx.scheduler.events
        events.flush()
        path = events.path
        try:
            end = os.path.getsize(path) if path else 0
        except OSError:
            end = 0
        self._early = []
        events.subscribe(self._on_event)
        past = DeliverabilityStats()

        def replay() -> None:
            if path:
                past.replay_file(path + ".1")
                past.replay_file(path, end=end)      # what came later is counted by the subscription

        async def run() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, replay)
                self.stats = past
            except Exception:       # counts start empty rather than the console failing
                log.exception("reading the event log for the console's counts failed")
            early, self._early = self._early or [], None
            for event in early:
                self.stats.on_event(event)

        self._replay = asyncio.get_running_loop().create_task(run())

    def _on_event(self, event: Any) -> None:
        if self._early is not None:
            self._early.append(event)
        else:
            self.stats.on_event(event)

    async def stop(self, _app: web.Application | None = None) -> None:
        if self._replay is not None and not self._replay.done():
            self._replay.cancel()
        self.queue.close()

    # ------------------------------------------------------------------ who is asking
    def caller(self, request: web.Request) -> Caller:
        """The operator behind a request, or ApiError 401 (nobody) / 403 (a tenant key)."""
        if request.headers.get("Authorization"):
            key = self.ctx.keys.check(bearer_key(request.headers["Authorization"]))
            return Caller(self._operator(key), None)
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is None:
            raise ApiError(401, "unauthorized", "log in with an operator API key")
        key = self.ctx.keys.check_hash(session.key_hash)
        if key is None:                  # revoked since the log-in
            self.sessions.close(session.id)
        return Caller(self._operator(key), session)

    @staticmethod
    def _operator(key: ApiKey | None) -> str:
        if key is None:
            raise ApiError(401, "unauthorized", "a valid operator API key is required",
                           headers={"WWW-Authenticate": 'Bearer realm="warmup-mta console"'})
        if not key.operator:
            raise ApiError(403, "forbidden", "the console is for operator keys (mta api-key create --operator)")
        return key.name

    def check_csrf(self, request: web.Request, caller: Caller, given: str) -> None:
        if caller.session is None:
            return
        if not csrf.same_origin(request):
            raise ApiError(403, "forbidden", "cross-origin request refused")
        if not csrf.token_matches(caller.session.csrf, given):
            raise ApiError(403, "forbidden", "missing or wrong CSRF token (reload the page)")


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Console responses (errors too: this runs outside the error middleware) get the headers;
    the rest of the API is left as it was."""
    response = await handler(request)
    if request.path.startswith(PREFIX.rstrip("/")):
        _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith(PREFIX + "api/") or request.method != "GET":
        response.headers["Cache-Control"] = "no-store"
    else:
        response.headers.setdefault("Cache-Control", "no-cache")


# ---------------------------------------------------------------------- the page
async def asset(request: web.Request) -> web.Response:
    body, ctype = request.app[CONSOLE].assets[request.match_info.get("name", "")]
    return web.Response(body=body, content_type=ctype, charset="utf-8")


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def to_console(_request: web.Request) -> web.Response:
    return web.Response(status=301, headers={"Location": PREFIX})


async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    if not csrf.same_origin(request):
        raise ApiError(403, "forbidden", "cross-origin request refused")
    form = await request.post()
    raw = form.get("key")
    key = console.ctx.keys.check(raw.strip()) if isinstance(raw, str) and raw.strip() else None
    if key is None or not key.operator:
        why = "failed" if key is None else "not-operator"
        log.warning("console log-in refused from %s: %s", request.remote, "wrong key" if key is None
                    else f"key {key.name} is not an operator key")
        return _see_other(f"{PREFIX}?login={why}")
    session = console.sessions.open(hash_key(raw.strip()), key.name)  # type: ignore[union-attr]
    log.info("console log-in: %s from %s", key.name, request.remote)
    response = _see_other(PREFIX)
    response.set_cookie(COOKIE, session.id, max_age=int(console.sessions.lifetime), path=PREFIX.rstrip("/"),
                        httponly=True, samesite="Strict", secure=request.secure)
    return response


async def logout(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    form = await request.post()
    caller = console.caller(request)
    given = form.get(csrf.FIELD)
    console.check_csrf(request, caller, given if isinstance(given, str) else "")
    if caller.session is not None:
        console.sessions.close(caller.session.id)
        log.info("console log-out: %s", caller.operator)
    response = _see_other(PREFIX)
    response.del_cookie(COOKIE, path=PREFIX.rstrip("/"))
    return response


# ---------------------------------------------------------------------- api/*
def _json(body: Any) -> web.Response:
    return web.json_response(body)


async def session_info(request: web.Request) -> web.Response:
    caller = request.app[CONSOLE].caller(request)
    return _json({"operator": caller.operator, "csrf": caller.session.csrf if caller.session else "",
                  "cookie": caller.session is not None})


async def warmup(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    console.caller(request)
    ctx = console.ctx
    return _json(await data.warmup(ctx.scheduler, console.stats, ctx.cfg.policy.address))


async def decisions(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    console.caller(request)
    q = request.query
    try:
        found = await data.decisions(console.ctx.scheduler, q.get("source", "").strip(), q.get("isp", "").strip(),
                                     q.get("domain", "").strip(), q.get("kind", "").strip())
    except PolicyUnavailable as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    return _json(found)


async def queue(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    console.caller(request)
    return _json(await data.queue(console.ctx.scheduler, console.queue))


async def deliverability(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    console.caller(request)
    by = request.query.get("by", "isp")
    if by not in ("isp", "ip"):
        raise ApiError(400, "bad_parameter", "by must be isp or ip", "by")
    try:
        hours = int(request.query.get("hours", "48"))
    except ValueError:
        raise ApiError(400, "bad_parameter", "hours must be an integer", "hours") from None
    if not 1 <= hours <= console.stats.keep_hours:
        raise ApiError(400, "bad_parameter", f"hours must be between 1 and {console.stats.keep_hours}", "hours")
    return _json(data.deliverability(console.stats, by, hours, console.ctx.clock()))


async def suppressions(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    console.caller(request)
    q = request.query.get("q", "").strip()
    if not q:
        return _json({"entries": []})
    now = console.ctx.clock()
    return _json({"entries": await console.ctx.spool.read(lambda s: data.suppression_entries(s, q, now))})


async def action(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    caller = console.caller(request)
    console.check_csrf(request, caller, request.headers.get(csrf.HEADER, ""))
    body = await request.json()
    done = await actions.perform(console.ctx.scheduler, body, caller.operator)
    return _json({"ok": True, "message": done.message, **done.detail})


def install(app: web.Application, ctx: ApiContext) -> None:
    """Adds the console to the API's app (called by make_app)."""
    console = Console(ctx)
    app[CONSOLE] = console
    app.middlewares.insert(0, security_headers)      # outermost: error answers get the headers too
    app.on_startup.append(console.start)
    app.on_cleanup.append(console.stop)
    r = app.router
    r.add_get("/console", to_console)
    r.add_get(PREFIX, asset)
    r.add_get(PREFIX + "{name:console\\.(?:js|css)}", asset)
    r.add_post(PREFIX + "login", login)
    r.add_post(PREFIX + "logout", logout)
    for path, handler in (("session", session_info), ("warmup", warmup), ("decisions", decisions),
                          ("queue", queue), ("deliverability", deliverability), ("suppressions", suppressions)):
        r.add_get(PREFIX + "api/" + path, handler)
    r.add_post(PREFIX + "api/action", action)


__all__ = ["CONSOLE", "CTX", "Console", "install"]
