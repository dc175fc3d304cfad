"""`policyd` as operators and systemd use it: real processes, real sockets, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.config import load_config
from policy.engine import Outcome, Policy
from policy.service import PolicyService
from policy.store import open_store
from tests.policy.conftest import REPO, free_port
from warmup_base.policy_protocol.client import PolicyClient
from warmup_base.policy_protocol.model import GrantRequest

GOOGLE = ("gmail-smtp-in.l.google.com",)
ISPS = {"google", "yahoo", "microsoft", "office365", "apple", "comcast", "gmx_webde", "mailru", "yandex", "other"}


def write_config(path: Path, port: int, metrics_port: int = 0, ttl: str = "30s", extra: str = "") -> Path:
    path.write_text(f"""
[policyd]
listen = "127.0.0.1:{port}"
state = "sqlite://state/policy.db"
include = ["{REPO / 'conf' / 'isps.toml'}"]
cache_seconds = 0
[metrics]
listen = "{f'127.0.0.1:{metrics_port}' if metrics_port else ''}"
[warmup]
ip_schedule = "ip"
domain_schedule = ""
burst = "1h"
[leases]
ttl = "{ttl}"
[schedules.ip]
days = [500, 1000]
[[sources]]
name = "ip1"
[[sources]]
name = "ip2"
start_day = 1
{extra}
""")
    return path


def policyd(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "policy.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"policyd {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "policy.toml", free_port())


def test_the_shipped_config_is_valid(pythonpath_env: dict[str, str]) -> None:
    done = policyd(pythonpath_env, "check-config", "--config", str(REPO / "conf" / "policy.toml"))
    assert "OK" in done.stdout


@pytest.mark.parametrize(("extra", "key"), [
    ("[rules]\nhard_bounce_warn = 0.5\nhard_bounce_pause = 0.1\n", "rules.hard_bounce_warn"),
    ("[rules]\nthrotle_decrease = 0.5\n", "rules.throtle_decrease: unknown key"),
    ("[[mailboxes]]\nmatch = \"*@x.test\"\nschedule = \"nope\"\n", "mailboxes[0].schedule"),
    ("[isps.acme]\nmx = []\n", "isps.acme.mx"),
    ("[leases]\n", "leases"),                                  # a table defined twice: not TOML
])
def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path, pythonpath_env: dict[str, str], extra: str,
                                             key: str) -> None:
    path = write_config(tmp_path / "bad.toml", free_port(), extra=extra)
    done = policyd(pythonpath_env, "check-config", "--config", str(path), check=False)
    assert done.returncode == 2 and key in done.stderr, done.stderr


def test_status_on_a_fresh_state_shows_day_0_of_every_configured_pair(config: Path,
                                                                      pythonpath_env: dict[str, str]) -> None:
    data = json.loads(policyd(pythonpath_env, "status", "--config", str(config), "--json").stdout)
    pairs = {(p["name"], p["isp"]): p for p in data["pairs"]}
    assert set(pairs) == {(s, i) for s in ("ip1", "ip2") for i in ISPS}
    assert {p["day"] for (s, _i), p in pairs.items() if s == "ip1"} == {0}
    assert {p["day"] for (s, _i), p in pairs.items() if s == "ip2"} == {1}      # start_day
    assert pairs[("ip1", "google")]["limit"] == 500
    assert (config.parent / "state" / "policy.db").exists()                     # relative to the config
    table = policyd(pythonpath_env, "status", "--config", str(config), "--source", "ip1", "--isp", "google").stdout
    assert table.splitlines()[0].split()[:5] == ["KIND", "NAME", "ISP", "SCHEDULE", "DAY"]
    assert len(table.splitlines()) == 2 and "ok" in table


def test_overrides_persist_and_are_recorded(config: Path, pythonpath_env: dict[str, str]) -> None:
    c = ["--config", str(config)]
    policyd(pythonpath_env, "set-day", *c, "--source", "ip1", "1", "--reason", "warm already")
    policyd(pythonpath_env, "pause", *c, "--source", "ip2", "--isp", "yahoo", "--for", "2h")
    policyd(pythonpath_env, "pause", *c, "--domain", "Example.TEST", "--force")   # not seen yet
    policyd(pythonpath_env, "resume", *c, "--domain", "example.test")
    data = json.loads(policyd(pythonpath_env, "status", *c, "--json").stdout)
    pairs = {(p["kind"], p["name"], p["isp"]): p for p in data["pairs"]}
    assert all(p["day"] == 1 for (k, n, _i), p in pairs.items() if (k, n) == ("ip", "ip1"))
    assert pairs[("ip", "ip2", "yahoo")]["paused"] and pairs[("ip", "ip2", "yahoo")]["pause_rule"] == "operator"
    assert not pairs[("ip", "ip2", "google")]["paused"]
    history = [json.loads(line) for line in
               policyd(pythonpath_env, "history", *c, "--json", "--limit", "100").stdout.splitlines()]
    assert [h["action"] for h in history].count("set_day") == 10                 # one per ISP
    assert history[0]["reason"] == "warm already"
    assert [(h["key"], h["action"]) for h in history[-13:-10]] == [
        ("ip|ip2|yahoo", "pause"), ("domain|example.test|*", "pause"), ("domain|example.test|*", "resume")]
    assert {h["key"] for h in history[-10:]} == {f"domain|example.test|{isp}" for isp in ISPS}
    text = policyd(pythonpath_env, "history", *c, "--source", "ip2").stdout
    assert "ip|ip2|yahoo  operator/pause" in text and "ip1" not in text


def test_resume_without_an_isp_ends_automatic_pauses_on_every_isp(config: Path,
                                                                  pythonpath_env: dict[str, str]) -> None:
    async def block_ip1_at_google() -> None:
        cfg = load_config(str(config))
        store = open_store(cfg.policyd.state)
        svc = PolicyService(Policy(cfg.policy), store, time.time)
        await svc.feedback([Outcome("gmail.com", GOOGLE, "ip1", "example.test", "t", "marketing", "bounced",
                                         "blocked", 550, "5.7.1")])
        await store.close()

    asyncio.run(block_ip1_at_google())
    c = ["--config", str(config)]
    status = json.loads(policyd(pythonpath_env, "status", *c, "--json", "--source", "ip1").stdout)
    assert [p["pause_rule"] for p in status["pairs"] if p["paused"]] == ["block"]
    policyd(pythonpath_env, "resume", *c, "--source", "ip1")
    status = json.loads(policyd(pythonpath_env, "status", *c, "--json", "--source", "ip1").stdout)
    assert not any(p["paused"] for p in status["pairs"])


def test_explain_says_why_a_limit_is_what_it_is_with_the_evidence(config: Path,
                                                                    pythonpath_env: dict[str, str]) -> None:
    async def throttle_ip1_and_pause_a_campaign() -> None:
        cfg = load_config(str(config))
        store = open_store(cfg.policyd.state)
        svc = PolicyService(Policy(cfg.policy), store, time.time)
        item = Outcome("gmail.com", GOOGLE, "ip1", "example.test", "t", "marketing", "deferred", "toomanyconn",
                            421, "4.7.28", 2)
        await svc.feedback([item])
        bounce = Outcome("gmail.com", GOOGLE, "ip1", "example.test", "t", "marketing", "hard_bounce",
                              "userunknown", 550, "5.1.1", 20, campaign="spring")
        ok = Outcome("gmail.com", GOOGLE, "ip1", "example.test", "t", "marketing", "delivered", "", 250,
                          "2.0.0", 40, campaign="spring")
        await svc.feedback([bounce, ok])
        await store.close()

    asyncio.run(throttle_ip1_and_pause_a_campaign())
    c = ["--config", str(config)]
    text = policyd(pythonpath_env, "explain", *c, "--source", "ip1", "--isp", "google").stdout
    assert "ip|ip1|google: sending, 500 a day" in text
    assert "schedule 'ip', warm-up day 0 of 1: 500 a day, 1,000 next" in text
    assert "throttled: rate x0.50, backing off" in text and "once it is clean" in text
    assert "throttle/decrease: 2 throttle replies" in text and "[reply: 421 4.7.28 (toomanyconn)]" in text
    text = policyd(pythonpath_env, "explain", *c, "--campaign", "spring").stdout
    assert "campaign|spring|google: paused (hard_bounce_pause)" in text
    assert "campaign spring on ip|ip1|google: hard bounces 20 of 60 sent" in text
    data = json.loads(policyd(pythonpath_env, "explain", *c, "--isp", "google", "--json").stdout)
    assert {p["key"] for p in data["pairs"]} >= {"isp|google|*", "ip|ip1|google", "campaign|spring|google"}
    policyd(pythonpath_env, "resume", *c, "--campaign", "spring")
    text = policyd(pythonpath_env, "explain", *c, "--campaign", "spring", "--isp", "google").stdout
    assert "campaign|spring|google: sending" in text and "operator/resume" in text


def test_operator_mistakes_are_errors_not_tracebacks(config: Path, pythonpath_env: dict[str, str]) -> None:
    done = policyd(pythonpath_env, "pause", "--config", str(config), check=False)
    assert done.returncode == 1 and "give --source" in done.stderr
    done = policyd(pythonpath_env, "set-day", "--config", str(config), "--isp", "google", "3", check=False)
    assert done.returncode == 1 and "set-day needs" in done.stderr
    done = policyd(pythonpath_env, "status", "--config", str(config.parent / "missing.toml"), check=False)
    assert done.returncode == 2 and "cannot read config" in done.stderr


def test_a_misspelt_name_is_refused_unless_forced(config: Path, pythonpath_env: dict[str, str]) -> None:
    done = policyd(pythonpath_env, "pause", "--config", str(config), "--isp", "gmial", check=False)
    assert done.returncode == 1 and "unknown --isp gmial" in done.stderr
    assert "paused" not in policyd(pythonpath_env, "status", "--config", str(config)).stdout
    policyd(pythonpath_env, "pause", "--config", str(config), "--isp", "google")
    policyd(pythonpath_env, "set-day", "--config", str(config), "--source", "ipX", "2", "--force")
    statuses = json.loads(policyd(pythonpath_env, "status", "--config", str(config), "--json").stdout)["pairs"]
    assert any(p["kind"] == "ip" and p["name"] == "ipX" and p["day"] == 2 for p in statuses)


def test_check_config_says_when_the_state_directory_cannot_be_written(tmp_path: Path,
                                                                     pythonpath_env: dict[str, str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = write_config(tmp_path / "policy.toml", free_port())
    text = path.read_text()
    start = text.index("state = ")
    end = text.index("\n", start)
    path.write_text(text[:start] + f'state = "sqlite:///{blocker}/sub/policy.db"' + text[end:])
    done = policyd(pythonpath_env, "check-config", "--config", str(path), check=False)
    assert done.returncode == 2 and "policyd.state" in done.stderr and "not a directory" in done.stderr


# ---- the daemon
@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    path = tempfile.mktemp(prefix="notify", dir="/tmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    yield sock, path
    sock.close()
    os.unlink(path)


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"policyd exited: {process.stderr.read() if process.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("policyd did not listen")


def grant_request(wanted: int) -> GrantRequest:
    return GrantRequest("gmail.com", GOOGLE, "default", ("ip1",), "marketing", "example.test", "t", wanted)


async def lease_ttl(port: int) -> float:
    clock_now = 100.0
    client = PolicyClient(f"127.0.0.1:{port}", clock=lambda: clock_now)
    [lease] = await client.request([grant_request(1)])
    await client.close()
    assert lease.count == 1
    return lease.valid_until - clock_now


def test_serve_notifies_systemd_reloads_on_hup_and_exits_0_on_term(
        tmp_path: Path, pythonpath_env: dict[str, str], notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    port, metrics_port = free_port(), free_port()
    config = write_config(tmp_path / "policy.toml", port, metrics_port)
    env = {**pythonpath_env, "NOTIFY_SOCKET": path}
    process = subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", str(config)], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sock.recv(1024).startswith(b"READY=1")
        wait_for_port(port, process)
        assert asyncio.run(lease_ttl(port)) == 30

        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'policyd_granted_messages_total{isp="google"} 1.0' in body
        assert 'policyd_warmup_day{isp="google",kind="ip",name="ip2"} 1.0' in body

        write_config(config, port, metrics_port, ttl="45s")
        process.send_signal(signal.SIGHUP)
        assert sock.recv(1024) == b"RELOADING=1"
        assert sock.recv(1024).startswith(b"READY=1")
        assert asyncio.run(lease_ttl(port)) == 45

        config.write_text("[rules]\nnot valid = = toml\n")                 # a broken reload keeps running
        process.send_signal(signal.SIGHUP)
        assert sock.recv(1024) == b"RELOADING=1"
        assert b"reload failed" in sock.recv(1024)
        assert asyncio.run(lease_ttl(port)) == 45

        process.send_signal(signal.SIGTERM)
        assert sock.recv(1024) == b"STOPPING=1"
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read() if process.stderr else ""
    assert "reload failed, keeping the running config" in stderr and "policyd stopped" in stderr


def test_an_operator_pause_reaches_a_running_daemon(tmp_path: Path, pythonpath_env: dict[str, str]) -> None:
    port = free_port()
    config = write_config(tmp_path / "policy.toml", port)
    process = subprocess.Popen([sys.executable, "-m", "policy.cli", "serve", "--config", str(config)], cwd=REPO,
                               env=pythonpath_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process)
        assert asyncio.run(lease_ttl(port)) == 30
        policyd(pythonpath_env, "pause", "--config", str(config), "--isp", "google")

        async def refused() -> float:
            client = PolicyClient(f"127.0.0.1:{port}", clock=lambda: 0.0)
            [lease] = await client.request([grant_request(1)])
            await client.close()
            return lease.count

        assert asyncio.run(refused()) == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_with_a_bad_config_exits_2(tmp_path: Path, pythonpath_env: dict[str, str]) -> None:
    config = write_config(tmp_path / "policy.toml", free_port(), extra="[warmup]\n")
    done = policyd(pythonpath_env, "serve", "--config", str(config), check=False)
    assert done.returncode == 2 and "config error" in done.stderr
