"""Routing: from a job's destination domain to the Site that delivers it.

A pool with a relay sends all its mail to the relay's one site, with no lookup. Otherwise the
domain's MX hosts name the site (domains sharing an MX host set share a site, its connections and
its back-off); one lookup per domain runs at a time, and jobs arriving meanwhile wait for its
answer. A failed lookup bounces (permanent) or defers (temporary) the waiting jobs. The scheduler
owns the sites and the jobs' accounting; the router only decides where each job queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mta.delivery.dnsroute import MxResolver, Route, RouteError
from mta.delivery.relay import Relay, Relays
from mta.model import Job
from mta.queue import outcomes as oc
from mta.queue.site import Site

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler


class Router:
    """Decides the site for each job the scheduler hands over, and queues it there."""

    def __init__(self, owner: Scheduler, resolver: MxResolver, relays: Relays, sites: dict[str, Site]) -> None:
        self.owner = owner
        self.resolver = resolver
        self.relays = relays
        self.sites = sites                  # the scheduler's: it serves, stops and forgets them
        self.sources = owner.sources
        self.clock = owner.clock
        self.metrics = owner.metrics
        self.retry = owner.retry
        self.rng = owner.rng
        self._waiting: dict[str, list[Job]] = {}    # domain -> jobs waiting for its route
        self._looking_up: set[str] = set()          # domains whose lookup task runs

    def looking_up(self, domain: str) -> bool:
        return domain in self._looking_up

    def drain_waiting(self) -> list[Job]:
        """The jobs still waiting for a route (at stop: they go back to the queue)."""
        jobs = [job for waiting in self._waiting.values() for job in waiting]
        self._waiting.clear()
        return jobs

    def remove_messages(self, message_ids: set[int]) -> list[Job]:
        """Removes and returns the jobs of these messages still waiting for a route."""
        removed: list[Job] = []
        for domain, waiting in list(self._waiting.items()):
            keep = [job for job in waiting if job.message.id not in message_ids]
            if len(keep) != len(waiting):
                removed += [job for job in waiting if job.message.id in message_ids]
                self._waiting[domain] = keep
        return removed

    def route(self, job: Job) -> None:
        """Queues `job` at its site, now or once its domain's route is known."""
        relay = self.relays.for_pool(job.message.pool)
        if relay is not None:
            self._route_to_relay(job, relay)
            return
        self._waiting.setdefault(job.domain, []).append(job)
        if job.domain not in self._looking_up:
            self._looking_up.add(job.domain)
            self.owner.spawn(self._route_domain(job.domain))

    async def _route_domain(self, domain: str) -> None:
        try:
            while self._waiting.get(domain) and not self.owner.stopping:
                try:
                    route = await self.resolver.resolve(domain)
                except RouteError as err:
                    jobs = self._waiting.pop(domain, [])
                    self.metrics.dns_failures.labels("permanent" if err.permanent else "temporary").inc()
                    await self._route_failed(jobs, err)
                    continue
                jobs = self._waiting.pop(domain, [])
                site = self._site_for(route)
                self.owner.note_routed(domain, site.key)
                now = self.clock()
                if site.in_backoff(now):
                    self.owner.defer_site_jobs(site, jobs, None)
                    continue
                for job in jobs:
                    site.enqueue(job)
                site.pump()
        finally:
            self._looking_up.discard(domain)

    async def _route_failed(self, jobs: list[Job], err: RouteError) -> None:
        now = self.clock()
        text = f"{err.status} {err.text}"
        for job in jobs:
            results = [oc.RecipientOutcome(r, "bounced" if err.permanent else "deferred", 0, err.status, text,
                                           oc.Classification(err.reason, err.permanent and err.reason == "hostunknown",
                                                             "hard" if err.permanent else "soft"))
                       for r in job.recipients]
            if not err.permanent:
                expired = self.retry.expired(now, job.message.created)
                for o in results:
                    if expired:
                        o.event = "expired"
                    else:
                        o.next_attempt = self.retry.next_attempt(now, job.message.created, o.recipient.attempts + 1,
                                                                 self.rng)
            await self.owner.recorder.finish(job, results, site="", source=None, mx="")

    def _route_to_relay(self, job: Job, relay: Relay) -> None:
        site = self.sites.get(relay.site_key)
        if site is None:
            site = self.sites[relay.site_key] = Site(relay.site_key, Relays.route(relay), self.owner, self.sources,
                                                     self.clock)
        if site.in_backoff(self.clock()):
            self.owner.defer_site_jobs(site, [job], None)
            return
        site.enqueue(job)
        site.pump()

    def _site_for(self, route: Route) -> Site:
        site = self.sites.get(route.site_key)
        if site is None:
            site = self.sites[route.site_key] = Site(route.site_key, route, self.owner, self.sources, self.clock)
        else:
            site.route = route
        return site
