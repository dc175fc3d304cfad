"""Culprit isolation and overflow pools with the MTA and a real policyd process: aiosmtpd receivers
stand in for an ISP ("google", recognised by its MX host name) and record the address each
message came from (ip1 = 127.0.0.11, ip2 = 127.0.0.12)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from typing import Any

from tests.mta.conftest import message
from tests.mta.policyd import ONE_SOURCE, Policyd, isp_domains
from tests.mta.proc import REPO, mta_command
from tests.support.receiver import Script

UNKNOWN_USER = ("550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking "
                "the recipient's email address for typos or unnecessary spaces.")


def unknown_users(prefix: str):
    """Most recipients whose address starts with `prefix` do not exist (1 in 8 does)."""
    def rcpt(address: str, n: int) -> str | None:
        local = address.partition("@")[0]
        if local.startswith(prefix) and int(local.rpartition("-")[2]) % 8:
            return UNKNOWN_USER
        return None
    return rcpt


async def history_until(policyd: Policyd, wanted, timeout: float = 20.0) -> list[dict[str, Any]]:
    """policyd's recorded actions, once one of them satisfies `wanted` (the CLI runs in a thread,
    so the MTA in this loop keeps delivering and reporting meanwhile)."""
    deadline = time.monotonic() + timeout
    actions: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        out = await asyncio.to_thread(policyd.cli, "history", "--json", "--limit", "500")
        actions = [json.loads(line) for line in out.splitlines() if line.strip()]
        if any(wanted(a) for a in actions):
            return actions
        await asyncio.sleep(0.5)
    raise AssertionError(f"no such action in policyd's history: {actions}")


async def queue_waiting(mta) -> list[str]:
    cli = await asyncio.create_subprocess_exec(*mta_command("queue", "list", "--json", "--config", mta.config_path),
                                               stdout=asyncio.subprocess.PIPE, cwd=REPO,
                                               env={**os.environ, "PYTHONPATH": REPO})
    out, _ = await cli.communicate()
    return [m["waiting"] for m in json.loads(out)]


async def test_a_bouncing_campaign_is_paused_alone(start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server, google_script=Script(rcpt=unknown_users("bad")))
    policyd = policyd_factory()
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE)
    for i in range(40):         # one sender, one domain, two campaigns
        await mta.send("news@sender.example", [f"bad-{i}@gmail.example"],
                       message(extra_headers="X-Campaign: bought-list\r\n"))
        await mta.send("news@sender.example", [f"good-{i}@gmail.example"],
                       message(extra_headers="X-Campaign: newsletter\r\n"))
    actions = await history_until(policyd, lambda a: a["key"] == "campaign|bought-list|google"
                                  and a["action"] == "pause")
    paused = {a["key"] for a in actions if a["action"] == "pause"}
    assert paused == {"campaign|bought-list|google"}, actions        # not the IP, domain or sender
    pause = next(a for a in actions if a["action"] == "pause")
    assert "hard" in pause["reason"] and "bought-list" in pause["reason"]
    await asyncio.sleep(2.5)    # leases granted before the pause (2 s) run out
    tried = set(google.rcpt_seen)
    for i in range(40, 50):
        await mta.send("news@sender.example", [f"bad-{i}@gmail.example"],
                       message(extra_headers="X-Campaign: bought-list\r\n"))
        await mta.send("news@sender.example", [f"good-{i}@gmail.example"],
                       message(extra_headers="X-Campaign: newsletter\r\n"))
    await mta.wait_event(lambda e: e["event"] == "delivered" and e["recipient"].startswith("good-")
                         and int(e["recipient"].partition("@")[0][5:]) >= 40, n=10)
    await asyncio.sleep(1)
    assert not {a for a in set(google.rcpt_seen) - tried if a.startswith("bad-")}     # not even tried
    delivered = [e for e in mta.events() if e["event"] == "delivered"]
    assert {e["campaign"] for e in delivered if e["recipient"].startswith("good-")} == {"newsletter"}
    waiting = await queue_waiting(mta)
    assert len(waiting) == 10 and all("campaign bought-list -> google" in w for w in waiting), waiting


async def test_a_bouncing_sender_is_paused_alone(start_mta, world, dns_server, policyd_factory):
    """No campaign: the sender mailbox is the culprit. Feedback names it (always), and so do the
    grant requests, or policyd's pause of the sender would hold nothing back."""
    google, _yahoo = isp_domains(world, dns_server, google_script=Script(rcpt=unknown_users("x")))
    policyd = policyd_factory()
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE)
    for i in range(40):
        await mta.send("Sloppy@sender.example", [f"x-{i}@gmail.example"], message())
        await mta.send("careful@sender.example", [f"y-{i}@gmail.example"], message())
    actions = await history_until(policyd, lambda a: a["key"] == "sender|sloppy@sender.example|google"
                                  and a["action"] == "pause")
    assert {a["key"] for a in actions if a["action"] == "pause"} == {"sender|sloppy@sender.example|google"}
    ip = json.loads(await asyncio.to_thread(policyd.cli, "explain", "--json", "--source", "ip1", "--isp", "google"))
    assert not any(p["paused"] for p in ip["pairs"])          # the IP keeps sending for everyone else
    sender = json.loads(await asyncio.to_thread(policyd.cli, "explain", "--json", "--mailbox",
                                                "sloppy@sender.example"))
    [culprit] = [p for p in sender["pairs"] if p["key"] == "sender|sloppy@sender.example|google"]
    assert culprit["paused"] and "hard bounces" in json.dumps(culprit["actions"])
    mailbox_history = await asyncio.to_thread(policyd.cli, "history", "--json", "--mailbox",
                                               "sloppy@sender.example")
    assert "sender|sloppy@sender.example|google" in mailbox_history     # the culprit's actions too
    await asyncio.sleep(2.5)
    tried, before = set(google.rcpt_seen), google.count()
    for i in range(40, 45):
        await mta.send("sloppy@sender.example", [f"x-{i}@gmail.example"], message())
        await mta.send("careful@sender.example", [f"y-{i}@gmail.example"], message())
    await google.await_for(before + 5)
    await asyncio.sleep(1)
    assert not {a for a in set(google.rcpt_seen) - tried if a.startswith("x-")}
    assert {a for a in set(google.rcpt_seen) - tried} == {f"y-{i}@gmail.example" for i in range(40, 45)}


async def test_an_overflow_pool_takes_what_the_young_ip_cannot(start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory(
        schedules={"tiny": {"days": [3]}, "big": {"days": [1000]}},
        sources=[{"name": "ip1", "schedule": "tiny"}, {"name": "ip2", "schedule": "big"}],
        pools={"young": {"overflow": "warm"}, "warm": {"sources": ["ip2"]}})
    mta = await start_mta(policy={"address": policyd.address},
                          egress={"pools": {"young": {"sources": ["ip1"]}, "warm": {"sources": ["ip2"]}}},
                          streams={"transactional": {"pool": "young", "priority": 0},
                                   "marketing": {"pool": "young"}})
    for i in range(12):
        await mta.send("news@sender.example", [f"u{i}@gmail.example"], message())
    got = await google.await_for(12, timeout=30)
    assert Counter(m.peer_ip for m in got) == {"127.0.0.11": 3, "127.0.0.12": 9}
    await asyncio.sleep(1)
    assert google.count() == 12
    delivered = [e for e in mta.events() if e["event"] == "delivered"]
    assert Counter(e["source"] for e in delivered) == {"ip1": 3, "ip2": 9}
    assert await queue_waiting(mta) == []
