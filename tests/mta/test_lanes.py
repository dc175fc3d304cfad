"""Lanes and grant requests: what the site asks policyd for, per lane, and what it does with the
leases it gets (a stub owner and limiter, no sockets: the site and the grant broker are tested as
they are, with the real event loop)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from mta.delivery.client import Source
from mta.model import Job, MessageInfo, Recipient
from mta.queue.grants import GrantBroker
from mta.queue.site import Site
from warmup_base.policy_protocol.model import GrantRequest, Lease

SOURCES = {"ip1": Source("ip1", "127.0.0.11", "mta1.test"), "ip2": Source("ip2", "127.0.0.12", "mta2.test")}


class Owner:
    """What a Site needs of the scheduler: pools, grants, connections and delivery (recorded)."""

    stopping = False
    idle_timeout = 0.05

    def __init__(self) -> None:
        self.broker: GrantBroker | None = None
        self.opened: list[str] = []
        self.delivered: list[tuple[str, str]] = []    # (queue id, source)

    def pool_source_names(self, pool: str) -> tuple[str, ...]:
        return ("ip1",)

    def want_grants(self, site: Site) -> None:
        assert self.broker is not None
        self.broker.want(site)

    async def open_connection(self, route: Any, source: Source) -> Any:
        self.opened.append(source.name)

        async def close() -> None:
            pass

        return SimpleNamespace(source=source, usable=True, close=close)

    async def deliver(self, site: Site, job: Job, conn: Any) -> None:
        self.delivered.append((job.message.queue_id, conn.source.name))

    def defer_site_jobs(self, site: Site, jobs: list[Job], failure: Any) -> None:
        raise AssertionError("no site-wide deferral expected")


class Limiter:
    """Records the requests; answers each with what `answer` says."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.asked: list[GrantRequest] = []

    async def request(self, requests):
        self.asked += requests
        now = time.time()
        return [lease for i, req in enumerate(requests) for lease in self.answer(i, req, now)]

    async def feedback(self, outcomes) -> None:
        pass


def job(n: int, sender: str = "News@Sender.example", campaign: str = "", rcpts: int = 1) -> Job:
    info = MessageInfo(n, f"q{n}", sender, 0.0, 10, "marketing", 5, "acme", "default", "sender.example", "",
                       campaign=campaign)
    return Job(info, "example.test", [Recipient(n * 100 + i, f"u{n}.{i}@example.test", "example.test")
                                      for i in range(rcpts)])


def setup(answer, weights=None, on_disk=0) -> tuple[Site, Owner, Limiter]:
    owner = Owner()
    limiter = Limiter(answer)
    owner.broker = GrantBroker(limiter, time.time, asyncio.get_running_loop().create_task, weights or {},
                               lambda _site: on_disk)
    site = Site("mx.example.test", SimpleNamespace(host_names=("mx.example.test",)), owner, SOURCES, time.time)
    return site, owner, limiter


def nothing(i: int, req: GrantRequest, now: float) -> list[Lease]:
    return [Lease(req.site, "ip1", 0, 1, 1, now, retry_after=now + 60, request=i)]


async def test_each_campaign_and_sender_asks_in_its_own_lane():
    site, _owner, limiter = setup(nothing, on_disk=7)
    site.enqueue(job(1, campaign="spring"))
    site.enqueue(job(2, campaign="spring", rcpts=3))
    site.enqueue(job(3, campaign="bad"))
    site.enqueue(job(4, sender="other@sender.example", campaign="spring"))
    site.pump()
    await asyncio.sleep(0.05)
    asked = {(r.mailbox, r.campaign): r for r in limiter.asked}
    assert set(asked) == {("news@sender.example", "spring"), ("news@sender.example", "bad"),
                          ("other@sender.example", "spring")}
    spring = asked["news@sender.example", "spring"]
    assert spring.wanted == 4                     # recipients, not jobs: leases are spent per recipient
    assert spring.backlog == 4 + 7                # the lane's recipients and the site's disk backlog
    assert spring.sources == ("ip1",) and spring.weights == ()     # all weights 1: policyd's apply
    assert asked["news@sender.example", "bad"].backlog == 1 + 7


async def test_egress_weights_go_with_the_request():
    site, _owner, limiter = setup(nothing, weights={"ip1": 3, "ip2": 1})
    site.enqueue(job(1))
    site.pump()
    await asyncio.sleep(0.05)
    assert [r.weights for r in limiter.asked] == [(3,)]


async def test_an_overflow_lease_opens_connections_from_a_source_outside_the_pool():
    def overflow(i: int, req: GrantRequest, now: float) -> list[Lease]:
        assert req.sources == ("ip1",)
        return [Lease(req.site, "ip1", 1, 1, 10, now + 30, request=i),
                Lease(req.site, "ip2", 3, 1, 10, now + 30, request=i)]      # "overflow": true on the wire

    site, owner, _limiter = setup(overflow)
    for n in range(4):
        site.enqueue(job(n))
    site.pump()
    for _ in range(100):
        if len(owner.delivered) == 4:
            break
        await asyncio.sleep(0.01)
    by_source = sorted(src for _qid, src in owner.delivered)
    assert by_source == ["ip1", "ip2", "ip2", "ip2"]
    assert set(owner.opened) == {"ip1", "ip2"}


async def test_a_lease_for_a_source_this_mta_lacks_is_not_counted_as_granted():
    def unknown(i: int, req: GrantRequest, now: float) -> list[Lease]:
        return [Lease(req.site, "elsewhere", 5, 1, 10, now + 30, request=i)]

    site, owner, limiter = setup(unknown)
    site.enqueue(job(1))
    site.pump()
    await asyncio.sleep(0.1)
    [lane] = site.lanes.values()
    assert lane.granted(time.time()) == 0 and len(limiter.asked) == 1    # no tight loop of asks
    assert lane.retry_after > time.time() + 1 and "elsewhere" in site.why_waiting(lane.jobs[0], time.time())
    assert owner.opened == []


async def test_empty_lanes_without_leases_are_dropped():
    site, _owner, _limiter = setup(nothing)
    site.enqueue(job(1, campaign="once"))
    site.pump()
    await asyncio.sleep(0.05)
    assert len(site.lanes) == 1
    assert site.prune_lanes(time.time()) == 0         # it still holds a job
    site.drain_all()
    assert site.prune_lanes(time.time()) == 1 and not site.lanes


async def test_the_disk_backlog_of_a_site_is_counted_as_mail_comes_and_goes(start_mta, world):
    from mta.spool.store import SpoolStore
    from tests.mta.conftest import message

    rx = world.domain("example.test")
    mta = await start_mta(queue={"domain_window": 2}, delivery={"rate_per_minute": 1})   # one now, one a minute
    for i in range(10):
        await mta.send("a@sender.example", [f"u{i}@example.test"], message())
    await rx.await_for(1)
    await asyncio.sleep(0.5)
    sched = mta.daemon.scheduler
    [site] = sched.sites
    store = SpoolStore(mta.spool_dir, readonly=True)
    try:
        waiting = store.db.execute("SELECT COUNT(*) FROM recipients WHERE state = 0").fetchone()[0]
    finally:
        store.close()
    assert 5 <= waiting <= 7                      # one delivered, two or three in memory (the domain window)
    assert sched.disk_backlog(site) == waiting
