"""The scheduler: from an accepted message (or a due row on disk) to a job in a site's queue, and
from a delivery attempt's replies back to the spool.

Memory stays bounded however large the backlog: per recipient domain at most `domain_window`
jobs live in memory; the rest waits on disk and is claimed in batches (highest priority, oldest
due first) as room frees up. Fresh mail for a domain with room goes straight to memory, marked
CLAIMED in the same insert, so the hot path never reads back what it just wrote. Which site a job
queues at (its relay, or its domain's MX hosts) is the router's decision (`mta.queue.routing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections.abc import Callable
from typing import Any

from mta.config import Config
from mta.delivery.client import ClientSettings, ConnectFailure, Connection, Source, connect
from mta.delivery.dnsroute import MxResolver, Route
from mta.delivery.relay import Relays, failure_reporter
from mta.delivery.replypeek import ReplyPeek
from mta.events import Event, EventLog, iso_time
from mta.inbound.verp import encode as verp_encode
from mta.metrics import Metrics
from mta.model import Job, MessageInfo, NewMessage, Recipient
from mta.queue import outcomes as oc
from mta.queue.bodycache import BodyCache
from mta.queue.grants import GrantBroker
from mta.queue.recorder import OutcomeRecorder
from mta.queue.relaylimits import RelayLimiter
from mta.queue.routing import Router
from mta.queue.site import Site
from mta.queue.suppressed import SuppressionGate
from mta.spool import Spool, SpoolStore
from mta.spool.diskspace import is_storage_error
from mta.spool.journal import DeliveryJournal
from mta.spool.store import CancelledMessage, EngagementRanking
from mta.spool.suppression import prune as prune_suppressions
from warmup_base.policy_protocol.model import Limiter, Outcome
from warmup_base.retry import RetryPolicy

log = logging.getLogger("mta.queue")

SITE_IDLE_GC = 300.0


class DomainState:
    __slots__ = ("claiming", "due", "in_memory", "name", "on_disk", "site")

    def __init__(self, name: str) -> None:
        self.name = name
        self.in_memory = 0          # jobs of this domain in memory (being routed, queued, in flight)
        self.due: float | None = None   # earliest next attempt among its rows waiting on disk
        self.claiming = False
        # Recipients waiting on disk, counted as they come and go (exact at start-up and whenever
        # the domain's disk queue empties; an operator's hold or delete may leave it high until
        # then): the backlog a grant request reports to policyd, for its overflow pool.
        self.on_disk = 0
        self.site = ""              # the site its mail was last routed to


class Scheduler:
    def __init__(self, cfg: Config, spool: Spool, resolver: MxResolver, limiter: Limiter, events: EventLog,
                 metrics: Metrics, clock: Callable[[], float], verp_key: bytes,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.spool = spool
        # Pools with a [relays.NAME] deliver through it: one site per relay, no MX lookup.
        self.relays = Relays.from_config(cfg.relays, {name: p.relay for name, p in cfg.egress.pools.items()},
                                         failure_reporter(lambda *labels: metrics.relay_failures.labels(*labels).inc()),
                                         clock)
        if self.relays:
            limiter = RelayLimiter(limiter, self.relays.by_site, {s.name: s.weight for s in cfg.egress.sources}, clock)
        self.limiter = limiter
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.verp_key = verp_key
        self.rng = rng or random.Random()
        q = cfg.queue
        self.retry = RetryPolicy(q.retry_base, q.retry_factor, q.retry_max, q.retry_jitter, q.max_age)
        self.window = q.domain_window
        self.memory_jobs = q.memory_jobs        # in-memory jobs over all domains
        self.total_in_memory = 0
        self._starved: set[str] = set()         # due domains skipped while memory was full
        self.idle_timeout = cfg.delivery.idle_timeout
        self.client_settings = ClientSettings(cfg.delivery.port, cfg.delivery.connect_timeout,
                                              cfg.delivery.command_timeout, cfg.delivery.starttls)
        self.sources = {s.name: Source(s.name, s.address, s.ehlo) for s in cfg.egress.sources}
        self._site_disk: dict[str, int] = {}    # site key -> recipients of its routed domains on disk
        self.bounce_domains = cfg.bounce_domains()
        self.bodies = BodyCache(q.body_cache)
        self.domains: dict[str, DomainState] = {}
        self.sites: dict[str, Site] = {}
        self.router = Router(self, resolver, self.relays, self.sites)
        self._due: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set by the daemon when engagement is tracked: how claims order marketing recipients.
        self.engagement_ranking: Callable[[float], EngagementRanking | None] | None = None
        self.grants = GrantBroker(limiter, clock, self.spawn, {s.name: s.weight for s in cfg.egress.sources},
                                  self.disk_backlog)
        subscribe = getattr(limiter, "subscribe", None)       # the policy client tells when policyd comes and goes
        if subscribe is not None:
            self._policy_connected = metrics.policy_connected.labels(cfg.policy.address)
            self._policy_connected.set(0)
            subscribe(self._policy_state_changed)
        self.recorder = OutcomeRecorder(self)
        self.journal = DeliveryJournal(cfg.mta.spool_dir)
        # Hears replies to sent messages between steps of other work (the submission listener
        # calls its poll_now with each reply it sends): see mta.delivery.replypeek.
        self.reply_peek = ReplyPeek()
        self.cancelled: set[int] = set()       # message ids deleted by an operator while in memory
        self.gate = SuppressionGate(spool, events, metrics, clock)
        self.suppressed = self.gate.filter     # where new entries are noted (bounces, unsubscribes, 5xx)
        self.stopping = False
        self.in_flight = 0

    # ------------------------------------------------------------------ start / stop
    async def start(self) -> None:
        notes = self.journal.recorded()
        delivered, in_doubt, noted = sorted(notes.delivered), sorted(notes.in_doubt), set(notes.last)
        # persist: on a full disk, recovery waits until there is room
        report = await self.spool.call(lambda s: s.recover(delivered, in_doubt, noted), persist=True)
        self.journal.open()
        if report.journaled:
            log.info("%d recipients delivered just before the last stop were recorded from the delivery journal",
                     report.journaled)
        await self.gate.sync()
        for backlog in report.domains:
            ds = self._domain(backlog.domain)
            ds.due = backlog.next_due
            self.note_on_disk(backlog.domain, backlog.waiting)
            heapq.heappush(self._due, (backlog.next_due, backlog.domain))
        now = self.clock()
        for gone in report.cancelled:
            log.info("message %s was cancelled while an attempt ran: its %d recipients left are removed",
                     gone.queue_id, len(gone.cancelled))
            for address in gone.cancelled:
                self.events.emit(Event("cancelled", gone.queue_id, address, gone.sender, now, tenant=gone.tenant,
                                       reason="cancelled", text="cancelled through the API"))
        if report.possible_duplicates:
            self.metrics.possible_duplicates.inc(report.possible_duplicates)
            log.warning("recovered %d recipients whose delivery was in progress at the last stop: "
                        "they may be delivered twice", report.possible_duplicates)
        log.info("queue recovered: %d recipients re-queued, %d domains with backlog",
                 report.recovered_recipients, len(report.domains))
        self.spawn(self._scan_loop())
        self.spawn(self._housekeeping_loop())

    async def stop(self, grace: float = 20.0) -> None:
        """Graceful drain: no new claims, in-flight transactions finish, queued jobs go back."""
        self.stopping = True
        self._wake.set()
        workers = [t for site in self.sites.values() for t in site.workers]
        for site in self.sites.values():
            site.cancel_idle()
        if workers:
            await asyncio.wait(workers, timeout=grace)
        for site in self.sites.values():
            site.cancel()
        leftover: list[int] = []
        for site in self.sites.values():
            for job in site.drain_all():
                leftover.extend(r.id for r in job.recipients)
        for job in self.router.drain_waiting():
            leftover.extend(r.id for r in job.recipients)
        if leftover:
            try:
                await self.spool.call(lambda s: s.release(leftover))
            except Exception as exc:     # e.g. a full disk: the next start's recovery releases them
                log.warning("could not give %d recipients back to the queue (%s): the next start will", len(leftover),
                            exc)
        await self.grants.close()      # feedback still pending goes to the policy daemon
        for task in list(self._tasks):
            task.cancel()
        self.reply_peek.close()
        self.journal.close()
        self.events.flush()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ acceptance
    async def accept(self, msg: NewMessage, also: Callable[[SpoolStore], Any] | None = None) -> MessageInfo:
        """Writes a message durably (with `also` in the same transaction) and queues it."""
        now = self.clock()
        by_domain: dict[str, int] = {}
        for address in msg.recipients:
            d = address.rpartition("@")[2].lower()
            by_domain[d] = by_domain.get(d, 0) + 1
        claimed = set()
        scheduled = msg.not_before > now
        if not self.stopping and not scheduled:
            for d in by_domain:
                ds = self._domain(d)
                if ds.in_memory < self.window and self.total_in_memory < self.memory_jobs:
                    claimed.add(d)
                    ds.in_memory += 1
                    self.total_in_memory += 1
        msg.claimed_domains = claimed

        def write(store: SpoolStore) -> tuple[int, list[Recipient]]:
            result = store.insert(msg, now)
            if also is not None:
                also(store)
            return result

        try:
            mid, rcpts = await self.spool.call(write)
        except BaseException:
            for d in claimed:
                self.domains[d].in_memory -= 1
                self.total_in_memory -= 1
            raise
        info = MessageInfo(mid, msg.queue_id, msg.sender, msg.created, len(msg.body), msg.stream, msg.priority,
                           msg.tenant, msg.pool, msg.sending_domain, msg.header_message_id, msg.smtputf8,
                           campaign=msg.campaign, variant=msg.variant)
        groups: dict[str, list[Recipient]] = {}
        for r in rcpts:
            groups.setdefault(r.domain, []).append(r)
            self.events.emit(Event("accepted", msg.queue_id, r.address, msg.sender, now, msg.created,
                                   stream=msg.stream, tenant=msg.tenant, sending_domain=msg.sending_domain,
                                   message_id=msg.header_message_id, campaign=msg.campaign,
                                   variant=msg.variant))
            if scheduled:
                self.events.emit(Event("scheduled", msg.queue_id, r.address, msg.sender, now, msg.created,
                                       stream=msg.stream, tenant=msg.tenant, sending_domain=msg.sending_domain,
                                       message_id=msg.header_message_id, campaign=msg.campaign,
                                       variant=msg.variant, text=f"not before {iso_time(msg.not_before)}"))
        if claimed:
            self.bodies.put(mid, msg.body, refs=len(claimed), as_is=msg.body_as_is)
        for d, group in groups.items():
            if d in claimed:
                self.router.route(self._job(info, d, group))
            else:
                self.note_on_disk(d, len(group))
                self.mark_due(d, max(now, msg.not_before))
        return info

    async def cancel(self, queue_id: str, tenant: str | None) -> CancelledMessage | None:
        """Cancels what of a message has not left yet (see SpoolStore.cancel_message); jobs of it
        already in memory are dropped when their turn comes (`deliver`)."""
        result = await self.spool.call(lambda s: s.cancel_message(queue_id, tenant))
        if result is None:
            return None
        self.cancelled.add(result.id)
        now = self.clock()
        for address in result.cancelled:
            self.events.emit(Event("cancelled", result.queue_id, address, result.sender, now, tenant=result.tenant,
                                   reason="cancelled", text="cancelled through the API"))
        return result

    def _job(self, info: MessageInfo, domain: str, rcpts: list[Recipient]) -> Job:
        self._seq += 1
        return Job(info, domain, rcpts, seq=self._seq)

    def _domain(self, name: str) -> DomainState:
        ds = self.domains.get(name)
        if ds is None:
            ds = self.domains[name] = DomainState(name)
        return ds

    def note_on_disk(self, domain: str, change: int) -> None:
        """`change` recipients of `domain` went to (or, negative, left) the disk queue."""
        ds = self._domain(domain)
        before = ds.on_disk
        ds.on_disk = max(0, before + change)
        if ds.site:
            self._site_disk[ds.site] = self._site_disk.get(ds.site, 0) + ds.on_disk - before

    def disk_backlog(self, site: str) -> int:
        """Recipients waiting on disk for the domains last routed to `site`."""
        return self._site_disk.get(site, 0)

    def note_routed(self, domain: str, site: str) -> None:
        """`domain` was routed to `site`: its disk backlog now counts for that site."""
        ds = self._domain(domain)
        if ds.site != site:
            if ds.site:
                self._site_disk[ds.site] = self._site_disk.get(ds.site, 0) - ds.on_disk
            self._site_disk[site] = self._site_disk.get(site, 0) + ds.on_disk
            ds.site = site

    def mark_due(self, domain: str, when: float) -> None:
        ds = self._domain(domain)
        if ds.due is None or when < ds.due:
            ds.due = when
            heapq.heappush(self._due, (when, domain))
            self._wake.set()

    def release(self, job: Job) -> None:
        """The job (and any job folded into it) left memory: done, deferred to disk, or failed."""
        for part in (job, *job.merged):
            self._release_one(part)

    def _release_one(self, job: Job) -> None:
        ds = self.domains.get(job.domain)
        self.bodies.release(job.message.id)
        if ds is None:
            return
        ds.in_memory -= 1
        self.total_in_memory -= 1
        if ds.due is not None and ds.in_memory <= self.window // 2 and not ds.claiming:
            heapq.heappush(self._due, (ds.due, ds.name))
            self._wake.set()
        if self._starved and self.total_in_memory <= self.memory_jobs * 3 // 4:
            for name in self._starved:
                starved = self.domains.get(name)
                if starved is not None and starved.due is not None:
                    heapq.heappush(self._due, (starved.due, name))
            self._starved.clear()
            self._wake.set()

    # ------------------------------------------------------------------ disk backlog
    async def _scan_loop(self) -> None:
        while not self.stopping:
            now = self.clock()
            while self._due and self._due[0][0] <= now:
                due, name = heapq.heappop(self._due)
                ds = self.domains.get(name)
                if ds is None or ds.due is None or ds.due != due or ds.claiming:
                    continue
                if ds.in_memory >= self.window:
                    continue   # release() pushes it again when room frees up
                if self.total_in_memory >= self.memory_jobs:
                    self._starved.add(name)
                    continue
                self.spawn(self._claim(ds))
            timeout = min(1.0, self._due[0][0] - now) if self._due else 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, timeout))

    async def _claim(self, ds: DomainState) -> None:
        ds.claiming = True
        ds.due = None
        now = self.clock()
        room = max(0, min(self.window - ds.in_memory, self.memory_jobs - self.total_in_memory))
        name = ds.name
        # Reserve the room now: other claims run while this one waits for the spool.
        ds.in_memory += room
        self.total_in_memory += room
        try:
            ranking = self.engagement_ranking(now) if self.engagement_ranking is not None else None
            rows, next_due = await self.spool.call(lambda s: (s.claim(name, now, room, ranking), s.next_due(name)))
        except Exception as exc:
            if is_storage_error(exc):    # a full disk: the disk guard has said so once
                log.debug("claiming due recipients of %s failed: %s", name, exc)
            else:
                log.exception("claiming due recipients of %s failed", name)
            rows, next_due = [], now + 5.0
        finally:
            ds.claiming = False
        # A time marked while the claim ran (a flush, new mail) lost its heap entry (the scan skips
        # claiming domains): mark it again with the disk's next due time, or the domain is stuck.
        marked_meanwhile, ds.due = ds.due, None
        self.note_on_disk(name, -len(rows) if next_due is not None else -ds.on_disk)
        if next_due is not None:
            self.mark_due(name, next_due)
        if marked_meanwhile is not None:
            self.mark_due(name, marked_meanwhile)
        jobs: dict[int, Job] = {}
        for info, rcpt in rows:
            job = jobs.get(info.id)
            if job is None:
                job = jobs[info.id] = self._job(info, name, [])
            job.recipients.append(rcpt)
        unused = room - len(jobs)
        ds.in_memory -= unused
        self.total_in_memory -= unused
        for job in jobs.values():
            self.bodies.add_ref(job.message.id)
            if self.retry.expired(now, job.message.created):
                await self._finish_job(job, oc.expired_outcomes(job.recipients), site="", source=None, mx="")
            else:
                self.router.route(job)

    # ------------------------------------------------------------------ grants
    def want_grants(self, site: Site) -> None:
        self.grants.want(site)

    def why_waiting(self, queue_ids: list[str]) -> dict[str, str]:
        """For messages in memory: what each waits for (a grant, and the policy's reason), by queue id."""
        now = self.clock()
        wanted = {q.upper() for q in queue_ids}
        out = {}
        for site in self.sites.values():
            for job in site.queued_jobs():
                qid = job.message.queue_id
                if qid in wanted and qid not in out:
                    out[qid] = f"{site.key}: {site.why_waiting(job, now)}"
        return out

    def _policy_state_changed(self, available: bool) -> None:
        self._policy_connected.set(1 if available else 0)
        if available and not self.stopping:
            for site in self.sites.values():     # lanes refused during the outage ask again now
                site.retry_now()
                site.pump()

    # ------------------------------------------------------------------ delivery
    async def open_connection(self, route: Route, source: Source) -> Connection:
        self.metrics.connections_opened.labels(source.name).inc()
        relay = self.relays.for_site(route.site_key)
        if relay is not None:
            return await self.relays.connect(relay, source, self.client_settings)
        return await connect(route, source, self.client_settings, self.rng)

    def pool_source_names(self, pool: str) -> tuple[str, ...]:
        return tuple(self.cfg.egress.pools[pool].sources) if pool in self.cfg.egress.pools else tuple(self.sources)

    def return_path(self, job: Job) -> str:
        sender = job.message.sender
        if not sender:
            return ""
        rcpt = job.recipients[0].address if len(job.recipients) == 1 else None
        return verp_encode(self.verp_key, job.message.queue_id, rcpt,
                           self.bounce_domains.for_sender(job.message.sending_domain))

    async def deliver(self, site: Site, job: Job, conn: Connection) -> None:
        """One transaction for `job` over `conn`; the outcome goes to the spool and the events."""
        msg = job.message
        if msg.id in self.cancelled:
            await self._drop_cancelled(job)
            return
        now = self.clock()
        if self.retry.expired(now, msg.created):
            await self._finish_job(job, oc.expired_outcomes(job.recipients), site=site.key,
                                   source=conn.source, mx="")
            return
        if await self.gate.drop_suppressed(job) == 0:
            self.release(job)
            return
        ids = [r.id for r in job.recipients]
        self.spool.post(lambda s: s.mark_attempting(ids))       # for `queue stats`: active now
        # The durable note that DATA may go (awaited before DATA: see mta.spool.journal).
        job.journal_token, marked = self.journal.attempting(ids)
        body = await self.load_body(job)
        if body is None:   # deleted by an operator meanwhile
            self.journal.settle(*job.take_attempt())
            self.release(job)
            return
        self.in_flight += 1
        try:
            results = await conn.send(job, body, self.return_path(job), before_data=marked,
                                      on_delivered=lambda took: self._journal_delivered(job, took),
                                      peek=self.reply_peek, body_as_is=self.bodies.as_is(msg.id))
        except BaseException:
            self.journal.settle(*job.take_attempt())     # no reply: DATA was never sent
            raise
        finally:
            self.in_flight -= 1
        plan = oc.plan(msg, results, self.clock(), self.retry, self.rng)
        await self._finish_job(job, plan.outcomes, site=site.key, source=conn.source,
                               mx=f"{conn.mx_name}[{conn.address}]")

    def _journal_delivered(self, job: Job, took: list[Recipient]) -> None:
        # From the connection's read callback: the note is written at once (safe from a crash of
        # this process) instead of waiting for the sending task to wake and record the outcome
        # (a crash in between sends the message twice). Not synced: see mta.spool.journal.
        self.journal.delivered_now(r.id for r in took)
        job.journaled_delivered = True

    async def _drop_cancelled(self, job: Job) -> None:
        """A job of a cancelled message: rows still on disk (an attempt was running when it was
        cancelled, then deferred) are removed now, with their event."""
        msg = job.message
        ids = [r.id for r in job.recipients]    # merged jobs' recipients are folded into the host
        try:
            gone = set(await self.spool.call(lambda s: s.cancel_rows(ids)))
        except Exception as exc:   # e.g. a full disk: the rows stay, the next start sends them
            log.warning("could not remove the recipients of cancelled message %s: %s", msg.queue_id, exc)
            gone = set()
        now = self.clock()
        for r in job.recipients:
            if r.id in gone:
                self.events.emit(Event("cancelled", msg.queue_id, r.address, msg.sender, now, msg.created,
                                       stream=msg.stream, tenant=msg.tenant, sending_domain=msg.sending_domain,
                                       message_id=msg.header_message_id, campaign=msg.campaign,
                                       variant=msg.variant, reason="cancelled", text="cancelled through the API"))
        self.release(job)

    async def load_body(self, job: Job) -> bytes | None:
        body = self.bodies.get(job.message.id)
        if body is None:
            mid = job.message.id
            body = await self.spool.read(lambda s: s.body(mid))
            if body is not None:
                self.bodies.fill(mid, body)
        return body

    def defer_site_jobs(self, site: Site, jobs: list[Job], failure: ConnectFailure | None) -> None:
        """Site-wide deferral (no MX reachable, or the site is backing off): no reply was had."""
        if not jobs:
            return
        now = self.clock()
        text = failure.text if failure else f"delivery to {site.key} temporarily suspended"
        code = failure.code if failure else 0
        status = failure.status if failure else "4.4.1"
        cls = oc.classify(code, status, text)
        for job in jobs:
            results = []
            expired = self.retry.expired(now, job.message.created)
            for r in job.recipients:
                o = oc.RecipientOutcome(r, "expired" if expired else "deferred", code, status, text, cls)
                if not expired:
                    o.next_attempt = self.retry.next_attempt(now, job.message.created, r.attempts + 1, self.rng,
                                                             site.backoff_until)
                results.append(o)
            self.spawn(self._finish_job(job, results, site=site.key, source=None, mx=""))

    # ------------------------------------------------------------------ outcomes
    async def _finish_job(self, job: Job, outcomes: list[oc.RecipientOutcome], *, site: str,
                          source: Source | None, mx: str) -> None:
        await self.recorder.finish(job, outcomes, site=site, source=source, mx=mx)

    def add_feedback(self, outcome: Outcome) -> None:
        """Feedback from elsewhere (asynchronous bounces, complaints) for the policy daemon."""
        self.grants.report(outcome)

    # ------------------------------------------------------------------ housekeeping
    async def _housekeeping_loop(self) -> None:
        tick = 0
        while not self.stopping:
            await asyncio.sleep(1.0)
            tick += 1
            self.events.flush()
            await self.grants.flush()
            now = self.clock()
            if tick % 2 == 0:   # suppressions added by the CLI or the inbound listener
                await self.gate.sync()
            if tick % 3600 == 0:
                self._prune(now)
            for key in [k for k, s in self.sites.items() if s.idle_for(now) > SITE_IDLE_GC]:
                del self.sites[key]
            for site in self.sites.values():
                site.prune_lanes(now)
            if len(self.domains) > 10000:
                for name in [n for n, d in self.domains.items() if d.in_memory == 0 and d.due is None
                             and not self.router.looking_up(n) and not d.claiming]:
                    self.note_on_disk(name, -self.domains[name].on_disk)
                    del self.domains[name]

    def _prune(self, now: float) -> None:
        """Forgets deliveries too old to be bounced and suppressions that expired."""
        keep_after = now - self.cfg.suppression.delivery_log_days * 86400
        self.spool.post(lambda s: (s.prune_deliveries(keep_after), prune_suppressions(s.db, now)))

    # ------------------------------------------------------------------ operator actions
    async def flush(self) -> int:
        """Everything waiting is due now (postqueue -f)."""
        now = self.clock()
        n = await self.spool.call(lambda s: s.retry_all(now))
        for site in self.sites.values():
            site.backoff_until = 0.0
        for name in list(self.domains):
            self.mark_due(name, now)
        for backlog in await self.spool.read(lambda s: s.domain_backlog()):
            self.mark_due(backlog.domain, now)
        return n

    def stats(self) -> dict[str, Any]:
        return {
            "in_memory_jobs": self.total_in_memory,
            "sites": len(self.sites),
            "connections": sum(s.connections for s in self.sites.values()),
            "in_flight": self.in_flight,
        }
