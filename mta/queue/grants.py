"""Talks to the limiter (static limits or the policy daemon) in batches: lease requests of all
sites that want more in one loop iteration go out together, and outcomes are buffered and sent
as one feedback batch, so there is never a round trip per message.

A request says what policyd needs to judge a lane: its sender mailbox and campaign (so a paused
sender or campaign gets nothing while the rest flows), its backlog (the lane's recipients in
memory plus what its site still has waiting on disk, so an overflow pool takes what the pool's
own sources cannot send today) and the egress weights of its sources."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from warmup_base.policy_protocol.model import GrantRequest, Lease, Limiter, Outcome

if TYPE_CHECKING:
    from mta.queue.site import Lane, Site

log = logging.getLogger("mta.grants")


class GrantBroker:
    def __init__(self, limiter: Limiter, clock: Callable[[], float], spawn: Callable[[Any], Any],
                 weights: Mapping[str, int] | None = None,
                 disk_backlog: Callable[[str], int] = lambda _site: 0) -> None:
        self.limiter = limiter
        self.clock = clock
        self.spawn = spawn
        self.weights = dict(weights or {})     # egress source name -> [[egress.sources]] weight
        self.disk_backlog = disk_backlog       # site key -> recipients waiting on disk (an estimate)
        self._sites: set[Site] = set()
        self._scheduled = False
        self._feedback: list[Outcome] = []

    # ------------------------------------------------------------------ leases
    def want(self, site: Site) -> None:
        """`site` has lanes short of leases: ask for them with the others of this iteration."""
        self._sites.add(site)
        if not self._scheduled:
            self._scheduled = True
            self.spawn(self._request())

    async def _request(self) -> None:
        await asyncio.sleep(0)   # let this loop iteration's sites join the batch
        self._scheduled = False
        sites, self._sites = self._sites, set()
        now = self.clock()
        asked: list[tuple[Site, Lane, GrantRequest]] = []
        for site in sites:
            on_disk = -1
            for lane, wanted in site.grant_requests(now):
                lane.requesting = True
                if on_disk < 0:
                    on_disk = max(0, self.disk_backlog(site.key))
                k = lane.key
                asked.append((site, lane, GrantRequest(
                    site.key, site.route.host_names, k.pool, lane.sources, k.stream, k.sending_domain, k.tenant,
                    wanted, mailbox=k.mailbox, campaign=k.campaign, backlog=lane.recipients + on_disk,
                    weights=self._weights(lane.sources))))
        if not asked:
            return
        try:
            leases = await self.limiter.request([a[2] for a in asked])
        except Exception as exc:
            log.warning("grant request failed: %s", exc)
            leases = []
        by_request: dict[int, list[Lease]] = {}
        for lease in leases:
            by_request.setdefault(lease.request, []).append(lease)
        now = self.clock()
        for index, (site, lane, req) in enumerate(asked):
            got = by_request.get(index, [])
            if not got:
                got = [Lease(req.site, req.sources[0] if req.sources else "", 0, 0, 0, now, retry_after=now + 1.0)]
            site.add_leases(lane, got, now)
        for site in sites:
            site.pump()

    def _weights(self, sources: tuple[str, ...]) -> tuple[int, ...]:
        """The sources' egress weights; none (policyd's [[sources]] weights apply) while they are
        all the default 1, so weights set only in policy.toml are not overridden by defaults."""
        weights = tuple(self.weights.get(s, 1) for s in sources)
        return weights if any(w != 1 for w in weights) else ()

    # ------------------------------------------------------------------ feedback
    def report(self, outcome: Outcome) -> None:
        self._feedback.append(outcome)

    async def flush(self) -> None:
        if not self._feedback:
            return
        batch, self._feedback = self._feedback, []
        try:
            await self.limiter.feedback(batch)
        except Exception as exc:
            log.warning("policy feedback failed (%d outcomes dropped): %s", len(batch), exc)

    async def close(self) -> None:
        """Sends what is pending; a policy client then flushes its own buffer."""
        await self.flush()
        close = getattr(self.limiter, "close", None)
        if close is not None:
            await close()
