"""The MTA and a real policyd process together, with aiosmtpd receivers standing in for two ISPs
("google" and "yahoo", recognised by their MX host names)."""

from __future__ import annotations

import json
from datetime import datetime

from tests.mta.conftest import message
from tests.mta.held import held_back, history_until, holds_leases, queue_list
from tests.mta.policyd import ONE_SOURCE, isp_domains
from tests.support.receiver import Script
from tests.support.waiting import until


async def test_day_cap_holds_rest_stays_queued(start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory(schedules={"test": {"days": [5]}})
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE)
    for i in range(12):
        await mta.send("a@sender.example", [f"u{i}@gmail.example"], message())
    await mta.wait_event(lambda e: e["event"] == "delivered", n=5, timeout=60)
    # The MTA asked again and was refused: the rest waits for tomorrow, and the operator is told why
    # (the CLI runs beside this loop, which must keep serving).
    reason = "waiting for warm-up: today's volume is used (ip1 -> google)"

    async def rest_waits() -> list[str] | None:
        waiting = [m["waiting"] for m in await queue_list(mta)]
        return waiting if len(waiting) == 7 and all(reason in w for w in waiting) else None
    await until(rest_waits, f"7 messages waiting with {reason!r}")
    assert google.count() == 5
    events = mta.events()
    assert not [e for e in events if e["event"] in ("bounced", "expired", "deferred")]
    assert len([e for e in events if e["event"] == "delivered"]) == 5
    status = json.loads(policyd.cli("status", "--json"))
    [pair] = [p for p in status["pairs"] if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "google")]
    assert pair["used_today"] == 5 and pair["next_at"] > status["time"] + 60    # not before tomorrow


async def test_block_pauses_that_isp_others_keep_flowing(start_mta, world, dns_server, policyd_factory):
    blocked = Script(rcpt=lambda a, n: "550 5.7.1 [127.0.0.11] Our system has detected an unusual rate of "
                                       "unsolicited mail originating from your IP address. To protect our users "
                                       "from spam, mail sent from your IP address has been blocked.")
    google, yahoo = isp_domains(world, dns_server, google_script=blocked)
    policyd_factory_result = policyd_factory(rules={"block_cooldown": "1h"})
    mta = await start_mta(policy={"address": policyd_factory_result.address}, egress=ONE_SOURCE,
                          delivery={"max_connections": 1})
    await mta.send("a@sender.example", ["first@gmail.example"], message())
    await mta.wait_event(lambda e: e["event"] == "bounced" and e["recipient"] == "first@gmail.example")
    await history_until(policyd_factory_result, lambda a: a["rule"] == "block" and a["action"] == "pause")
    await until(lambda: not holds_leases(mta), "out of the leases granted before the block")
    for i in range(5):
        await mta.send("a@sender.example", [f"g{i}@gmail.example"], message())
        await mta.send("a@sender.example", [f"y{i}@yahoo.example"], message())
    await yahoo.await_for(5, timeout=60)
    held = {f"g{i}@gmail.example" for i in range(5)}
    await held_back(mta, google, held, "paused (rule block)")
    assert not held & google.tried()                # no more attempts to the blocked ISP
    assert google.tried() == {"first@gmail.example"}


async def test_throttle_slows_then_recovers(start_mta, world, dns_server, policyd_factory):
    throttling = {"on": True}

    def rcpt(address: str, n: int) -> str | None:
        if throttling["on"] and address.startswith("t"):
            throttling["on"] = False      # one throttle reply, then the ISP accepts again
            return ("421 4.7.28 [127.0.0.11] Our system has detected an unusual rate of unsolicited mail "
                    "originating from your IP address. To protect our users from spam, mail sent from your IP "
                    "address has been temporarily rate limited.")
        return None

    google, yahoo = isp_domains(world, dns_server, google_script=Script(rcpt=rcpt))
    policyd = policyd_factory(rules={"throttle_backoff": "3s", "throttle_backoff_max": "3s",
                                     "recovery_interval": "1s"})
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE,
                          delivery={"max_connections": 1}, queue={"retry_base": 1, "retry_max": 1})
    await mta.send("a@sender.example", ["t0@gmail.example"], message())
    throttled = (await mta.wait_event(lambda e: e["event"] == "deferred" and e["code"] == 421))[0]
    assert throttled["reason"] == "toomanyconn"
    throttled_at = datetime.fromisoformat(throttled["time"].replace("Z", "+00:00")).timestamp()
    for i in range(3):
        await mta.send("a@sender.example", [f"g{i}@gmail.example"], message())
        await mta.send("a@sender.example", [f"y{i}@yahoo.example"], message())
    await yahoo.await_for(3, timeout=10)
    got = await google.await_for(4, timeout=30)          # recovers without a human
    # Nothing reached the throttling ISP during its back-off (3 s; 0.5 s of slack for clocks).
    assert min(m.time for m in got) - throttled_at >= 2.5
    assert "throttle" in policyd.cli("history", "--json").lower()


async def test_policyd_down_keeps_accepting_and_resumes(start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory()
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE)
    await mta.send("a@sender.example", ["before@gmail.example"], message())
    await google.await_for(1)

    def connected() -> float | None:
        return mta.daemon.metrics.registry.get_sample_value("mta_policy_connected", {"address": policyd.address})

    assert connected() == 1
    policyd.kill()
    await until(lambda: connected() == 0, "policyd seen as gone")
    await until(lambda: not holds_leases(mta), "out of the leases granted before policyd went")
    for i in range(5):
        await mta.send("a@sender.example", [f"during{i}@gmail.example"], message())   # still 250
    # nothing sent to a limited site while policyd is away
    await held_back(mta, google, {f"during{i}@gmail.example" for i in range(5)},
                    f"policyd at {policyd.address} unreachable")
    assert google.count() == 1
    policyd.start()
    await google.await_for(6, timeout=60)
    assert connected() == 1
    assert not [e for e in mta.events() if e["event"] in ("bounced", "expired")]
