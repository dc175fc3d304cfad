"""Culprit isolation and overflow pools with the MTA and a real policyd process: aiosmtpd receivers
stand in for an ISP ("google", recognised by its MX host name) and record the address each
message came from (ip1 = 127.0.0.11, ip2 = 127.0.0.12)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from tests.mta.conftest import message
from tests.mta.held import held_back, history, history_until, holds_leases, pauses, queue_list
from tests.mta.policyd import ONE_SOURCE, isp_domains
from tests.support.receiver import Script
from tests.support.waiting import until

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


def number(address: str) -> int:
    """bad-17@gmail.example -> 17"""
    return int(address.partition("@")[0].rpartition("-")[2])


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
    assert pauses(actions) == {"campaign|bought-list|google"}, actions        # not the IP, domain or sender
    pause = next(a for a in actions if a["action"] == "pause")
    assert "hard" in pause["reason"] and "bought-list" in pause["reason"]
    await until(lambda: not holds_leases(mta, lambda k: k.campaign == "bought-list"),
                "out of the leases granted to bought-list before the pause")
    for i in range(40, 50):
        await mta.send("news@sender.example", [f"bad-{i}@gmail.example"],
                       message(extra_headers="X-Campaign: bought-list\r\n"))
        await mta.send("news@sender.example", [f"good-{i}@gmail.example"],
                       message(extra_headers="X-Campaign: newsletter\r\n"))
    delivered = await mta.wait_event(lambda e: e["event"] == "delivered" and e["recipient"].startswith("good-"),
                                     n=50, timeout=60)
    assert {e["campaign"] for e in delivered} == {"newsletter"}
    new_bad = {f"bad-{i}@gmail.example" for i in range(40, 50)}
    waiting = await held_back(mta, google, new_bad, "campaign bought-list -> google")
    assert not {a for a in google.tried() if a.startswith("bad-") and number(a) >= 40}     # not even tried
    # What waits is all of bought-list not tried yet: the new ten, and any the pause caught queued.
    assert waiting.keys() == {f"bad-{i}@gmail.example" for i in range(50)} - google.tried(), waiting
    assert all("paused (rule hard_bounce_pause): campaign bought-list -> google" in w for w in waiting.values())
    assert pauses(await history(policyd)) == {"campaign|bought-list|google"}   # still nothing else


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
    assert pauses(actions) == {"sender|sloppy@sender.example|google"}
    ip = json.loads(await asyncio.to_thread(policyd.cli, "explain", "--json", "--source", "ip1", "--isp", "google"))
    assert not any(p["paused"] for p in ip["pairs"])          # the IP keeps sending for everyone else
    sender = json.loads(await asyncio.to_thread(policyd.cli, "explain", "--json", "--mailbox",
                                                "sloppy@sender.example"))
    [culprit] = [p for p in sender["pairs"] if p["key"] == "sender|sloppy@sender.example|google"]
    assert culprit["paused"] and "hard bounces" in json.dumps(culprit["actions"])
    mailbox_history = await asyncio.to_thread(policyd.cli, "history", "--json", "--mailbox",
                                               "sloppy@sender.example")
    assert "sender|sloppy@sender.example|google" in mailbox_history     # the culprit's actions too
    await until(lambda: not holds_leases(mta, lambda k: k.mailbox == "sloppy@sender.example"),
                "out of the leases granted to sloppy@ before the pause")
    for i in range(40, 45):
        await mta.send("sloppy@sender.example", [f"x-{i}@gmail.example"], message())
        await mta.send("careful@sender.example", [f"y-{i}@gmail.example"], message())
    await mta.wait_event(lambda e: e["event"] == "delivered" and e["recipient"].startswith("y-"), n=45, timeout=60)
    await held_back(mta, google, {f"x-{i}@gmail.example" for i in range(40, 45)},
                    "sender sloppy@sender.example -> google")
    assert not {a for a in google.tried() if a.startswith("x-") and number(a) >= 40}
    assert {f"y-{i}@gmail.example" for i in range(45)} <= google.tried()
    assert pauses(await history(policyd)) == {"sender|sloppy@sender.example|google"}


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
    delivered = await mta.wait_event(lambda e: e["event"] == "delivered", n=12, timeout=60)
    got = await google.await_for(12)
    assert google.count() == 12       # every outcome is recorded: nothing more will be sent
    assert Counter(m.peer_ip for m in got) == {"127.0.0.11": 3, "127.0.0.12": 9}
    assert Counter(e["source"] for e in delivered) == {"ip1": 3, "ip2": 9}
    assert await queue_list(mta) == []
