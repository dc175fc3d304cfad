"""Shared fixtures: an injected clock, small engine settings, and the state backends.

The Redis backend runs against a real `redis-server` started on a free loopback port in a temp
directory (installed with `apt-get install redis-server` where missing); tests of it are skipped,
saying so, only when the binary cannot be found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from policy.engine import Policy
from policy.engine.settings import (
    DomainSettings,
    IspSettings,
    PolicySettings,
    ScheduleSettings,
    SourceSettings,
    WarmupSettings,
)
from policy.server import PolicyServer
from policy.service import PolicyService
from policy.store.base import Store
from policy.store.memory_store import MemoryStore
from tests.support.receiver import free_port as free_port_on
from tests.support.redisserver import start_redis

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0
T0 = 20000 * DAY      # midnight UTC of some day, far from the epoch


class Clock:
    """An injected clock: tests move time by hand, days in microseconds."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_settings(days: list[int] | None = None, **warmup: object) -> PolicySettings:
    """Two ISPs, two sources and one domain; a full-day window and a burst of one hour's rate."""
    w = WarmupSettings(ip_schedule="ip", domain_schedule="dom", burst=3600.0)
    for key, value in warmup.items():
        setattr(w, key, value)
    return PolicySettings(
        warmup=w,
        isps={"google": IspSettings(mx=["*.google.com"], max_connections=3, messages_per_connection=50),
              "yahoo": IspSettings(mx=["*.yahoodns.net"]),
              "other": IspSettings(warmup=False)},
        schedules={"ip": ScheduleSettings(days or [240, 480, 960]),
                   "dom": ScheduleSettings([100000]),
                   "outreach": ScheduleSettings([24, 48])},
        sources=[SourceSettings("ip1"), SourceSettings("ip2")],
        domains=[DomainSettings("example.test")],
    )


def free_port() -> int:
    return free_port_on(["127.0.0.1"])


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    port = free_port()
    process = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield RedisServer(f"redis://127.0.0.1:{port}/0", process)
    process.terminate()
    process.wait(10)


@dataclass
class Backend:
    """Opens stores on one backend; every store opened by one Backend sees the same state."""

    name: str
    open: Callable[[], Store]
    url: str = ""
    prefix: str = ""


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        from policy.store.sqlite_store import SqliteStore
        path = tmp_path / "state" / "policy.db"
        return Backend("sqlite", lambda: SqliteStore(str(path)), f"sqlite://{path}")
    redis: RedisServer = request.getfixturevalue("redis_server")
    from policy.store.redis_store import RedisStore
    prefix = f"t{uuid.uuid4().hex[:8]}:"     # a fresh key space per test, one server per session
    return Backend("redis", lambda: RedisStore(redis.url, prefix), redis.url, prefix)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.open()
    yield s
    await s.close()


@dataclass
class Running:
    """A policyd server in the test's own event loop, on the memory store and the test's clock."""

    server: PolicyServer
    service: PolicyService
    address: str


async def start_server(transport: str, clock: Clock, max_message: int = 65536) -> tuple[Running, str]:
    service = PolicyService(Policy(make_settings()), MemoryStore(), clock, cache_seconds=0.0)
    server = PolicyServer(service, max_message=max_message)
    tmpdir = tempfile.mkdtemp(prefix="pd", dir="/tmp")      # short: unix socket paths are limited
    listen = "127.0.0.1:0" if transport == "tcp" else f"unix:{tmpdir}/policyd.sock"
    [address] = await server.start([listen])
    return Running(server, service, address), tmpdir


@pytest.fixture(params=["tcp", "unix"])
async def running(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Running]:
    r, tmpdir = await start_server(request.param, clock)
    yield r
    await r.server.stop(1.0)
    shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
def pythonpath_env() -> dict[str, str]:
    """Environment for subprocesses that import the (not installed) project from the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NOTIFY_SOCKET", None)
    return env
