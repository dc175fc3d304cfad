"""Bounces and complaints end to end: the inbound listener (real SMTP), the parser, suppression,
and feedback to a real policyd."""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiosmtplib
import pytest

from bounce_parser import parse_bytes
from mta.inbound.verp import encode as verp_encode
from mta.queue.dsn import RecipientReport, build_dsn
from tests.mta.conftest import message
from tests.mta.policyd import ONE_SOURCE, isp_domains
from tests.mta.proc import run_cli
from tests.support.receiver import Script
from tests.support.smtpclient import RawClient

FBL = "fbl@bounces.test.example"


def remote_dsn(verp: str, recipient: str, status: str, diagnostic: str, original_headers: bytes) -> bytes:
    """A DSN as a remote MTA would send it later (built with our own composer: it is RFC 3464)."""
    body = build_dsn(reports=[RecipientReport(recipient, "failed", status, "mx.remote.example", diagnostic)],
                     original_sender=verp, original_headers=original_headers, queue_id="REMOTE1",
                     arrival=time.time(), now=time.time(), reporting_mta="mx.remote.example", dsn_queue_id="R1")
    return body


def arf_report(recipient: str, original_headers: bytes) -> bytes:
    boundary = "arf-boundary-1"
    return (
        f"From: <feedback@isp.example>\r\nTo: <{FBL}>\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        f"Authentication-Results: isp.example; spf=pass smtp.mailfrom=sender.example;"
        f" dkim=fail header.d=sender.example\r\n"
        f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
    ).encode() + original_headers + f"\r\nbody\r\n--{boundary}--\r\n".encode()


async def inject(mta, rcpt: str, data: bytes, sender: str = "") -> str:
    host, port = mta.daemon.cfg.inbound.listen[0].rsplit(":", 1)
    async with aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False) as smtp:
        _errors, reply = await smtp.sendmail(sender, [rcpt], data)
    return reply


def test_our_own_dsn_round_trips_through_the_parser():
    headers = b"From: <app@sender.example>\r\nTo: <gone@example.test>\r\nMessage-ID: <m1@app.example>\r\n"
    dsn = build_dsn(reports=[RecipientReport("gone@example.test", "failed", "5.1.1", "mx.example.test",
                                             "550 5.1.1 <gone@example.test>: user unknown")],
                    original_sender="app@sender.example", original_headers=headers, queue_id="Q1",
                    arrival=time.time(), now=time.time(), reporting_mta="mta.test.example", dsn_queue_id="D1")
    result = parse_bytes(dsn)
    assert result.kind == "dsn"
    [rec] = result.records
    assert (rec.recipient, rec.action, rec.status, rec.reason, rec.hard) == (
        "gone@example.test", "failed", "5.1.1", "userunknown", True)
    assert rec.message_id.strip("<>") == "m1@app.example"


async def test_inbound_refuses_forged_and_foreign_addresses(start_mta):
    mta = await start_mta(inbound={"feedback_addresses": [FBL]})
    host, port = mta.daemon.cfg.inbound.listen[0].rsplit(":", 1)
    good = verp_encode(b"test-secret", "ABCDEF0123456789AB", "u@example.test", "bounces.test.example")
    forged = good.replace(good.split("-")[2], "aaaaaaaa")
    c, _greeting = await RawClient.connect(host, int(port))
    await c.cmd("EHLO remote.example")
    await c.cmd("MAIL FROM:<>")
    assert (await c.cmd(f"RCPT TO:<{forged}>")).startswith("550 5.1.1")
    assert (await c.cmd("RCPT TO:<victim@elsewhere.example>")).startswith("550 5.1.1")
    assert (await c.cmd("RCPT TO:<postmaster@bounces.test.example>")).startswith("550 5.1.1")
    assert (await c.cmd(f"RCPT TO:<{good}>")).startswith("250")
    assert (await c.cmd(f"RCPT TO:<{FBL}>")).startswith("250")
    c.close()


