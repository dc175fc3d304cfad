"""The MTA and a real policyd process together, with aiosmtpd receivers standing in for two ISPs
("google" and "yahoo", recognised by their MX host names)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime

from tests.mta.conftest import message
from tests.mta.policyd import ONE_SOURCE, isp_domains
from tests.mta.proc import REPO, mta_command
from tests.support.receiver import Script


async def test_day_cap_holds_rest_stays_queued(start_mta, world, dns_server, policyd_factory):
    google, _yahoo = isp_domains(world, dns_server)
    policyd = policyd_factory(schedules={"test": {"days": [5]}})
    mta = await start_mta(policy={"address": policyd.address}, egress=ONE_SOURCE)
    for i in range(12):
        await mta.send("a@sender.example", [f"u{i}@gmail.example"], message())
    await google.await_for(5)
    await asyncio.sleep(3)          # several lease rounds: no sixth message goes out
    assert google.count() == 5
    events = mta.events()
    assert not [e for e in events if e["event"] in ("bounced", "expired", "deferred")]
    assert len([e for e in events if e["event"] == "delivered"]) == 5
    status = json.loads(policyd.cli("status", "--json"))
    [pair] = [p for p in status["pairs"] if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "google")]
    assert pair["used_today"] == 5 and pair["next_at"] > status["time"] + 60    # not before tomorrow
    # The operator is told why the rest waits (the CLI runs beside this loop, which must keep serving).
    cli = await asyncio.create_subprocess_exec(*mta_command("queue", "list", "--json", "--config", mta.config_path),
                                               stdout=asyncio.subprocess.PIPE, cwd=REPO,
                                               env={**os.environ, "PYTHONPATH": REPO})
    out, _ = await cli.communicate()
    waiting = [m["waiting"] for m in json.loads(out)]
    assert len(waiting) == 7
    assert all("waiting for warm-up: today's volume is used (ip1 -> google)" in w for w in waiting), waiting


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
    await asyncio.sleep(1.5)        # feedback reaches policyd; the pair is paused
    attempts_before = sum(google.rcpt_seen.values())
    for i in range(5):
        await mta.send("a@sender.example", [f"g{i}@gmail.example"], message())
        await mta.send("a@sender.example", [f"y{i}@yahoo.example"], message())
    await yahoo.await_for(5)
    await asyncio.sleep(3)
    assert sum(google.rcpt_seen.values()) == attempts_before      # no more attempts to the blocked ISP
    history = policyd_factory_result.cli("history", "--json")
    assert "block" in history.lower() or "pause" in history.lower()


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
    await asyncio.sleep(2.5)        # leases (2 s) run out
    assert connected() == 0
    for i in range(5):
        await mta.send("a@sender.example", [f"during{i}@gmail.example"], message())   # still 250
    await asyncio.sleep(2)
    assert google.count() == 1      # nothing sent to a limited site while policyd is away
    policyd.start()
    await google.await_for(6, timeout=20)
    assert connected() == 1
    assert not [e for e in mta.events() if e["event"] in ("bounced", "expired")]
