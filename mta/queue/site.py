"""A site: the destinations that share one MX host set, with their ready queues and connections.

Jobs wait in *lanes* (one per stream x pool x sending domain x tenant x sender mailbox x campaign,
because limits, leases and the policy's pauses apply per lane: a campaign or sender paused for its
bounces must not hold up the rest); lanes are served in priority order, and a lane left with no
jobs and no lease is dropped. Connections are per (site, source), for every egress source: a
connection worker takes the best job its source holds a lease for, sends it, and goes on until
its message budget or idle time is used up; a lease may name a source outside the lane's pool
(policyd's overflow pool), and its connections open all the same. New connections open while
jobs wait and no connection of an eligible source is idle, up to the lease's connection limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mta.delivery.client import ConnectFailure, Source, StaleConnection
from mta.delivery.dnsroute import Route
from mta.model import Job
from warmup_base.policy_protocol.model import Lease

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler

log = logging.getLogger("mta.site")

MAX_PARALLEL_CONNECTS = 4        # per (site, source): slow-start instead of a thundering herd
SITE_BACKOFF_BASE = 5.0
SITE_BACKOFF_CAP = 300.0
MAX_RESUMES = 3
RETRY_MARGIN = 0.01           # seconds added to a lane's retry time before pumping again
UNKNOWN_SOURCE_RETRY = 5.0    # seconds before asking again after leases for sources this MTA lacks
_UNKNOWN_SOURCES_SEEN: set[str] = set()


@dataclass(frozen=True, slots=True)
class LaneKey:
    stream: str
    pool: str
    sending_domain: str
    tenant: str
    mailbox: str = ""          # the envelope sender, lower-case ("" for the null sender)
    campaign: str = ""         # the campaign (tag) of the submission, "" if none


@dataclass(slots=True)
class LeaseState:
    remaining: int
    valid_until: float
    max_connections: int
    messages_per_connection: int


@dataclass(slots=True)
class Lane:
    key: LaneKey
    priority: int
    sources: tuple[str, ...]
    jobs: deque[Job] = field(default_factory=deque)
    leases: dict[str, LeaseState] = field(default_factory=dict)
    retry_after: float = 0.0
    requesting: bool = False
    waiting_for: str = ""          # why the last request got nothing (the limiter's words)
    recipients: int = 0            # recipients of the jobs waiting here (what leases are spent on)

    def usable_lease(self, source: str, now: float) -> LeaseState | None:
        lease = self.leases.get(source)
        if lease is None or lease.remaining <= 0 or lease.valid_until <= now:
            return None
        return lease

    def granted(self, now: float) -> int:
        return sum(lease.remaining for lease in self.leases.values() if lease.valid_until > now)


class Site:
    def __init__(self, key: str, route: Route, owner: Scheduler, sources: dict[str, Source],
                 clock: Callable[[], float]) -> None:
        self.key = key
        self.route = route
        self.owner = owner
        self.sources = sources
        self.clock = clock
        self.lanes: dict[LaneKey, Lane] = {}
        self._queued_by_message: dict[int, Job] = {}   # jobs waiting in a lane, by message id
        self._lane_order: list[Lane] = []
        self.open_conns: dict[str, int] = {}
        self.connecting: dict[str, int] = {}
        self.idle: dict[str, list[asyncio.Future[None]]] = {}
        self.backoff_until = 0.0
        self.connect_failures = 0
        self.source_hold: dict[str, float] = {}   # no new connections from this source until then
        self.source_cap: dict[str, int] = {}      # lowered connection limit after refusals
        self.workers: set[asyncio.Task[None]] = set()
        self.last_active = clock()
        self._pump_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ queueing
    @property
    def queued(self) -> int:
        return sum(len(lane.jobs) for lane in self._lane_order)

    @property
    def connections(self) -> int:
        return sum(self.open_conns.values())

    def enqueue(self, job: Job, front: bool = False) -> None:
        msg = job.message
        key = self._lane_key(job)
        lane = self.lanes.get(key)
        if lane is None:
            lane = Lane(key, msg.priority, self.owner.pool_source_names(msg.pool))
            self.lanes[key] = lane
            self._lane_order.append(lane)
            self._lane_order.sort(key=lambda ln: ln.priority)
        job.site = self.key
        host = self._queued_by_message.get(msg.id)
        lane.recipients += len(job.recipients)
        if host is not None and host is not job:
            # Same message, another domain on this site: one transaction for all its recipients.
            host.recipients.extend(job.recipients)
            host.merged.append(job)
            return
        self._queued_by_message[msg.id] = job
        if front:
            lane.jobs.appendleft(job)
        else:
            lane.jobs.append(job)
        self.last_active = self.clock()

    def drain_all(self) -> list[Job]:
        """Removes and returns every queued job (for a site-wide deferral or shutdown)."""
        jobs: list[Job] = []
        for lane in self._lane_order:
            jobs.extend(lane.jobs)
            lane.jobs.clear()
            lane.recipients = 0
        self._queued_by_message.clear()
        return jobs

    def in_backoff(self, now: float) -> bool:
        return now < self.backoff_until

    # ------------------------------------------------------------------ leases
    def grant_requests(self, now: float) -> list[tuple[Lane, int]]:
        """Lanes that need more leases, with how many messages each would like."""
        out = []
        for lane in self._lane_order:
            if not lane.jobs or lane.requesting or now < lane.retry_after:
                continue
            shortfall = lane.recipients - lane.granted(now)
            if shortfall > 0:
                out.append((lane, shortfall))
        return out

    def add_leases(self, lane: Lane, leases: list[Lease], now: float) -> None:
        lane.requesting = False
        retry_after = 0.0
        for lease in leases:
            if lease.count > 0 and lease.source not in self.sources:
                self._unknown_source(lease.source)
                retry_after = max(retry_after, now + UNKNOWN_SOURCE_RETRY)
                lane.waiting_for = f"granted source {lease.source!r}, which this MTA does not have"
                continue
            if lease.count <= 0:
                retry_after = max(retry_after, lease.retry_after or now + 1.0)
                lane.waiting_for = lease.why or "no grant"
                continue
            lane.waiting_for = ""
            current = lane.usable_lease(lease.source, now)
            if current is not None:
                current.remaining += lease.count
                current.valid_until = max(current.valid_until, lease.valid_until)
                current.max_connections = lease.max_connections
                current.messages_per_connection = lease.messages_per_connection
            else:
                lane.leases[lease.source] = LeaseState(lease.count, lease.valid_until, lease.max_connections,
                                                       lease.messages_per_connection)
        if retry_after and not any(lane.usable_lease(s, now) for s in lane.leases):
            lane.retry_after = retry_after
            self._schedule_pump(retry_after - now + RETRY_MARGIN)

    def _unknown_source(self, name: str) -> None:
        """A lease for a source this MTA does not have (policyd's pools name another): unusable, so
        not counted as granted; said once per name."""
        if name not in _UNKNOWN_SOURCES_SEEN:
            _UNKNOWN_SOURCES_SEEN.add(name)
            log.warning("site %s: policyd granted source %r, which is not one of [[egress.sources]]; "
                        "leases for it are ignored (check the pools in policy.toml)", self.key, name)

    def remove_messages(self, message_ids: set[int]) -> list[Job]:
        """Removes and returns the queued jobs of these messages (an operator held them)."""
        removed: list[Job] = []
        for lane in self._lane_order:
            if not any(job.message.id in message_ids for job in lane.jobs):
                continue
            keep: deque[Job] = deque()
            for job in lane.jobs:
                if job.message.id in message_ids:
                    removed.append(job)
                    lane.recipients -= len(job.recipients)
                    self._queued_by_message.pop(job.message.id, None)
                else:
                    keep.append(job)
            lane.jobs = keep
        return removed

    def prune_lanes(self, now: float) -> int:
        """Drops lanes with no jobs, no lease left and no request in flight (campaigns and senders
        come and go); returns how many."""
        keep = [lane for lane in self._lane_order if lane.jobs or lane.requesting or lane.granted(now) > 0]
        dropped = len(self._lane_order) - len(keep)
        if dropped:
            self._lane_order = keep
            self.lanes = {lane.key: lane for lane in keep}
        return dropped

    def _lane_key(self, job: Job) -> LaneKey:
        msg = job.message
        return LaneKey(msg.stream, msg.pool, msg.sending_domain, msg.tenant, msg.sender.lower(), msg.campaign)

    def queued_jobs(self) -> list[Job]:
        return list(self._queued_by_message.values())

    def why_waiting(self, job: Job, now: float) -> str:
        """What a job queued here waits for, in words for an operator."""
        lane = self.lanes.get(self._lane_key(job))
        if lane is None or any(lane.usable_lease(source, now) for source in lane.leases):
            return "granted: next in line for a connection"
        if lane.requesting:
            return "asking the policy daemon for a grant"
        when = time.strftime("%H:%M:%S", time.localtime(lane.retry_after)) if lane.retry_after > now else "now"
        return f"{lane.waiting_for or 'waiting for a grant'}; next request at {when}"

    def revoke(self, source: str) -> None:
        """The MX pushed back on `source` (throttle or block): stop spending its leases here and
        ask the policy again, which by then has the feedback that caused this."""
        for lane in self._lane_order:
            lane.leases.pop(source, None)
            lane.retry_after = 0.0

    def retry_now(self) -> None:
        """Lanes waiting to ask for leases again may ask at the next pump."""
        for lane in self._lane_order:
            lane.retry_after = 0.0

    def _schedule_pump(self, delay: float) -> None:
        """Pumps again after `delay` seconds, unless a pump is due sooner anyway (each pump arms
        the timers it still needs, so the earliest one is all that must be kept)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.01, min(delay, 60.0))
        if self._pump_timer is not None:
            if self._pump_timer.when() <= when:
                return
            self._pump_timer.cancel()
        self._pump_timer = loop.call_at(when, self.pump)

    def _wake_for_retries(self, now: float) -> None:
        """Lanes told to ask again later need a timer of their own: with a full domain window no
        new job arrives to pump the site, so without it a lane that was refused (say, while policyd
        was away) would never ask again. The margin absorbs the loop's and the wall clock's skew."""
        waits = [lane.retry_after for lane in self._lane_order
                 if lane.jobs and not lane.requesting and lane.retry_after > now]
        if waits:
            self._schedule_pump(min(waits) - now + RETRY_MARGIN)

    # ------------------------------------------------------------------ dispatch
    def pump(self) -> None:
        """Wakes idle connections, asks for leases, opens connections where jobs wait."""
        if self._pump_timer is not None:     # this pump arms again whatever it still needs
            self._pump_timer.cancel()
            self._pump_timer = None
        now = self.clock()
        if self.queued == 0:
            return
        if self.in_backoff(now):
            self.owner.defer_site_jobs(self, self.drain_all(), None)
            return
        if self.grant_requests(now):
            self.owner.want_grants(self)
        self._wake_for_retries(now)
        for source in self.sources:
            eligible = self._eligible(source, now)
            if eligible <= 0:
                continue
            waiters = self.idle.get(source)
            while waiters and eligible > 0:
                fut = waiters.pop()
                if not fut.done():
                    fut.set_result(None)
                    eligible -= 1
            if self.source_hold.get(source, 0.0) > now:
                self._schedule_pump(self.source_hold[source] - now)
                continue
            limit = self._connection_limit(source, now)
            if source in self.source_cap:
                limit = min(limit, self.source_cap[source])
            busy = self.open_conns.get(source, 0)
            while eligible > 0 and busy < limit and self.connecting.get(source, 0) < MAX_PARALLEL_CONNECTS:
                self._start_worker(source)
                busy += 1
                # One new connection per few waiting jobs: a connection carries many messages.
                eligible -= max(1, math.ceil(self._per_connection(source, now) / 4))

    def _eligible(self, source: str, now: float) -> int:
        total = 0
        for lane in self._lane_order:
            if lane.jobs:
                lease = lane.usable_lease(source, now)
                if lease is not None:
                    total += min(len(lane.jobs), lease.remaining)
        return total

    def _connection_limit(self, source: str, now: float) -> int:
        limits = [lane.leases[source].max_connections for lane in self._lane_order
                  if lane.jobs and lane.usable_lease(source, now)]
        return min(limits) if limits else 0

    def _per_connection(self, source: str, now: float) -> int:
        values = [lane.leases[source].messages_per_connection for lane in self._lane_order
                  if source in lane.leases and lane.leases[source].valid_until > now]
        return min(values) if values else 1

    def take(self, source: str) -> Job | None:
        now = self.clock()
        for lane in self._lane_order:
            if not lane.jobs:
                continue
            lease = lane.usable_lease(source, now)
            if lease is None:
                continue
            job = lane.jobs.popleft()
            if self._queued_by_message.get(job.message.id) is job:
                del self._queued_by_message[job.message.id]
            lease.remaining -= len(job.recipients)
            lane.recipients -= len(job.recipients)
            self.last_active = now
            return job
        return None

    async def wait_for_job(self, source: str, timeout: float) -> Job | None:
        job = self.take(source)
        if job is not None:
            return job
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle.setdefault(source, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self.idle.get(source)
            if waiters and fut in waiters:
                waiters.remove(fut)
        return self.take(source)

    # ------------------------------------------------------------------ connections
    def _start_worker(self, source: str) -> None:
        self.open_conns[source] = self.open_conns.get(source, 0) + 1
        self.connecting[source] = self.connecting.get(source, 0) + 1
        task = asyncio.get_running_loop().create_task(self._worker(source))
        self.workers.add(task)
        task.add_done_callback(self.workers.discard)

    async def _worker(self, source_name: str) -> None:
        source = self.sources[source_name]
        owner = self.owner
        try:
            try:
                conn = await owner.open_connection(self.route, source)
            except ConnectFailure as failure:
                self.connecting[source_name] -= 1
                self._connect_failed(source_name, failure)
                return
            self.connecting[source_name] -= 1
            self.connect_failures = 0
            try:
                budget = self._per_connection(source_name, self.clock())
                sent = 0
                while sent < budget and conn.usable and not owner.stopping:
                    job = await self.wait_for_job(source_name, owner.idle_timeout)
                    if job is None:
                        break
                    try:
                        await owner.deliver(self, job, conn)
                    except StaleConnection:
                        self._resume(job)
                        break
                    sent += 1
            finally:
                await conn.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery worker for %s via %s failed", self.key, source_name)
        finally:
            self.open_conns[source_name] -= 1
            if not owner.stopping:
                self.pump()

    def _resume(self, job: Job) -> None:
        job.resumes += 1
        if job.resumes > MAX_RESUMES:
            self.owner.defer_site_jobs(self, [job], ConnectFailure("connection closed before any reply"))
        else:
            self.enqueue(job, front=True)

    def _connect_failed(self, source: str, failure: ConnectFailure) -> None:
        self.owner.metrics.connection_failures.labels(source).inc()
        log.info("site %s via %s: %s", self.key, source, failure.text)
        if self.connections > 1:
            # Other connections work: the MX probably limits concurrency. Keep the jobs for the
            # working connections and open fewer from now on.
            self.source_cap[source] = max(1, self.open_conns.get(source, 1) - 1)
            self.source_hold[source] = self.clock() + 1.0
            return
        self.connect_failures += 1
        delay = min(SITE_BACKOFF_CAP, SITE_BACKOFF_BASE * 2 ** (self.connect_failures - 1))
        self.backoff_until = self.clock() + delay
        self.owner.defer_site_jobs(self, self.drain_all(), failure)

    def idle_for(self, now: float) -> float:
        if self.queued or self.workers:
            return 0.0
        return now - self.last_active

    def cancel_idle(self) -> None:
        """Idle connections stop waiting for work (shutdown)."""
        for waiters in self.idle.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def cancel(self) -> None:
        for task in list(self.workers):
            task.cancel()
        for waiters in self.idle.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
