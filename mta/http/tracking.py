"""The public tracking listener: `GET /c/<token>` redirects to the signed link, `GET /o/<token>`
answers a 1x1 GIF; each writes one `clicked` / `opened` event through `on_activity`.

A token that fails its signature gets 404 and writes nothing, so the listener is no open
redirect and no event can be forged. HEAD is answered like GET (scanners use it) and judged a
machine's. Behind a reverse proxy on loopback, the client address is taken from the last hop of
X-Forwarded-For (`trusted_proxies`); from anyone else that header is ignored.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from mta.tracking.machine import ClickBursts, MachineRules, Verdict, judge_click, judge_open
from mta.tracking.tokens import CLICK, OPEN, InvalidTrackingToken, TrackingInfo, TrackingTokens

__all__ = ["Activity", "TrackingServer"]

log = logging.getLogger("mta.tracking")

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")   # 1x1 transparent GIF
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class Activity:
    info: TrackingInfo
    verdict: Verdict
    at: float
    client_ip: str


OnActivity = Callable[[Activity], Awaitable[None]]
DeliveredAt = Callable[[str, str], "float | None"]      # (queue_id, recipient) -> delivery time if known


class TrackingServer:
    def __init__(self, tokens: TrackingTokens, on_activity: OnActivity, *, delivered_at: DeliveredAt | None = None,
                 rules: MachineRules | None = None, trusted_proxies: Sequence[str] = ("127.0.0.0/8", "::1/128"),
                 clock: Callable[[], float] = time.time, count: Callable[[str, str], None] | None = None) -> None:
        self.tokens = tokens
        self.on_activity = on_activity
        self.delivered_at = delivered_at or (lambda _q, _r: None)
        self.rules = rules = rules or MachineRules()
        self.bursts = ClickBursts(window=rules.burst_seconds)
        self.proxies = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
        self.clock = clock
        self.count = count or (lambda _kind, _result: None)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4096)
        app.router.add_get("/c/{token}", self.click)       # add_get also routes HEAD here (scanners use it)
        app.router.add_get("/o/{token}", self.open)
        return app

    async def start(self, host: str, port: int, ssl: object | None = None) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=ssl, reuse_address=True).start()  # type: ignore[arg-type]
        log.info("tracking listener on %s:%d", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ handlers
    def _verify(self, request: web.Request, kind: str) -> TrackingInfo | None:
        token = request.match_info["token"]
        if token.endswith(".gif"):
            token = token[:-4]
        try:
            info = self.tokens.verify(token)
        except InvalidTrackingToken as exc:
            self.count(kind, "invalid")
            log.info("tracking: refused a %s token from %s: %s", kind, self._client_ip(request), exc)
            return None
        if info.kind != kind:
            self.count(kind, "invalid")
            return None
        return info

    def _client_ip(self, request: web.Request) -> str:
        peer = request.remote or ""
        try:
            trusted = any(ipaddress.ip_address(peer) in n for n in self.proxies)
        except ValueError:
            trusted = False
        forwarded = request.headers.get("X-Forwarded-For", "")
        if trusted and forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()
        return peer

    async def click(self, request: web.Request) -> web.StreamResponse:
        info = self._verify(request, CLICK)
        if info is None:
            return web.Response(status=404, text="not found\n", headers=NO_STORE)
        now = self.clock()
        ip = self._client_ip(request)
        sent_at = self.delivered_at(info.queue_id, info.recipient) or float(info.issued_at)
        others = self.bursts.note(info.queue_id, info.recipient, info.url, now)
        verdict = judge_click(user_agent=request.headers.get("User-Agent", ""), client_ip=ip, now=now,
                              sent_at=sent_at, other_links_recently=others, method=request.method,
                              rules=self.rules)
        await self._record(Activity(info, verdict, now, ip), CLICK)
        return web.Response(status=302, headers={"Location": info.url, **NO_STORE})

    async def open(self, request: web.Request) -> web.StreamResponse:
        info = self._verify(request, OPEN)
        if info is None:
            return web.Response(status=404, text="not found\n", headers=NO_STORE)
        ip = self._client_ip(request)
        verdict = judge_open(user_agent=request.headers.get("User-Agent", ""), client_ip=ip, method=request.method)
        await self._record(Activity(info, verdict, self.clock(), ip), OPEN)
        return web.Response(body=PIXEL, content_type="image/gif", headers=NO_STORE)

    async def _record(self, activity: Activity, kind: str) -> None:
        self.count(kind, "machine" if activity.verdict.machine else "human")
        try:
            await self.on_activity(activity)
        except Exception:
            # The person still gets their page; the event is lost, and the log says so.
            log.exception("tracking: could not record a %s for %s", kind, activity.info.queue_id)
