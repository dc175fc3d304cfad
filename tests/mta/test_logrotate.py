"""The shipped logrotate file rotates the event log of a running daemon: real logrotate, a real
`mta serve`, SIGHUP from the postrotate script; nothing is lost and `queue show` reads both files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import aiosmtplib
import pytest

from tests.mta.conftest import base_config, message, write_config
from tests.mta.proc import REPO, MtaProcess, run_cli


async def _send(host: str, port: int, rcpt: str) -> str:
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10) as smtp:
        _errors, reply = await smtp.sendmail("a@sender.example", [rcpt], message().encode())
    return reply.split()[-1]


async def _lines(path: str, wanted: int) -> list[dict]:
    for _ in range(100):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
            if len(lines) >= wanted:
                return lines
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path}: fewer than {wanted} events")


async def test_logrotate_rotates_the_event_log_of_a_running_daemon(tmp_path, world, dns_server, mx_port):
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.path.exists(logrotate):
        pytest.skip("logrotate not installed (apt-get install -y logrotate)")
    world.domain("example.test")
    events = str(tmp_path / "log" / "events.jsonl")
    cfg = base_config(str(tmp_path), dns_server, mx_port, events={"path": events})
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    proc = MtaProcess(path, str(tmp_path / "mta.log")).start((host, int(port)))
    try:
        first = await _send(host, int(port), "one@example.test")
        await _lines(events, 2)                                   # accepted, delivered
        with open(os.path.join(REPO, "conf", "logrotate", "warmup-mta"), encoding="utf-8") as f:
            shipped = f.read()
        assert proc.proc is not None
        conf = (shipped.replace("/var/log/warmup-mta/events.jsonl", events)
                .replace("create 0640 warmup-mta warmup-mta", "create 0640")
                .replace("systemctl reload mta.service", f"kill -HUP {proc.proc.pid}"))
        (tmp_path / "logrotate.conf").write_text(conf)
        done = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"), str(tmp_path / "logrotate.conf")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert os.path.exists(events + ".1")
        second = await _send(host, int(port), "two@example.test")
        fresh = await _lines(events, 2)
        assert {e["queue_id"] for e in fresh} == {second}          # the reopened file has only the new mail
        shown = run_cli("queue", "show", first, "--config", path)
        assert shown.returncode == 0 and "delivered one@example.test" in shown.stdout
    finally:
        assert proc.terminate() == 0
    assert "event log" in (tmp_path / "mta.log").read_text()      # SIGHUP said what it reloaded
