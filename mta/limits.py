"""The small interface between the queue and whoever decides how much may be sent.

The delivery side asks for *leases* in batches (never per message) and reports *feedback* in
batches. Until the policy daemon is wired in, `StaticLimiter` answers from the MTA's own config;
the policy client implements the same `Limiter` protocol over the network.

Pure logic with an injected clock: no sockets, no asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """How many messages a site's lane would like to send now."""

    site: str                      # site key: the destination's MX host set
    mx_hosts: tuple[str, ...]      # MX host names, for ISP recognition
    pool: str                      # egress pool name
    sources: tuple[str, ...]       # source names of that pool (what a lease may use)
    stream: str                    # "transactional", "marketing", ...
    sending_domain: str            # domain of the envelope sender / From
    tenant: str
    wanted: int
    mailbox: str = ""              # envelope sender, for per-mailbox schedules ("" = not per mailbox)


@dataclass(frozen=True, slots=True)
class Lease:
    """Permission to send `count` messages to `site` from `source` until `valid_until`."""

    site: str
    source: str
    count: int
    max_connections: int
    messages_per_connection: int
    valid_until: float
    stream: str = ""
    sending_domain: str = ""
    tenant: str = ""
    retry_after: float = 0.0       # with count == 0: when asking again makes sense
    request: int = -1              # index of the GrantRequest (in its batch) this lease answers
    why: str = ""                  # with count == 0: what holds the mail back, for operators


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery outcome, as the policy needs it (aggregated by the limiter)."""

    site: str
    mx_hosts: tuple[str, ...]
    source: str
    sending_domain: str
    tenant: str
    stream: str
    outcome: str                  # delivered | deferred | bounced | throttled | blocked ...
    reason: str                   # bounce_parser reason name ("" if none)
    code: int
    status: str                   # enhanced status code, "" if none
    count: int = 1
    mailbox: str = ""


class Limiter(Protocol):
    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        """Leases for a batch of requests (possibly several per request, one per source)."""
        ...

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        """Reports outcomes; implementations aggregate and forward them."""
        ...


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Static shaping for one site and one source IP."""

    max_connections: int = 10            # per (site, source)
    messages_per_connection: int = 100
    rate_per_minute: float = 0.0         # per (site, source); 0 = unlimited
    burst: int = 0                       # bucket size; 0 = one minute's worth (at least 1)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class StaticLimiter:
    """Leases from fixed per-site limits: a token bucket per (site, source) when a rate is set.

    `limits_for(site_key, mx_hosts)` picks the SiteLimits that apply (pattern matching lives in
    the config layer). Source choice is smooth weighted round-robin, so a pool's addresses take
    turns in proportion to their weights.
    """

    limits_for: Callable[[str, tuple[str, ...]], SiteLimits]
    weights: dict[str, int]
    clock: Callable[[], float]
    lease_seconds: float = 30.0
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _rr_credit: dict[tuple[str, str], int] = field(default_factory=dict)

    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        return self.grant(requests)

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        """Static limits do not adapt; outcomes are only counted by metrics elsewhere."""

    def grant(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        leases: list[Lease] = []
        now = self.clock()
        for index, req in enumerate(requests):
            limits = self.limits_for(req.site, req.mx_hosts)
            remaining = req.wanted
            for source in self._rotation(req.site, req.sources):
                if remaining <= 0:
                    break
                allowed = self._take(req.site, source, limits, remaining, now)
                if allowed <= 0:
                    continue
                remaining -= allowed
                leases.append(Lease(req.site, source, allowed, limits.max_connections,
                                    limits.messages_per_connection, now + self.lease_seconds,
                                    req.stream, req.sending_domain, req.tenant, request=index))
            if remaining == req.wanted and req.sources:
                leases.append(Lease(req.site, req.sources[0], 0, limits.max_connections,
                                    limits.messages_per_connection, now + self.lease_seconds,
                                    req.stream, req.sending_domain, req.tenant,
                                    retry_after=self._refill_time(limits, now), request=index,
                                    why=f"static rate limit: {limits.rate_per_minute:g}/min per source"))
        return leases

    def _rotation(self, site: str, sources: tuple[str, ...]) -> list[str]:
        """Smooth weighted round-robin: the source with the most credit goes first."""
        if len(sources) <= 1:
            return list(sources)
        total = 0
        for s in sources:
            w = self.weights.get(s, 1)
            total += w
            self._rr_credit[(site, s)] = self._rr_credit.get((site, s), 0) + w
        order = sorted(sources, key=lambda s: -self._rr_credit[(site, s)])
        self._rr_credit[(site, order[0])] -= total
        return order

    def _take(self, site: str, source: str, limits: SiteLimits, wanted: int, now: float) -> int:
        if limits.rate_per_minute <= 0:
            return wanted
        capacity = limits.burst or max(1.0, limits.rate_per_minute)
        bucket = self._buckets.get((site, source))
        if bucket is None:
            bucket = self._buckets[(site, source)] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * limits.rate_per_minute / 60.0)
        bucket.stamp = now
        granted = min(wanted, int(bucket.tokens))
        bucket.tokens -= granted
        return granted

    @staticmethod
    def _refill_time(limits: SiteLimits, now: float) -> float:
        if limits.rate_per_minute <= 0:
            return now
        return now + 60.0 / limits.rate_per_minute
