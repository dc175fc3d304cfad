"""Fixtures for MTA tests: a real DNS server, real receivers on loopback addresses, and the MTA
daemon itself running in the test's event loop (or as a subprocess where a test needs to kill it).

Addresses: MX receivers live on 127.0.1.x (one port shared by all, as `delivery.port` is one
port), the MTA's egress sources are 127.0.0.11 and 127.0.0.12, its listeners 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import pytest

from mta.config import load_config
from mta.daemon.serve import MtaDaemon
from tests.mta.policyd import Policyd
from tests.support.dnsserver import DnsTestServer
from tests.support.receiver import Receiver, Script, free_port
from tests.support.tomlw import deep_merge, dumps

SOURCES = [("ip1", "127.0.0.11", "mta1.test.example"), ("ip2", "127.0.0.12", "mta2.test.example")]


class FakeClock:
    """Wall-clock time that a test can move forward (expiry in seconds, not days)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def mx_port() -> int:
    return free_port(["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"])


@dataclass
class World:
    """DNS + receivers for a test; `domain()` wires a recipient domain to a new receiver."""

    dns: DnsTestServer
    port: int
    receivers: list[Receiver] = field(default_factory=list)
    _next_ip: int = 1

    def receiver(self, script: Script | None = None, tls: bool = False) -> Receiver:
        ip = f"127.0.1.{self._next_ip}"
        self._next_ip += 1
        r = Receiver(ip, self.port, script=script, tls=tls, hostname=f"mx-{self._next_ip}.test").start()
        self.receivers.append(r)
        return r

    def domain(self, name: str, receiver: Receiver | None = None, script: Script | None = None,
               tls: bool = False) -> Receiver:
        r = receiver or self.receiver(script, tls)
        host = f"mx.{name}"
        self.dns.mx(name, (10, host))
        self.dns.address(host, r.host)
        return r

    def stop(self) -> None:
        for r in self.receivers:
            r.stop()


@pytest.fixture
def world(dns_server: DnsTestServer, mx_port: int) -> Iterator[World]:
    w = World(dns_server, mx_port)
    yield w
    w.stop()


def base_config(tmp: str, dns: DnsTestServer, mx_port: int, /, **extra: Any) -> dict[str, Any]:
    submit_port = free_port(["127.0.0.1"])
    inbound_port = free_port(["127.0.0.1"])
    cfg: dict[str, Any] = {
        "mta": {"hostname": "mta.test.example", "spool_dir": os.path.join(tmp, "spool"), "log_level": "debug"},
        "submission": {"listen": [f"127.0.0.1:{submit_port}"], "trusted_networks": ["127.0.0.0/8"]},
        "inbound": {"listen": [f"127.0.0.1:{inbound_port}"], "bounce_domain": "bounces.test.example",
                    "verp_secret": "test-secret"},
        "dns": {"nameservers": [dns.nameserver], "timeout": 1},
        "delivery": {"port": mx_port, "idle_timeout": 1, "connect_timeout": 3, "command_timeout": 10},
        "queue": {"retry_base": 1, "retry_factor": 2.0, "retry_max": 4, "retry_jitter": 0.0},
        "egress": {
            "sources": [{"name": n, "address": a, "ehlo": e} for n, a, e in SOURCES],
            "pools": {"default": {"sources": ["ip1", "ip2"]}},
        },
    }
    return deep_merge(cfg, extra)


@dataclass
class RunningMta:
    daemon: MtaDaemon
    config_path: str
    submit_host: str
    submit_port: int
    clock: FakeClock

    async def send(self, sender: str, recipients: list[str], body: bytes | str, **kw: Any) -> Any:
        if isinstance(body, str):
            body = body.encode()
        async with aiosmtplib.SMTP(hostname=self.submit_host, port=self.submit_port, start_tls=False,
                                   timeout=10) as smtp:
            return await smtp.sendmail(sender, recipients, body, **kw)

    @property
    def spool_dir(self) -> str:
        return self.daemon.cfg.mta.spool_dir

    def events(self) -> list[dict[str, Any]]:
        import json

        self.daemon.events.flush()
        path = self.daemon.cfg.events_path
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    async def wait_event(self, pred: Callable[[dict[str, Any]], bool], n: int = 1, timeout: float = 20.0
                         ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if pred(e)]
            if len(found) >= n:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"wanted {n} matching events, have: {self.events()[-10:]}")


def write_config(tmp: str, cfg: dict[str, Any]) -> str:
    path = os.path.join(tmp, "mta.toml")
    with open(path, "w") as f:
        f.write(dumps(cfg))
    return path


@pytest.fixture
async def start_mta(tmp_path: Any, dns_server: DnsTestServer, mx_port: int, world: World
                    ) -> AsyncIterator[Callable[..., Any]]:
    """Starts MTA daemons in this loop; they stop before the receivers do (they depend on `world`)."""
    running: list[RunningMta] = []

    async def start(clock: FakeClock | None = None, **extra: Any) -> RunningMta:
        cfg_dict = base_config(str(tmp_path), dns_server, mx_port, **extra)
        path = write_config(str(tmp_path), cfg_dict)
        cfg = load_config(path)
        clock = clock or FakeClock()
        daemon = MtaDaemon(cfg, clock=clock)
        await daemon.start()
        host, port = cfg.submission.listen[0].rsplit(":", 1)
        mta = RunningMta(daemon, path, host, int(port), clock)
        running.append(mta)
        return mta

    yield start
    for mta in running:
        await mta.daemon.stop()


@pytest.fixture
def policyd_factory(tmp_path) -> Iterator[Any]:
    started: list[Policyd] = []

    def make(**extra: Any) -> Policyd:
        p = Policyd(str(tmp_path), extra).start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def message(subject: str = "test", sender: str = "app@sender.example", to: str = "user@example.test",
            extra_headers: str = "", body: str = "Hello.\r\n") -> str:
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n{extra_headers}"
            f"\r\n{body}")
