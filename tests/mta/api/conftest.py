"""Fixtures for the HTTP API: the MTA daemon running in the test's loop with `[api] listen` set,
keys for two tenants and an operator, and a real aiohttp client (keep-alive) to talk to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from mta.http.api.auth import KeyStore
from tests.mta.conftest import FakeClock, RunningMta
from tests.support.receiver import free_port


@dataclass
class Api:
    mta: RunningMta
    base: str
    session: aiohttp.ClientSession
    keys: dict[str, str] = field(default_factory=dict)      # "a", "b" (tenants), "op" (operator) -> key

    def auth(self, who: str = "a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def call(self, method: str, path: str, who: str | None = "a", json: Any = None, data: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        h = dict(self.auth(who) if who else {})
        h.update(headers or {})
        async with self.session.request(method, self.base + path, json=json, data=data, headers=h) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body, resp.headers

    async def send(self, message: dict[str, Any], who: str = "a", **kw: Any) -> dict[str, Any]:
        status, body, _h = await self.call("POST", "/v1/messages", who, json=message, **kw)
        assert status == 202, body
        return body

    async def wait_state(self, queue_id: str, recipient: str, state: str, who: str = "a",
                         timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            status, last, _h = await self.call("GET", f"/v1/messages/{queue_id}", who)
            if status == 200:
                for r in last["recipients"]:
                    if r["address"] == recipient and r["state"] == state:
                        return last
            await asyncio.sleep(0.05)
        raise AssertionError(f"{recipient} of {queue_id} never reached {state}: {last}")


def make_keys(spool_dir: str) -> dict[str, str]:
    store = KeyStore(spool_dir)
    try:
        keys = {}
        for who, tenant, operator in (("a", "tenant-a", False), ("b", "tenant-b", False), ("op", "", True)):
            _record, keys[who] = store.create(f"key-{who}", tenant, operator, time.time())
        return keys
    finally:
        store.close()


@pytest.fixture
async def start_api(start_mta: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(clock: FakeClock | None = None, api: dict[str, Any] | None = None, **extra: Any) -> Api:
        port = free_port(["127.0.0.1"])
        mta = await start_mta(clock=clock, api={"listen": f"127.0.0.1:{port}", **(api or {})}, **extra)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Api(mta, f"http://127.0.0.1:{port}", session, make_keys(mta.spool_dir))

    yield start
    for s in sessions:
        await s.close()


def simple(to: str | list[str] = "user@example.test", **extra: Any) -> dict[str, Any]:
    return {"from": "App <app@sender.example>", "to": to, "subject": "Hello", "text": "Hello there.\n", **extra}
