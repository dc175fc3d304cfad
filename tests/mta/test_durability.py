"""A 250 means the message survives anything: the daemon is killed with SIGKILL while many
clients submit and deliveries are in flight, restarted, and every acknowledged message arrives."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import aiosmtplib

from tests.mta.conftest import base_config, write_config
from tests.mta.proc import MtaProcess, run_cli
from tests.support.receiver import Script

FILLER = ("x" * 70 + "\r\n") * 30


async def _submitter(host: str, port: int, tag: str, acked: list[str], stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        try:
            async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=5) as smtp:
                while not stop.is_set():
                    i += 1
                    token = f"{tag}-{i}"
                    body = f"From: <a@sender.example>\r\nSubject: {token}\r\n\r\n{FILLER}".encode()
                    await smtp.sendmail("a@sender.example", [f"{token}@example.test"], body)
                    acked.append(token)      # only after the 250
        except (aiosmtplib.SMTPException, OSError):
            await asyncio.sleep(0.05)        # the daemon is down: try again until told to stop


def _subjects(rx) -> list[str]:
    with rx.lock:
        return [m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode() for m in rx.messages]


async def test_kill9_during_submission_and_delivery_loses_nothing(tmp_path, world, dns_server, mx_port):
    # A slow receiver keeps deliveries in flight and a backlog on disk when the kill comes.
    rx = world.domain("example.test", script=Script(data=lambda m: time.sleep(0.002)))
    cfg = base_config(str(tmp_path), dns_server, mx_port, mta={"log_level": "warning"})
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    submit = (host, int(port))
    proc = MtaProcess(path, os.path.join(str(tmp_path), "mta.log"))
    acked: list[str] = []
    rng = random.Random(7)
    try:
        for round_no in range(3):
            proc.start(submit)
            stop = asyncio.Event()
            clients = [asyncio.create_task(_submitter(host, int(port), f"r{round_no}c{c}", acked, stop))
                       for c in range(6)]
            await asyncio.sleep(0.6 + rng.random() * 0.8)
            proc.kill9()
            stop.set()
            await asyncio.gather(*clients)
        proc.start(submit)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not set(acked) <= set(_subjects(rx)):
            await asyncio.sleep(0.1)
        got = _subjects(rx)
        missing = set(acked) - set(got)
        assert len(acked) > 100, "the test did not submit enough to mean anything"
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
        duplicates = len(got) - len(set(got))
        assert proc.terminate() == 0
        stats = json.loads(run_cli("queue", "stats", "--json", "--config", path).stdout)
        # Every duplicate the receiver saw was counted as a possible duplicate at recovery.
        assert stats["possible_duplicates"] >= duplicates
    finally:
        if proc.proc and proc.proc.poll() is None:
            proc.kill9()


async def test_sigterm_drains_and_exits_zero(tmp_path, world, dns_server, mx_port):
    rx = world.domain("example.test")
    cfg = base_config(str(tmp_path), dns_server, mx_port)
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    proc = MtaProcess(path, os.path.join(str(tmp_path), "mta.log")).start((host, int(port)))
    async with aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False) as smtp:
        for i in range(5):
            await smtp.sendmail("a@sender.example", [f"u{i}@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    await rx.await_for(5)
    assert proc.terminate() == 0
    assert not os.path.exists(os.path.join(cfg["mta"]["spool_dir"], "control.sock"))
