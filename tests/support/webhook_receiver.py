"""A real HTTP receiver of webhooks for tests: an aiohttp server on a loopback port, in the test's
event loop, that records every POST and checks its Standard Webhooks signature.

The check is written here from the spec's definition, not with `mta.webhooks.signing`, so a bug
there cannot hide itself. The receiver can answer with any status, be stopped (its port is then
closed: connection refused) and started again on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.receiver import free_port


def make_secret(size: int = 32) -> str:
    return "whsec_" + base64.b64encode(os.urandom(size)).decode()


@dataclass
class Post:
    path: str
    webhook_id: str
    timestamp: int
    signature_ok: bool
    body: bytes
    answered: int               # the status we answered with
    at: float                   # time.monotonic() on arrival

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body)["events"])


@dataclass
class WebhookReceiver:
    secret: str
    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200                               # answer to every POST (e.g. 500 to fail them)
    delay: float = 0.0                              # seconds before answering (a hanging endpoint)
    clock: Callable[[], float] = time.time          # what "now" is for the timestamp tolerance
    tolerance: float = 300.0
    refuse: Callable[[dict[str, Any]], bool] | None = None  # a batch holding such an event gets 422
    posts: list[Post] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.port = self.port or free_port([self.host])
        self.key = base64.b64decode(self.secret.removeprefix("whsec_"))

    def url(self, path: str = "/hooks") -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def signature_ok(self, msg_id: str, stamp: str, signatures: str, body: bytes) -> bool:
        if not stamp.isdigit() or abs(self.clock() - int(stamp)) > self.tolerance:
            return False
        mac = hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        return any(hmac.compare_digest(expected, s) for s in signatures.split())

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        msg_id, stamp = h.get("webhook-id", ""), h.get("webhook-timestamp", "")
        ok = self.signature_ok(msg_id, stamp, h.get("webhook-signature", ""), body)
        status = self.status
        if self.refuse is not None and any(self.refuse(e) for e in json.loads(body)["events"]):
            status = 422
        self.posts.append(Post(request.path, msg_id, int(stamp) if stamp.isdigit() else 0, ok, body,
                               status, time.monotonic()))
        self._arrived.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=status, text="ok" if status < 300 else "failing")

    # ---- what arrived
    def accepted(self, path: str | None = None) -> list[Post]:
        """POSTs answered 2xx, each webhook-id once (a receiver dedupes on it)."""
        seen: set[str] = set()
        out = []
        for p in self.posts:
            if 200 <= p.answered < 300 and (path is None or p.path == path) and p.webhook_id not in seen:
                seen.add(p.webhook_id)
                out.append(p)
        return out

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        return [e for p in self.accepted(path) for e in p.events]

    async def wait(self, pred: Callable[[WebhookReceiver], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"receiver: condition not met; {len(self.posts)} posts, "
                                     f"{len(self.events())} events accepted")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.2))
