"""Fixtures for the web console: the MTA daemon with its API listener (tests/mta/api/conftest.py)
and a browser-like client that keeps cookies and does not follow redirects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.mta.api.conftest import Api, start_api  # noqa: F401  (the fixture, for tests here)


@dataclass
class Browser:
    """A cookie session against /console/ (what a browser does, without the page's script)."""

    api: Api
    http: aiohttp.ClientSession
    csrf: str = ""

    @property
    def base(self) -> str:
        return self.api.base + "/console/"

    async def login(self, key: str) -> aiohttp.ClientResponse:
        async with self.http.post(self.base + "login", data={"key": key}, allow_redirects=False) as resp:
            await resp.read()
            return resp

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, Any]:
        async with self.http.get(self.base + path, allow_redirects=False, **kw) as resp:
            body = await resp.json(content_type=None) if "json" in resp.content_type else await resp.text()
            return resp.status, body, resp.headers

    async def session(self) -> dict[str, Any]:
        status, body, _h = await self.get("api/session")
        assert status == 200, body
        self.csrf = body["csrf"]
        return body

    async def act(self, body: dict[str, Any], csrf: str | None = None, headers: dict[str, str] | None = None
                  ) -> tuple[int, Any]:
        h = {"X-CSRF-Token": self.csrf if csrf is None else csrf, **(headers or {})}
        async with self.http.post(self.base + "api/action", json=body, headers=h, allow_redirects=False) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    opened: list[aiohttp.ClientSession] = []

    def make(api: Api) -> Browser:
        # unsafe: the jar keeps cookies of IP-address hosts (the API listens on 127.0.0.1)
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        opened.append(http)
        return Browser(api, http)

    yield make
    for http in opened:
        await http.close()
