"""The built wheel is a working install: `pip install` of it into a fresh venv (no access to this
source tree), then `policyd serve` and `mta serve` from that venv's console scripts deliver a
message end to end over loopback.

The tests themselves run from an editable install, which would hide a file missing from the wheel
(issue 10: `policy/store/take.lua` was not package data, so `policyd serve` died on import).
Dependencies come from PyPI through pip's cache; the first run on a machine takes longer.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.dnsserver import DnsTestServer
from tests.support.receiver import Receiver, free_port
from tests.support.tomlw import dumps

REPO = Path(__file__).resolve().parents[2]
# What is not part of a source distribution: never copied into the build tree.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "build", "dist", "*.egg-info", "var",
                                     ".pytest_cache", ".ruff_cache")


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel (and its dependencies) installed; returns its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy: an in-tree build leaves build/ behind, whose stale files could end up in a
    # later wheel and hide a missing package-data entry.
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)], tmp)
    wheels = glob.glob(str(tmp / "dist" / "warmup_mta-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", wheels[0]], tmp, timeout=600)
    return venv / "bin"


def test_the_wheel_carries_the_files_the_code_reads(installed: Path) -> None:
    where = _run([str(installed / "python"), "-c",
                  "import policy.store.redis_store as r, pathlib; print(pathlib.Path(r.__file__).parent)"],
                 installed.parent)
    package_dir = Path(where.strip())
    assert package_dir.is_relative_to(installed.parent), f"imported from {package_dir}, not the venv"
    assert (package_dir / "take.lua").is_file()
    assert "mta" in _run([str(installed / "mta"), "--help"], installed.parent)


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{proc.args} did not listen on {host}:{port}:\n{log.read_text(errors='replace')[-3000:]}")


def _scrape(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def _check_console(installed: Path, cwd: Path, port: int) -> None:
    """The web console's page and assets come from the installed package, and its warm-up view
    reaches policyd with an operator key made by the installed CLI."""
    base = f"http://127.0.0.1:{port}/console/"
    for asset, needle in (("", 'id="login"'), ("console.js", "textContent"), ("console.css", "--accent")):
        with urllib.request.urlopen(base + asset, timeout=10) as resp:
            assert needle in resp.read().decode(), asset
    key = _run([str(installed / "mta"), "api-key", "create", "--config", "mta.toml", "--tenant", "ops", "--operator",
                "--name", "ops"], cwd).strip().splitlines()[-1]
    request = urllib.request.Request(base + "api/warmup", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read())["policyd"]["connected"] is True


def test_installed_daemons_deliver_a_message(installed: Path, tmp_path: Path) -> None:
    policy_port, policy_metrics, submit_port, inbound_port, mta_metrics, api_port = (
        free_port(["127.0.0.1"]) for _ in range(6))
    mx_port = free_port(["127.0.1.1"])
    (tmp_path / "policy.toml").write_text(dumps({
        "policyd": {"listen": f"127.0.0.1:{policy_port}", "state": f"sqlite:///{tmp_path}/state/policy.db"},
        "metrics": {"listen": f"127.0.0.1:{policy_metrics}"},
        "warmup": {"ip_schedule": "test", "domain_schedule": "", "burst": "1d"},
        "schedules": {"test": {"days": [1000]}},
        "isps": {"other": {"warmup": False}},
    }))
    procs: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with DnsTestServer() as dns, Receiver("127.0.1.1", mx_port, hostname="mx.wheel.test") as receiver:
        dns.mx("wheel.test", (10, "mx.wheel.test"))
        dns.address("mx.wheel.test", receiver.host)
        (tmp_path / "mta.toml").write_text(dumps({
            "mta": {"hostname": "mta.wheel.test", "spool_dir": str(tmp_path / "spool")},
            "submission": {"listen": [f"127.0.0.1:{submit_port}"], "trusted_networks": ["127.0.0.0/8"]},
            "inbound": {"listen": [f"127.0.0.1:{inbound_port}"], "bounce_domain": "bounces.wheel.test"},
            "dns": {"nameservers": [dns.nameserver], "timeout": 2},
            "delivery": {"port": mx_port, "idle_timeout": 1},
            "egress": {"sources": [{"name": "ip1", "address": "127.0.0.11", "ehlo": "mta1.wheel.test"}],
                       "pools": {"default": {"sources": ["ip1"]}}},
            "policy": {"address": f"127.0.0.1:{policy_port}"},
            "metrics": {"listen": f"127.0.0.1:{mta_metrics}"},
            "api": {"listen": f"127.0.0.1:{api_port}"},
        }))
        try:
            for cmd, port in ((["policyd", "serve", "--config", "policy.toml"], policy_port),
                              (["mta", "serve", "--config", "mta.toml"], submit_port)):
                log = tmp_path / f"{cmd[0]}.log"
                with log.open("ab") as out:
                    procs.append(subprocess.Popen([str(installed / cmd[0]), *cmd[1:]], cwd=tmp_path, env=env,
                                                  stdout=out, stderr=out))
                _wait_port("127.0.0.1", port, procs[-1], log)
            with smtplib.SMTP("127.0.0.1", submit_port, timeout=10) as smtp:
                smtp.sendmail("app@sender.wheel.test", ["user@wheel.test"],
                              b"From: <app@sender.wheel.test>\r\nTo: <user@wheel.test>\r\n"
                              b"Subject: wheel\r\n\r\nHi.\r\n")
            got = receiver.wait_for(1, timeout=30)
            assert got[0].rcpt_tos == ["user@wheel.test"]
            assert got[0].peer_ip == "127.0.0.11"
            assert b"Subject: wheel" in got[0].data
            for port in (mta_metrics, policy_metrics):
                _content_type, text = _scrape(port)
                assert "# TYPE" in text
            _check_console(installed, tmp_path, api_port)
        finally:
            for proc in reversed(procs):
                proc.terminate()
            codes = [proc.wait(30) for proc in reversed(procs)]
    assert codes == [0, 0], [(tmp_path / f"{n}.log").read_text(errors="replace")[-2000:] for n in ("mta", "policyd")]
