"""A real policyd process for MTA tests, and two fake ISPs recognised by their MX names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from tests.mta.proc import REPO
from tests.support.receiver import Script, free_port
from tests.support.tomlw import deep_merge, dumps


class Policyd:
    def __init__(self, tmp: str, extra: dict[str, Any]) -> None:
        self.port = free_port(["127.0.0.1"])
        self.config = os.path.join(tmp, "policy.toml")
        doc: dict[str, Any] = {
            "policyd": {"listen": f"127.0.0.1:{self.port}", "state": f"sqlite:///{tmp}/policy.db"},
            "warmup": {"ip_schedule": "test", "domain_schedule": "", "burst": "1d"},
            "leases": {"ttl": "2s", "max_messages": 50},
            "schedules": {"test": {"days": [1000]}},
            "isps": {"google": {"mx": ["*.google.test"]}, "yahoo": {"mx": ["*.yahoo.test"]},
                     "other": {"warmup": False}},
        }
        with open(self.config, "w") as f:
            f.write(dumps(deep_merge(doc, extra)))
        self.log = os.path.join(tmp, "policyd.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Policyd:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", self.config],
                                         cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("policyd did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def cli(self, *args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "policy.cli", *args, "--config", self.config], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout


def isp_domains(world, dns_server, google_script: Script | None = None, yahoo_script: Script | None = None):
    google = world.receiver(script=google_script)
    yahoo = world.receiver(script=yahoo_script)
    dns_server.mx("gmail.example", (10, "gmail-smtp-in.l.google.test"))
    dns_server.address("gmail-smtp-in.l.google.test", google.host)
    dns_server.mx("yahoo.example", (10, "mta5.am0.yahoo.test"))
    dns_server.address("mta5.am0.yahoo.test", yahoo.host)
    return google, yahoo


ONE_SOURCE = {"pools": {"default": {"sources": ["ip1"]}}}
