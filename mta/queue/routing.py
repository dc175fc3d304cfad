"""Routing: from a job's destination domain to the Site that delivers it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mta.delivery.dnsroute import MxResolver, Route, RouteError
from mta.delivery.relay import Relay, Relays
from mta.model import Job
from mta.queue import outcomes as oc
from mta.queue.site import Site

if TYPE_CHECKING:
    from mta.queue.scheduler import DomainState, Scheduler


class Router:
    def __init__(self, owner: Scheduler, resolver: MxResolver, relays: Relays, sites: dict[str, Site]) -> None:
        self.owner = owner
        self.resolver = resolver
        self.relays = relays
        self.sites = sites
        self.sources = owner.sources
        self.clock = owner.clock
        self.metrics = owner.metrics
        self.retry = owner.retry
        self.rng = owner.rng

    def _route(self, job: Job) -> None:
        relay = self.relays.for_pool(job.message.pool)
        if relay is not None:
            self._route_to_relay(job, relay)
            return
        ds = self.owner._domain(job.domain)
        ds.pending.append(job)
        if not ds.routing:
            ds.routing = True
            self.owner.spawn(self._route_domain(ds))

    async def _route_domain(self, ds: DomainState) -> None:
        try:
            while ds.pending and not self.owner.stopping:
                try:
                    route = await self.resolver.resolve(ds.name)
                except RouteError as err:
                    jobs, ds.pending = ds.pending, []
                    self.metrics.dns_failures.labels("permanent" if err.permanent else "temporary").inc()
                    await self._route_failed(jobs, err)
                    continue
                jobs, ds.pending = ds.pending, []
                site = self._site_for(route)
                self.owner._routed(ds, site.key)
                now = self.clock()
                if site.in_backoff(now):
                    self.owner.defer_site_jobs(site, jobs, None)
                    continue
                for job in jobs:
                    site.enqueue(job)
                site.pump()
        finally:
            ds.routing = False

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
            await self.owner._finish_job(job, results, site="", source=None, mx="")

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
