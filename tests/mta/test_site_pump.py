"""A site asks for leases again by itself after a refusal, even when no new job arrives to wake it.

Pure timing of `Site` against a stub owner (no sockets: what is tested is which timers a pump
arms, and the real loop runs them). The regression: a lane refused until time T got one timer
for T; when the loop fired it a hair before T on the wall clock, the pump found the lane not yet
due, armed nothing, and the site waited forever (delivery stopped after a policyd restart under
load, when the full domain window let no new job in to pump it).
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from mta.model import Job, MessageInfo, Recipient
from mta.queue.site import Site
from warmup_base.policy_protocol.model import Lease


class Owner:
    stopping = False

    def __init__(self) -> None:
        self.asked = 0

    def pool_source_names(self, pool: str) -> tuple[str, ...]:
        return ("ip1",)

    def want_grants(self, site: Site) -> None:
        self.asked += 1
        for lane, _wanted in site.grant_requests(site.clock()):
            lane.requesting = True


def job(n: int) -> Job:
    info = MessageInfo(n, f"q{n}", "a@sender.example", 0.0, 10, "marketing", 5, "", "default", "sender.example", "")
    return Job(info, "example.test", [Recipient(n, f"u{n}@example.test", "example.test")])


async def test_a_refused_lane_asks_again_even_if_its_timer_fires_early() -> None:
    lag = 0.03                                   # the wall clock trails the loop's timers by this much
    clock = lambda: time.time() - lag           # noqa: E731
    owner = Owner()
    site = Site("mx.example.test", SimpleNamespace(host_names=("mx.example.test",)), owner, {}, clock)
    site.enqueue(job(1))
    site.pump()
    assert owner.asked == 1
    [lane] = site.lanes.values()
    now = clock()
    site.add_leases(lane, [Lease(site.key, "ip1", 0, 0, 0, now, retry_after=now + 0.05)], now)
    await asyncio.sleep(0.5)
    assert owner.asked == 2                      # asked again, once, without any new job


async def test_the_earliest_wake_up_is_kept() -> None:
    owner = Owner()
    site = Site("mx.example.test", SimpleNamespace(host_names=("mx.example.test",)), owner, {}, time.time)
    site.enqueue(job(1))
    loop = asyncio.get_running_loop()
    site._schedule_pump(0.05)
    site._schedule_pump(30)                      # a later wish does not push the earlier one away
    assert site._pump_timer is not None and site._pump_timer.when() - loop.time() < 1
