"""A full spool disk (issue 17, item 3), on a real small file system: a tmpfs of a few MB mounted
for the test (needs root, as CI has; skipped with the reason where mounting is impossible).

- Below `mta.min_free_space` new mail gets `452 4.3.1` (at MAIL FROM, and at the end of DATA),
  one warning per episode, refusals counted; accepted again when space returns.
- A disk filled by someone else: SQLite's "database or disk is full" is a 452 4.3.1 too, with no
  traceback; the ballast is given back so deliveries can still be recorded.
- SIGKILL on a full disk: `mta serve` starts anyway (it used to exit 1 in start-up recovery),
  refuses new mail with 452, delivers what it holds, and accepts again once space returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator

import pytest

from tests.mta.conftest import base_config, message, write_config
from tests.mta.proc import MtaProcess
from tests.support.receiver import Script
from tests.support.smalldisk import fill, free_bytes, small_disk
from tests.support.smtpclient import RawClient
from tests.support.waiting import until


@pytest.fixture
def disk(tmp_path) -> Iterator[str]:
    with small_disk(str(tmp_path / "disk")) as path:
        yield path


async def try_submit(host: str, port: int, size: int = 0, body: bytes | None = None) -> tuple[str, str]:
    """(reply to MAIL FROM, reply at the end of DATA or "")."""
    c, greeting = await RawClient.connect(host, port)
    assert greeting.startswith("220"), greeting
    await c.cmd("EHLO app.example")
    mail = await c.cmd(f"MAIL FROM:<app@sender.example>{f' SIZE={size}' if size else ''}")
    if not mail.startswith("250"):
        c.close()
        return mail, ""
    assert (await c.cmd("RCPT TO:<user@example.test>")).startswith("250")
    assert (await c.cmd("DATA")).startswith("354")
    c.send((body or message().encode()) + b".\r\n")
    end = await c.reply()
    c.close()
    return mail, end


def refusals(mta, reason: str) -> float:
    return mta.daemon.metrics.registry.get_sample_value("mta_smtp_refusals_total", {"reason": reason}) or 0.0


async def test_below_the_reserve_new_mail_gets_452_and_comes_back_when_space_returns(
        start_mta, world, disk, caplog):
    world.domain("example.test")
    mta = await start_mta(mta={"spool_dir": os.path.join(disk, "spool"), "min_free_space": "2M",
                               "spool_ballast": "1M"})
    host, port = mta.submit_host, mta.submit_port
    assert os.path.getsize(os.path.join(disk, "spool", "ballast")) == 1 << 20
    assert (await try_submit(host, port))[1].startswith("250")
    # A declared SIZE that does not fit is refused at MAIL FROM, before any data is sent.
    mail, _ = await try_submit(host, port, size=free_bytes(disk))
    assert mail.startswith("452 4.3.1"), mail
    with caplog.at_level(logging.INFO, logger="mta.disk"):
        filler = fill(disk, leave=(2 << 20) - (256 << 10))        # 256K below the reserve
        await asyncio.sleep(0.3)                                   # the guard measures 4 times a second
        for _ in range(5):
            mail, _ = await try_submit(host, port)
            assert mail.startswith("452 4.3.1"), mail
        assert mta.daemon.metrics.registry.get_sample_value("mta_spool_space_low") == 1
        os.unlink(filler)
        await until(lambda: mta.daemon.metrics.registry.get_sample_value("mta_spool_space_low") == 0,
                    "space no longer low")
        assert (await try_submit(host, port))[1].startswith("250")
    warnings = [r.getMessage() for r in caplog.records if r.name == "mta.disk" and r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "refusing new mail" in w]) == 1, warnings     # one per episode
    assert len([w for w in warnings if "has room again" in w]) == 1, warnings
    assert refusals(mta, "insufficient_storage") >= 6
    assert not [r for r in caplog.records if r.exc_info]                             # no tracebacks


async def test_a_disk_filled_by_someone_else_answers_452_without_a_traceback(start_mta, world, disk, caplog):
    world.domain("example.test")
    # No reserve: SQLite itself runs into the full disk.
    mta = await start_mta(mta={"spool_dir": os.path.join(disk, "spool"), "min_free_space": "0",
                               "spool_ballast": "1M"})
    host, port = mta.submit_host, mta.submit_port
    assert (await try_submit(host, port))[1].startswith("250")
    fill(disk)
    big = message(body=("x" * 76 + "\r\n") * 20000).encode()        # 1.5 MB: more than the ballast
    with caplog.at_level(logging.INFO):
        _mail, end = await try_submit(host, port, body=big)
        assert end.startswith("452 4.3.1"), end
        assert not os.path.exists(os.path.join(disk, "spool", "ballast"))   # given back
        mail, _ = await try_submit(host, port)                               # the episode goes on
        assert mail.startswith("452 4.3.1"), mail
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("mta")], \
        [r.getMessage() for r in caplog.records if r.exc_info]


def stall_until(flag: dict[str, bool], limit: float = 60.0) -> None:
    """Holds the receiver (its whole loop) until flag["yes"]: deliveries stay in flight."""
    deadline = time.monotonic() + limit
    while not flag["yes"] and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.timeout(180)
async def test_sigkill_on_a_full_disk_restarts_delivers_what_it_holds_and_accepts_again(
        tmp_path, world, dns_server, mx_port):
    deliverable = {"yes": False}
    rx = world.domain("example.test", script=Script(rcpt=lambda _a, _n: stall_until(deliverable)))
    with small_disk(str(tmp_path / "disk")) as disk:
        cfg = base_config(str(tmp_path), dns_server, mx_port,
                          mta={"spool_dir": os.path.join(disk, "spool"), "min_free_space": "1M",
                               "spool_ballast": "1M", "log_level": "info"},
                          delivery={"command_timeout": 60})
        path = write_config(str(tmp_path), cfg)
        host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
        submit = (host, int(port))
        proc = MtaProcess(path, os.path.join(str(tmp_path), "mta.log")).start(submit)
        try:
            acked = []
            for i in range(40):
                body = message(subject=f"held {i}", body=("y" * 76 + "\r\n") * 100).encode()
                _mail, end = await try_submit(*submit, body=body)
                assert end.startswith("250"), end
                acked.append(f"held {i}")
            await asyncio.sleep(0.5)                # deliveries are in flight (the receiver stalls)
            fill(disk)
            await asyncio.sleep(0.3)
            mail, _ = await try_submit(*submit)
            assert mail.startswith("452 4.3.1"), mail
            proc.kill9()
            assert free_bytes(disk) < 64 << 10
            assert os.path.exists(os.path.join(disk, "spool", "ballast"))

            proc.start(submit)                      # used to exit 1: "database or disk is full"
            mail, _ = await try_submit(*submit)
            assert mail.startswith("452 4.3.1"), mail
            deliverable["yes"] = True               # the destination takes mail again: the spool drains
            got = await rx.await_for(40, timeout=60)
            subjects = {m.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in got}
            assert set(acked) <= subjects
            mail, _ = await try_submit(*submit)     # the disk is still full: still refused
            assert mail.startswith("452 4.3.1"), mail

            os.unlink(os.path.join(disk, "filler"))  # space returns
            deadline = time.monotonic() + 10
            while True:
                _mail, end = await try_submit(*submit)
                if end.startswith("250") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert end.startswith("250"), end
            await rx.await_for(len(got) + 1, timeout=30)
            log = proc.log_tail(400)
            assert "Traceback" not in log, log
            assert "released the 1.0 MiB ballast" in log, log
        finally:
            deliverable["yes"] = True
            proc.terminate()
