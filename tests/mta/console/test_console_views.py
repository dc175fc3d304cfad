"""The console's views and actions against the running daemon: policyd's warm-up and decisions
(a real policyd process), the queue per site, deliverability, suppressions; each action changes
what it says and is audited in the event log."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from mta.daemon.serve import MtaDaemon
from tests.mta.api.conftest import simple
from tests.mta.conftest import message
from tests.mta.policyd import ONE_SOURCE, isp_domains
from tests.support.receiver import Script
from tests.support.waiting import until


def audits(api) -> list[dict[str, Any]]:
    return [e for e in api.mta.events() if e["event"] == "operator_action"]


async def test_warmup_and_decisions_come_from_policyd_and_pause_reaches_it(start_api, browser, world, dns_server,
                                                                           policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory(schedules={"test": {"days": [40, 80, 160]}})
    api = await start_api(policy={"address": policyd.address}, egress=ONE_SOURCE)
    for i in range(3):
        await api.mta.send("a@sender.example", [f"u{i}@gmail.example"], message())
    await google.await_for(3)
    await api.mta.wait_event(lambda e: e["event"] == "delivered", n=3)

    async def google_pair() -> dict[str, Any] | None:
        _s, view, _h = await api.call("GET", "/console/api/warmup", "op")
        found = [p for p in view["pairs"] if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "google")]
        return found[0] if found and found[0]["used_today"] >= 3 else None

    pair = await until(google_pair, "the Google pair on the page")
    assert pair is not None and pair["day"] == 0 and pair["volume"] == 40 and not pair["operator_paused"]
    status, view, _h = await api.call("GET", "/console/api/warmup", "op")
    assert view["policyd"] == {"connected": True, "address": policyd.address, "error": ""}
    assert view["schedules"]["test"] == [40, 80, 160] and view["shared"] is False
    [today] = view["daily"]["ip1"]
    assert today["delivered"] == 3 and today["schedule"] == 40      # google's day-0 volume (yahoo unused)

    b = browser(api)
    await b.login(api.keys["op"])
    await b.session()
    status, body = await b.act({"action": "pause", "source": "ip1", "isp": "google", "duration": "2h",
                                "reason": "list import looks bad"})
    assert status == 200, body
    assert body["changed"] == ["ip|ip1|google"]
    # policyd itself says so (its own command line), with the operator's name in its history.
    listed = json.loads(policyd.cli("status", "--json"))["pairs"]
    [paused] = [p for p in listed if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "google")]
    assert paused["paused"] and paused["paused_until"] > time.time() + 7000
    assert "console (key-op): list import looks bad" in policyd.cli("history")
    [audit] = audits(api)
    assert audit["reason"] == "pause"
    assert audit["text"] == ("operator key-op: pause source=ip1 isp=google for 2h: changed ip|ip1|google; "
                             "reason: list import looks bad")
    # Decisions: the pause is there, filters narrow it down.
    _s, found, _h = await b.get("api/decisions?source=ip1&isp=google")
    assert [(a["rule"], a["action"], a["key"]) for a in found["actions"]][-1:] == [("operator", "pause",
                                                                                    "ip|ip1|google")]
    _s, none, _h = await b.get("api/decisions?isp=yahoo")
    assert not [a for a in none["actions"] if a["rule"] == "operator"]
    _s, kinds, _h = await b.get("api/decisions?kind=operator")
    assert kinds["actions"] and all(a["rule"].startswith("operator") for a in kinds["actions"])
    # policyd refuses a name it never heard of; the console says why and audits nothing.
    status, body = await b.act({"action": "pause", "source": "ip1", "isp": "gmial"})
    assert status == 422 and "gmial" in body["error"]["message"]
    status, body = await b.act({"action": "set_day", "source": "ip1", "isp": "google", "day": 2})
    assert status == 200
    status, body = await b.act({"action": "resume", "source": "ip1", "isp": "google"})
    assert status == 200
    _s, view, _h = await b.get("api/warmup")
    [pair] = [p for p in view["pairs"] if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "google")]
    assert pair["day"] == 2 and pair["volume"] == 160 and not pair["paused"]
    assert [a["reason"] for a in audits(api)] == ["pause", "set_day", "resume"]


async def test_without_policyd_the_warmup_view_says_static_limits(start_api):
    api = await start_api()
    status, view, _h = await api.call("GET", "/console/api/warmup", "op")
    assert status == 200 and view["policyd"]["connected"] is False and "static limits" in view["policyd"]["error"]
    assert view["pairs"] == []
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "pause", "source": "ip1"})
    assert status == 409 and "static limits" in body["error"]["message"]
    status, found, _h = await api.call("GET", "/console/api/decisions", "op")
    assert status == 200 and found["actions"] == []


async def test_queue_per_site_with_replies_and_hold_release_flush(start_api, world):
    deferring = {"on": True}

    def rcpt(address: str, n: int) -> str | None:
        return "451 4.3.0 mailbox busy, try later" if deferring["on"] else None

    rx = world.domain("slow.example", script=Script(rcpt=rcpt))
    api = await start_api(queue={"retry_base": 600, "retry_max": 600})
    sent = [(await api.send(simple(to=f"u{i}@slow.example")))["id"] for i in range(3)]
    await api.mta.wait_event(lambda e: e["event"] == "deferred", n=3)

    async def site_row() -> dict[str, Any] | None:
        _s, view, _h = await api.call("GET", "/console/api/queue", "op")
        rows = [s for s in view["sites"] if s["site"] == "mx.slow.example"]
        return rows[0] if rows and rows[0]["deferred"] == 3 else None

    row = await until(site_row, "the site's row")
    assert row is not None, (await api.call("GET", "/console/api/queue", "op"))[1]
    assert row["queued"] == 0 and row["held"] == 0 and row["oldest_age"] >= 0
    assert row["last_replies"] == ["451 4.3.0 mailbox busy, try later"]
    assert row["waiting"].startswith("on disk until its next attempt at ")
    # Hold: everything for the site is held; the counts say so.
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "hold",
                                                                                 "site": "mx.slow.example"})
    assert status == 200 and body["recipients"] == 3, body

    async def held() -> dict[str, Any] | None:
        api.mta.daemon.events.flush()
        _s, view, _h = await api.call("GET", "/console/api/queue", "op")
        rows = [s for s in view["sites"] if s["site"] == "mx.slow.example" and s["held"] == 3]
        return rows[0] if rows else None

    assert await until(held, "held")
    deferring["on"] = False
    # Flushing a held site sends nothing; releasing it makes the mail due at once (retry_base is 10 min).
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "flush",
                                                                                 "site": "mx.slow.example"})
    assert status == 200 and body["recipients"] == 0
    await asyncio.sleep(0.5)
    assert rx.count() == 0
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "release",
                                                                                 "site": "mx.slow.example"})
    assert status == 200 and body["recipients"] == 3
    await rx.await_for(3)
    for i, qid in enumerate(sent):
        await api.wait_state(qid, f"u{i}@slow.example", "delivered")
    assert [a["reason"] for a in audits(api)] == ["hold", "flush", "release"]
    assert "hold mx.slow.example: 3 recipients" in audits(api)[0]["text"]
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "hold"})
    assert status == 422 and body["error"]["field"] == "site"


async def test_flush_makes_a_sites_deferred_mail_due_now(start_api, world):
    deferring = {"on": True}
    rx = world.domain("later.example", script=Script(rcpt=lambda a, n: "451 4.3.0 later" if deferring["on"] else None))
    api = await start_api(queue={"retry_base": 600, "retry_max": 600})
    sent = await api.send(simple(to="x@later.example"))
    await api.mta.wait_event(lambda e: e["event"] == "deferred")
    deferring["on"] = False
    await asyncio.sleep(0.5)
    assert rx.count() == 0                   # its retry is ten minutes away
    status, body, _h = await api.call("POST", "/console/api/action", "op",
                                      json={"action": "flush", "site": "mx.later.example"})
    assert status == 200 and body["recipients"] == 1
    await api.wait_state(sent["id"], "x@later.example", "delivered")


async def test_deliverability_counts_outcomes_per_site_and_source(start_api, world):
    world.domain("ok.example")
    world.domain("gone.example", script=Script(rcpt=lambda a, n: "550 5.1.1 no such user"))
    api = await start_api()
    a = await api.send(simple(to=["u1@ok.example", "u2@ok.example"]))
    b = await api.send(simple(to="x@gone.example"))
    await api.wait_state(a["id"], "u2@ok.example", "delivered")
    await api.wait_state(b["id"], "x@gone.example", "bounced")
    _s, by_isp, _h = await api.call("GET", "/console/api/deliverability?by=isp&hours=24", "op")
    assert len(by_isp["series"]["mx.ok.example"]) == 24
    total = {k: sum(h.get(k, 0) for h in by_isp["series"]["mx.ok.example"]) for k in ("delivered", "bounced")}
    assert total == {"delivered": 2, "bounced": 0}
    assert sum(h.get("bounced", 0) for h in by_isp["series"]["mx.gone.example"]) == 1
    _s, by_ip, _h = await api.call("GET", "/console/api/deliverability?by=ip&hours=2", "op")
    assert sum(h.get("delivered", 0) for s in by_ip["series"].values() for h in s) == 2
    assert set(by_ip["series"]) <= {"ip1", "ip2"}
    for bad in ("by=site", "hours=0", "hours=x", "hours=1000"):
        status, _body, _h = await api.call("GET", f"/console/api/deliverability?{bad}", "op")
        assert status == 400, bad


async def test_deliverability_survives_a_restart_from_the_event_log(start_api, world):
    world.domain("ok.example")
    api = await start_api()
    sent = await api.send(simple(to="u@ok.example"))
    await api.wait_state(sent["id"], "u@ok.example", "delivered")
    await api.mta.daemon.stop()
    again = MtaDaemon(api.mta.daemon.cfg, clock=api.mta.clock)        # same config, spool, event log and keys
    await again.start()
    try:
        async def counted() -> int:
            _s, view, _h = await api.call("GET", "/console/api/deliverability?by=isp&hours=24", "op")
            return sum(h.get("delivered", 0) for h in view["series"].get("mx.ok.example", []))

        assert await until(counted, "counted") == 1
    finally:
        await again.stop()


async def test_suppressions_search_and_lift(start_api, world):
    api = await start_api()
    for who in ("a", "b"):
        status, _e, _h = await api.call("POST", "/v1/suppressions", who, json={"address": "Gone@Example.test",
                                                                               "detail": f"by {who}"})
        assert status == 201
    _s, found, _h = await api.call("GET", "/console/api/suppressions?q=GONE@example.test", "op")
    assert sorted((e["tenant"], e["reason"], e["detail"]) for e in found["entries"]) == [
        ("tenant-a", "manual", "by a"), ("tenant-b", "manual", "by b")]
    status, body, _h = await api.call("POST", "/console/api/action", "op",
                                      json={"action": "lift", "address": "gone@example.test", "tenant": "tenant-a"})
    assert status == 200 and body["removed"] == 1
    _s, found, _h = await api.call("GET", "/console/api/suppressions?q=gone@example.test", "op")
    assert [e["tenant"] for e in found["entries"]] == ["tenant-b"]
    status, body, _h = await api.call("POST", "/console/api/action", "op",
                                      json={"action": "lift", "address": "gone@example.test", "tenant": "tenant-a"})
    assert status == 404
    [audit] = audits(api)
    assert audit["reason"] == "lift" and "gone@example.test (tenant tenant-a)" in audit["text"]
    # Tenant a can send to it again; b still cannot.
    world.domain("example.test")
    ok = await api.send(simple(to="gone@example.test"))
    await api.wait_state(ok["id"], "gone@example.test", "delivered")


async def test_bad_actions_are_refused_naming_the_field(start_api):
    api = await start_api()
    for body, field in (({"action": "explode"}, "action"), ({"action": "lift", "address": "nobody"}, "address"),
                        ({"action": "flush", "site": 5}, "site"), ({"action": "flush", "reason": "x" * 500}, "reason"),
                        ([1, 2], "")):
        status, reply, _h = await api.call("POST", "/console/api/action", "op", json=body)
        assert status == 422 and reply["error"]["field"] == field, (body, reply)
    status, reply, _h = await api.call("POST", "/console/api/action", "op", data=b"{not json",
                                       headers={"Content-Type": "application/json"})
    assert status == 400
    assert audits(api) == []


async def test_mail_waiting_in_memory_for_a_paused_pair_says_why_and_can_be_held(start_api, world, dns_server,
                                                                                   policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory()
    api = await start_api(policy={"address": policyd.address}, egress=ONE_SOURCE)
    status, body, _h = await api.call("POST", "/console/api/action", "op",
                                      json={"action": "pause", "source": "ip1", "isp": "google", "force": True})
    assert status == 200, body
    for i in range(2):
        await api.mta.send("a@sender.example", [f"w{i}@gmail.example"], message())
    site = "gmail-smtp-in.l.google.test"

    async def waiting() -> dict[str, Any] | None:
        _s, view, _h = await api.call("GET", "/console/api/queue", "op")
        rows = [s for s in view["sites"] if s["site"] == site and s["in_memory"] == 2 and "paused" in s["waiting"]]
        return rows[0] if rows else None

    row = await until(waiting, "a waiting row")
    assert row is not None, (await api.call("GET", "/console/api/queue", "op"))[1]
    assert row["queued"] == 2 and "ip1 -> google" in row["waiting"]
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "hold", "site": site})
    assert status == 200 and body["recipients"] == 2
    _s, view, _h = await api.call("GET", "/console/api/queue", "op")
    [row] = [s for s in view["sites"] if s["site"] == site]
    assert row["in_memory"] == 0
    await api.call("POST", "/console/api/action", "op", json={"action": "resume", "source": "ip1", "isp": "google"})
    await asyncio.sleep(1.0)
    assert google.count() == 0                 # held: the resumed pair has nothing to send
    status, body, _h = await api.call("POST", "/console/api/action", "op", json={"action": "release", "site": site})
    assert status == 200 and body["recipients"] == 2
    await google.await_for(2)


async def test_with_policyd_down_the_console_says_so_and_actions_are_503(start_api, world, dns_server,
                                                                         policyd_factory):
    isp_domains(world, dns_server)
    policyd = policyd_factory()
    api = await start_api(policy={"address": policyd.address}, egress=ONE_SOURCE)
    _s, view, _h = await api.call("GET", "/console/api/warmup", "op")
    assert view["policyd"]["connected"] is True
    policyd.kill()

    async def down() -> dict[str, Any] | None:
        _s, view, _h = await api.call("GET", "/console/api/warmup", "op")
        return view if not view["policyd"]["connected"] else None

    view = await until(down, "the down view")
    assert view is not None and policyd.address in view["policyd"]["error"] and view["pairs"] == []
    status, body, _h = await api.call("POST", "/console/api/action", "op",
                                      json={"action": "pause", "source": "ip1", "isp": "google"})
    assert status == 503 and policyd.address in body["error"]["message"]
    status, body, _h = await api.call("GET", "/console/api/decisions", "op")
    assert status == 503
    assert audits(api) == []
