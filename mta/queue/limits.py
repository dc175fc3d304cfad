"""Static limits: the `Limiter` (warmup_base.policy_protocol.model) the queue asks when no policy
daemon is configured.

The delivery side asks for *leases* in batches (never per message) and reports *feedback* in
batches. Without `[policy] address`, `StaticLimiter` answers from the MTA's own config; the policy
client implements the same `Limiter` protocol over the network.

Pure logic with an injected clock: no sockets, no asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from warmup_base.policy_protocol.model import GrantRequest, Lease, Outcome


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
                                    retry_after=self._refill_time(limits, now), request=index))
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