async def test_async_hard_bounce_suppresses_and_next_message_is_not_attempted(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    await mta.send("app@sender.example", ["gone@example.test"], message(to="gone@example.test"))
    first = (await rx.await_for(1))[0]
    verp = first.mail_from
    head = first.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    reply = await inject(mta, verp, remote_dsn(verp, "gone@example.test", "5.1.1", "550 5.1.1 user unknown", head))
    assert reply.startswith("2.0.0 Ok") or "queued" in reply
    ev = (await mta.wait_event(lambda e: e["event"] == "bounced"))[0]
    assert ev["recipient"] == "gone@example.test" and ev["reason"] == "userunknown"
    assert ev["source"] in ("ip1", "ip2") and ev["site"] == "mx.example.test"      # attributed
    await asyncio.sleep(2.5)        # the daemon's suppression filter follows the table
    await mta.send("app@sender.example", ["gone@example.test"], message(to="gone@example.test"))
    dropped = (await mta.wait_event(lambda e: e["event"] == "dropped"))[0]
    assert dropped["reason"] == "hard_bounce"
    await asyncio.sleep(0.5)
    assert rx.count() == 1          # not attempted again
    listed = run_cli("suppression", "list", "--json", "--config", mta.config_path).stdout
    assert json.loads(listed.splitlines()[0])["reason"] == "hard_bounce"


async def test_synchronous_hard_bounce_suppresses(start_mta, world):
    rx = world.domain("example.test", script=Script(rcpt=lambda a, n: "550 5.1.1 no such user"))
    mta = await start_mta()
    await mta.send("", ["gone@example.test"], message())
    await mta.wait_event(lambda e: e["event"] == "bounced")
    await mta.send("", ["gone@example.test"], message())
    await mta.wait_event(lambda e: e["event"] == "dropped")
    assert sum(rx.rcpt_seen.values()) == 1


async def test_unparseable_report_is_quarantined_and_counted(start_mta):
    mta = await start_mta(inbound={"feedback_addresses": [FBL]})
    await inject(mta, FBL, b"Subject: hello\r\n\r\njust some mail, not a report\r\n")
    quarantine = os.path.join(mta.spool_dir, "inbound", "quarantine")
    for _ in range(100):
        if os.listdir(quarantine):
            break
        await asyncio.sleep(0.05)
    assert len(os.listdir(quarantine)) == 1
    assert mta.daemon.bounces.quarantined == 1


async def test_complaint_suppresses_for_tenant_and_reaches_policyd(start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory()
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE,
                          inbound={"feedback_addresses": [FBL]})
    await mta.send("app@sender.example", ["angry@gmail.example"],
                   message(to="angry@gmail.example", extra_headers="X-Tenant: acme\r\nX-Campaign: promo\r\n"))
    first = (await google.await_for(1))[0]
    head = first.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    await inject(mta, FBL, arf_report("angry@gmail.example", head), sender="feedback@isp.example")
    ev = (await mta.wait_event(lambda e: e["event"] == "complaint"))[0]
    assert ev["recipient"] == "angry@gmail.example" and ev["tenant"] == "acme" and ev["source"] == "ip1"
    assert ev["campaign"] == "promo"                      # from the delivery record
    assert "spf=pass" in ev["text"] and "dkim=fail" in ev["text"]        # authentication next to the complaint
    rows = [json.loads(x) for x in run_cli("suppression", "list", "--json", "--config", mta.config_path)
            .stdout.splitlines()]
    assert rows == [{**rows[0], "address": "angry@gmail.example", "tenant": "acme", "reason": "complaint"}]
    deadline = time.monotonic() + 15
    complaints = 0
    while time.monotonic() < deadline and not complaints:
        status = json.loads(policyd.cli("status", "--json", "--source", "ip1"))
        pairs = status if isinstance(status, list) else status.get("pairs", [])
        complaints = sum(p.get("health", {}).get("complaint", 0) for p in pairs if "google" in json.dumps(p))
        await asyncio.sleep(0.5)
    assert complaints >= 1


async def test_suppression_cli_add_import_export_remove(start_mta, world, tmp_path):
    rx = world.domain("example.test")
    mta = await start_mta()
    cfg = mta.config_path
    assert run_cli("suppression", "add", "manual@example.test", "--config", cfg).returncode == 0
    csv_path = os.path.join(tmp_path, "list.csv")
    with open(csv_path, "w") as f:
        f.write("address,reason\nimported@example.test,unsubscribe\n")
    assert run_cli("suppression", "import", csv_path, "--tenant", "acme", "--config", cfg).returncode == 0
    exported = run_cli("suppression", "export", "--config", cfg).stdout
    assert "manual@example.test" in exported and "imported@example.test,acme,unsubscribe" in exported
    await asyncio.sleep(2.5)
    await mta.send("a@sender.example", ["manual@example.test", "ok@example.test"], message())
    got = await rx.await_for(1)
    assert got[0].rcpt_tos == ["ok@example.test"]
    assert run_cli("suppression", "remove", "manual@example.test", "--config", cfg).returncode == 0
    await mta.send("a@sender.example", ["manual@example.test"], message())
    await rx.await_for(2)


@pytest.mark.parametrize("bad", ["not-an-address", "address,reason\nz@w.example,bogus"])
def test_suppression_import_rejects_bad_rows(tmp_path, bad):
    from tests.mta.conftest import write_config

    path = write_config(str(tmp_path), {"mta": {"spool_dir": str(tmp_path / "spool")}})
    src = os.path.join(tmp_path, "bad.csv")
    with open(src, "w") as f:
        f.write(bad + "\n")
    res = run_cli("suppression", "import", src, "--config", path)
    assert res.returncode == 2 and "line" in res.stderr


async def test_aligned_return_path_and_its_bounce_is_accepted(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(inbound={"aligned_bounce_subdomain": "bounces"})
    await mta.send("app@sender.example", ["gone@example.test"], message(to="gone@example.test"))
    first = (await rx.await_for(1))[0]
    assert first.mail_from.endswith("@bounces.sender.example")      # aligns with From: sender.example
    head = first.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    await inject(mta, first.mail_from, remote_dsn(first.mail_from, "gone@example.test", "5.1.1", "550 5.1.1 no",
                                                  head))
    ev = (await mta.wait_event(lambda e: e["event"] == "bounced"))[0]
    assert ev["recipient"] == "gone@example.test" and ev["reason"] == "userunknown"
