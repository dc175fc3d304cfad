"""Real processes for soak runs: the MTA, policyd, a sink and a load generator, each in its own
process on loopback, and a way to read what was acknowledged and what arrived."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.mta.conftest import base_config, write_config
from tests.mta.policyd import Policyd
from tests.mta.proc import REPO, MtaProcess
from tests.support.dnsserver import DnsTestServer
from tests.support.receiver import free_port

ENV = {**os.environ, "PYTHONPATH": REPO}


def _wait_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


class Sink:
    """tests/support/sinkproc.py in its own process."""

    def __init__(self, host: str, port: int, out: str, delay: float = 0.0) -> None:
        self.host, self.port, self.out = host, port, out
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.sinkproc", "--listen", f"{host}:{port}",
                                      "--out", out, "--delay", str(delay)], cwd=REPO, env=ENV,
                                     stdout=subprocess.DEVNULL)
        _wait_port(host, port)

    def received(self) -> list[str]:
        if not os.path.exists(self.out):
            return []
        with open(self.out, encoding="utf-8", errors="replace") as f:
            return [line.strip() for line in f if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


class Load:
    """tests/support/loadproc.py in its own process."""

    def __init__(self, server: tuple[str, int], out: str, sessions: int, duration: float, to: str,
                 tag: str = "m", rate: float = 0.0) -> None:
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.loadproc", "--server",
                                      f"{server[0]}:{server[1]}", "--sessions", str(sessions), "--duration",
                                      str(duration), "--out", out, "--to", to, "--tag", tag, "--rate", str(rate)],
                                     cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)

    def wait(self, timeout: float) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        return out

    def acked(self) -> list[str]:
        if not os.path.exists(self.out):
            return []
        with open(self.out, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]


@dataclass
class Rig:
    """DNS + sink + (optional) policyd + MTA process, wired for one recipient domain."""

    tmp: str
    policy: bool = True
    sink_delay: float = 0.0
    mta_extra: dict[str, Any] = field(default_factory=dict)
    policy_extra: dict[str, Any] = field(default_factory=dict)
    domain: str = "example.test"

    def start(self) -> Rig:
        self.dns = DnsTestServer().start()
        self.mx_port = free_port(["127.0.1.1"])
        self.dns.mx(self.domain, (10, "mx.example.test"))
        self.dns.address("mx.example.test", "127.0.1.1")
        self.sink = Sink("127.0.1.1", self.mx_port, os.path.join(self.tmp, "received.txt"), self.sink_delay)
        extra = dict(self.mta_extra)
        extra.setdefault("mta", {})["log_level"] = "info"
        extra.setdefault("egress", {"pools": {"default": {"sources": ["ip1"]}}})
        self.policyd: Policyd | None = None
        if self.policy:
            self.policyd = Policyd(self.tmp, self.policy_extra).start()
            extra["policy"] = {"address": self.policyd.address, **extra.get("policy", {})}
        cfg = base_config(self.tmp, self.dns, self.mx_port, **extra)
        self.config_path = write_config(self.tmp, cfg)
        host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
        self.submit = (host, int(port))
        self.spool_dir = cfg["mta"]["spool_dir"]
        self.mta = MtaProcess(self.config_path, os.path.join(self.tmp, "mta.log")).start(self.submit)
        return self

    def load(self, sessions: int, duration: float, tag: str = "m", rate: float = 0.0) -> Load:
        """`rate`: messages a second over all sessions (0: each session as fast as it can)."""
        return Load(self.submit, os.path.join(self.tmp, f"acked-{tag}.txt"), sessions, duration, self.domain, tag,
                    rate)

    def wait_delivered(self, wanted: set[str], timeout: float) -> set[str]:
        """Waits until every token in `wanted` arrived (or the time is up); returns the missing ones."""
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - set(self.sink.received())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)

    def duplicates(self) -> int:
        return sum(n - 1 for n in Counter(self.sink.received()).values() if n > 1)

    def stop(self) -> None:
        if getattr(self, "mta", None) is not None:
            try:
                self.mta.terminate(60)
            except Exception:
                if self.mta.proc is not None:
                    self.mta.proc.kill()
        if self.policyd is not None:
            self.policyd.stop()
        self.sink.stop()
        self.dns.stop()
