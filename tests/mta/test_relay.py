"""Delivery through an upstream relay (smarthost), end to end: real aiosmtpd relays on 127.0.2.x
with STARTTLS or TLS from the first byte and required AUTH; the recipient domains of relayed mail
have no DNS records at all, so only the relay can have taken them."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from mta.delivery.relay import HOST_RESTS
from tests.mta.conftest import message
from tests.mta.policyd import ONE_SOURCE
from tests.support.receiver import Receiver, Script, free_port

USERS = {"outreach": "s3cret pass"}
RELAY_IPS = ["127.0.2.1", "127.0.2.2"]


@pytest.fixture
def relays() -> Any:
    """Starts relay receivers on 127.0.2.x; returns a factory. Tests name this fixture before
    start_mta, so the MTA stops (and says QUIT) while its relays still answer."""
    started: list[Receiver] = []

    def make(ip: str, port: int, **kw: Any) -> Receiver:
        r = Receiver(ip, port, hostname=f"relay-{ip}.test", **kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


def ca_bundle(tmp_path: Any, *receivers: Receiver) -> str:
    path = os.path.join(str(tmp_path), "relay-ca.pem")
    with open(path, "w") as out:
        for r in receivers:
            with open(r.cert_path) as f:
                out.write(f.read())
    return path


def password_file(tmp_path: Any, secret: str) -> str:
    path = os.path.join(str(tmp_path), "esp.secret")
    with open(path, "w") as f:
        f.write(secret + "\n")
    return path


def relay_config(hosts: list[str], **relay: Any) -> dict[str, Any]:
    """The marketing stream goes out through pool "outreach", which delivers through relay "esp";
    transactional mail (and DSNs) keeps the default pool and MX lookup."""
    return {"relays": {"esp": {"hosts": hosts, **relay}},
            "egress": {"pools": {"outreach": {"sources": ["ip1"], "relay": "esp"}}},
            "streams": {"marketing": {"pool": "outreach"}}}


def outreach(to: str = "lead@nowhere.test", subject: str = "hello") -> str:
    return message(subject=subject, to=to, extra_headers="X-Stream: marketing\r\n")


def relay_failures(mta: Any, host: str, stage: str) -> float:
    value = mta.daemon.metrics.registry.get_sample_value(
        "mta_relay_failures_total", {"relay": "esp", "host": host, "stage": stage})
    return value or 0.0


async def no_relay_connection(mta: Any) -> None:
    """Waits until the relay site's connections have closed (idle timeout), so the next message
    needs a new connection."""
    for _ in range(200):
        site = mta.daemon.scheduler.sites.get("relay:esp")
        if site is None or site.connections == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("relay connections stayed open")


async def test_relay_pool_goes_through_relay_with_auth_over_starttls_other_pools_use_mx(relays, start_mta, world,
                                                                                       tmp_path):
    mx = world.domain("example.test")
    port = free_port(RELAY_IPS)
    relay = relays("127.0.2.1", port, tls=True, users=USERS)
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}"], tls="starttls", username="outreach",
                                         password_file=password_file(tmp_path, USERS["outreach"]),
                                         ca_file=ca_bundle(tmp_path, relay)))
    await mta.send("sam@sender.example", ["lead@nowhere.test", "boss@example.test"], outreach())
    await mta.send("app@sender.example", ["user@example.test"], message(subject="receipt"))
    [got] = await relay.await_for(1)
    assert sorted(got.rcpt_tos) == ["boss@example.test", "lead@nowhere.test"]   # one transaction
    assert got.tls and got.auth_user == "outreach"
    assert (got.peer_ip, got.ehlo) == ("127.0.0.11", "mta1.test.example")       # the pool's source
    [direct] = await mx.await_for(1)
    assert direct.rcpt_tos == ["user@example.test"] and b"Subject: receipt" in direct.data
    delivered = await mta.wait_event(lambda e: e["event"] == "delivered", n=3)
    relayed = [e for e in delivered if e["recipient"] != "user@example.test"]
    assert {e["site"] for e in relayed} == {"relay:esp"}
    assert {e["mx"] for e in relayed} == {f"127.0.2.1:{port}[127.0.2.1]"}
    await asyncio.sleep(0.5)
    assert mx.count() == 1 and relay.count() == 1


async def test_primary_down_secondary_takes_it_and_primary_is_used_again_when_back(relays, start_mta, world, tmp_path):
    port = free_port(RELAY_IPS)
    secondary = relays("127.0.2.2", port, tls=True, users=USERS)
    hosts = [f"127.0.2.1:{port}", f"127.0.2.2:{port}"]
    mta = await start_mta(**relay_config(hosts, username="outreach", password=USERS["outreach"],
                                         verify_certificate=False))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())    # nothing listens on 127.0.2.1
    await secondary.await_for(1)
    [first] = await mta.wait_event(lambda e: e["event"] == "delivered")
    assert first["mx"] == f"127.0.2.2:{port}[127.0.2.2]"
    assert relay_failures(mta, f"127.0.2.1:{port}", "connect") >= 1
    assert not [e for e in mta.events() if e["event"] in ("deferred", "bounced")]

    # The primary failed a moment ago: the next connection goes to the secondary first, without
    # waiting on the dead host again.
    failures = relay_failures(mta, f"127.0.2.1:{port}", "connect")
    await no_relay_connection(mta)
    await mta.send("sam@sender.example", ["b@nowhere.test"], outreach())
    await secondary.await_for(2)
    assert relay_failures(mta, f"127.0.2.1:{port}", "connect") == failures

    primary = relays("127.0.2.1", port, tls=True, users=USERS)
    await no_relay_connection(mta)
    mta.clock.advance(HOST_RESTS + 1)                   # its rest is over: first again
    await mta.send("sam@sender.example", ["c@nowhere.test"], outreach())
    await primary.await_for(1)
    third = await mta.wait_event(lambda e: e["event"] == "delivered" and e["recipient"] == "c@nowhere.test")
    assert third[0]["mx"] == f"127.0.2.1:{port}[127.0.2.1]"
    assert secondary.count() == 2


async def test_busy_greeting_and_untrusted_certificate_fall_back_to_the_next_host(relays, start_mta, world, tmp_path):
    port = free_port(["127.0.2.1", "127.0.2.2", "127.0.2.3"])
    relays("127.0.2.1", port, script=Script(greeting="421 4.3.2 too busy, try another host"))
    untrusted = relays("127.0.2.2", port, tls=True, users=USERS)
    trusted = relays("127.0.2.3", port, tls=True, users=USERS)
    hosts = [f"127.0.2.{i}:{port}" for i in (1, 2, 3)]
    mta = await start_mta(**relay_config(hosts, username="outreach", password=USERS["outreach"],
                                         ca_file=ca_bundle(tmp_path, trusted)))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())
    await trusted.await_for(1)
    assert untrusted.count() == 0 and untrusted.auth_failures == 0     # no password to an unverified host
    assert relay_failures(mta, f"127.0.2.1:{port}", "greeting") >= 1
    assert relay_failures(mta, f"127.0.2.2:{port}", "tls") >= 1
    [delivered] = await mta.wait_event(lambda e: e["event"] == "delivered")
    assert delivered["mx"] == f"127.0.2.3:{port}[127.0.2.3]"


async def test_refused_ehlo_falls_back_and_every_host_down_defers(relays, start_mta, world, tmp_path):
    port = free_port(RELAY_IPS)
    refusing = relays("127.0.2.1", port, tls=True, script=Script(ehlo="554 5.7.1 not from your network"))
    hosts = [f"127.0.2.1:{port}", f"127.0.2.2:{port}"]           # nothing listens on 127.0.2.2 yet
    mta = await start_mta(**relay_config(hosts, username="outreach", password=USERS["outreach"],
                                         verify_certificate=False))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())
    [deferred] = await mta.wait_event(lambda e: e["event"] == "deferred")
    assert "554 5.7.1 not from your network" in deferred["text"] and deferred["site"] == "relay:esp"
    assert relay_failures(mta, f"127.0.2.1:{port}", "ehlo") >= 1
    assert relay_failures(mta, f"127.0.2.2:{port}", "connect") >= 1
    secondary = relays("127.0.2.2", port, tls=True, users=USERS)
    await mta.daemon.scheduler.flush()          # postqueue -f: no waiting out the back-off
    await secondary.await_for(1)
    assert refusing.count() == 0
    assert not [e for e in mta.events() if e["event"] == "bounced"]


async def test_implicit_tls_relay_and_an_untrusted_certificate_passed_over(relays, start_mta, world, tmp_path):
    port = free_port(RELAY_IPS)
    untrusted = relays("127.0.2.1", port, implicit_tls=True, users=USERS)
    relay = relays("127.0.2.2", port, implicit_tls=True, users=USERS)
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}", f"127.0.2.2:{port}"], tls="implicit",
                                         username="outreach", password=USERS["outreach"],
                                         ca_file=ca_bundle(tmp_path, relay)))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())
    [got] = await relay.await_for(1)
    assert got.tls and got.auth_user == "outreach"
    assert untrusted.count() == 0 and untrusted.auth_failures == 0
    assert relay_failures(mta, f"127.0.2.1:{port}", "tls") >= 1


async def test_relay_without_starttls_is_never_used_in_plain_text(relays, start_mta, world, tmp_path):
    port = free_port(RELAY_IPS)
    plain = relays("127.0.2.1", port)          # offers no STARTTLS
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}"], tls="starttls"))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())
    deferred = await mta.wait_event(lambda e: e["event"] == "deferred")
    assert "STARTTLS" in deferred[0]["text"]
    await asyncio.sleep(0.5)
    assert plain.count() == 0
    assert relay_failures(mta, f"127.0.2.1:{port}", "tls") >= 1


async def test_wrong_password_defers_and_never_bounces(relays, start_mta, world, tmp_path, caplog):
    port = free_port(RELAY_IPS)
    relay = relays("127.0.2.1", port, tls=True, users=USERS)
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}"], username="outreach", password="wrong",
                                         verify_certificate=False))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())
    deferred = await mta.wait_event(lambda e: e["event"] == "deferred" and e["recipient"] == "a@nowhere.test", n=2)
    assert all("535" in e["text"] for e in deferred)
    assert relay.count() == 0 and relay.auth_failures >= 1
    assert relay_failures(mta, f"127.0.2.1:{port}", "auth") >= 2
    assert not [e for e in mta.events() if e["event"] in ("bounced", "expired", "delivered")]
    assert any(r.levelname == "ERROR" and "authentication failed" in r.getMessage() for r in caplog.records)


async def test_auth_demanded_inside_the_transaction_is_temporary(relays, start_mta, world, tmp_path):
    port = free_port(RELAY_IPS)
    relay = relays("127.0.2.1", port, tls=True, users=USERS)       # requires AUTH; we send none
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}"], verify_certificate=False))
    await mta.send("sam@sender.example", ["a@nowhere.test"], outreach())
    [deferred] = await mta.wait_event(lambda e: e["event"] == "deferred")
    assert deferred["code"] == 454 and "530" in deferred["text"]
    assert deferred["reason"] != "securityerror"        # not the sending domain's SPF/DKIM/DMARC
    assert relay.count() == 0
    assert not [e for e in mta.events() if e["event"] == "bounced"]


async def test_relay_replies_temporary_retried_permanent_bounced_with_dsn(relays, start_mta, world, tmp_path):
    sender_mx = world.domain("sender.example")          # where the DSN goes (by MX, default pool)

    def rcpt(address: str, n: int) -> str | None:
        if address.startswith("bad"):
            return "550 5.1.1 no such user here"
        if address.startswith("later") and n == 1:
            return "451 4.3.0 try again later"
        return None

    port = free_port(RELAY_IPS)
    relay = relays("127.0.2.1", port, tls=True, users=USERS, script=Script(rcpt=rcpt))
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}"], username="outreach", password=USERS["outreach"],
                                         verify_certificate=False))
    await mta.send("sam@sender.example", ["bad@nowhere.test"], outreach(to="bad@nowhere.test"))
    await mta.send("sam@sender.example", ["later@nowhere.test"], outreach(to="later@nowhere.test"))
    [bounced] = await mta.wait_event(lambda e: e["event"] == "bounced")
    assert bounced["recipient"] == "bad@nowhere.test" and bounced["status"] == "5.1.1"
    [dsn] = await sender_mx.await_for(1)
    assert dsn.rcpt_tos == ["sam@sender.example"] and b"5.1.1" in dsn.data
    await mta.wait_event(lambda e: e["event"] == "deferred" and e["recipient"] == "later@nowhere.test")
    await mta.wait_event(lambda e: e["event"] == "delivered" and e["recipient"] == "later@nowhere.test")
    assert relay.recipients() == ["later@nowhere.test"]


async def test_relay_rate_cap_holds_the_rest(relays, start_mta, world, tmp_path):
    port = free_port(RELAY_IPS)
    relay = relays("127.0.2.1", port, tls=True, users=USERS)
    mta = await start_mta(**relay_config([f"127.0.2.1:{port}"], username="outreach", password=USERS["outreach"],
                                         verify_certificate=False, rate_per_minute=3))
    for i in range(6):
        await mta.send("sam@sender.example", [f"r{i}@nowhere.test"], outreach())
    await relay.await_for(3)
    await asyncio.sleep(2)      # a token comes every 20 s: no fourth message meanwhile
    assert relay.count() == 3
    assert not [e for e in mta.events() if e["event"] in ("deferred", "bounced")]


@pytest.mark.parametrize("warmup", [True, False])
async def test_warmup_asks_policyd_per_relay_only_when_configured(relays, start_mta, world, tmp_path, policyd_factory,
                                                                   warmup):
    port = free_port(RELAY_IPS)
    relay = relays("127.0.2.1", port, tls=True, users=USERS)
    # policyd recognises the relay by its host name as an ISP of its own, with 3 messages a day.
    policyd = policyd_factory(isps={"esp": {"mx": ["127.0.2.*"], "ip_schedule": "relay", "warmup": True}},
                              schedules={"relay": {"days": [3]}})
    cfg = relay_config([f"127.0.2.1:{port}"], username="outreach", password=USERS["outreach"],
                       verify_certificate=False, warmup=warmup)
    cfg["egress"] = {**ONE_SOURCE, **cfg["egress"]}
    cfg["egress"]["pools"] = {**ONE_SOURCE["pools"], **cfg["egress"]["pools"]}
    mta = await start_mta(policy={"address": policyd.address}, **cfg)
    for i in range(6):
        await mta.send("sam@sender.example", [f"w{i}@nowhere.test"], outreach())
    if warmup:
        await relay.await_for(3)
        await asyncio.sleep(3)          # several lease rounds: the relay's day is used
        assert relay.count() == 3
        status = json.loads(policyd.cli("status", "--json"))
        [pair] = [p for p in status["pairs"] if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "esp")]
        assert pair["used_today"] == 3
    else:
        await relay.await_for(6)        # the ESP warms its own IPs: policyd's schedule is not asked
        await asyncio.sleep(1.5)        # feedback would have reached policyd by now
        status = json.loads(policyd.cli("status", "--json"))
        assert not [p for p in status["pairs"] if p["isp"] == "esp" and p.get("used_today")]
