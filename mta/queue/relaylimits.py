"""Grants for mail that goes through an upstream relay (mta.delivery.relay).

An ESP warms up its own IPs, so by default (`warmup = false`) relayed mail stays out of policyd's
warm-up buckets: it is granted here from the relay's own limits (a relay-wide rate, connections
and messages per connection), and its outcomes are not reported to policyd, where they would be
counted against our source IPs at ISPs those IPs never talked to.

With `warmup = true` the relay's limits still cap what is asked, and the rest is asked of the
inner limiter (policyd, or the static limits) like any site: the site key is "relay:NAME" and the
relay's host names stand for its MX hosts, so an `[isps.NAME]` in policy.toml whose `mx` patterns
match them gives the relay a warm-up schedule of its own. The wire protocol does not change.

Logic with an injected clock; the only I/O is the inner limiter's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mta.delivery.relayconf import Relay
from mta.queue.limits import SiteLimits, StaticLimiter
from warmup_base.policy_protocol.model import GrantRequest, Lease, Limiter, Outcome

LEASE_SECONDS = 30.0


@dataclass
class RelayBucket:
    """A relay-wide token bucket: `rate_per_minute`, one minute's worth of burst (at least 1)."""

    rate_per_minute: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate_per_minute: float, now: float) -> RelayBucket:
        return cls(rate_per_minute, max(1.0, rate_per_minute), now)

    def take(self, wanted: int, now: float) -> int:
        capacity = max(1.0, self.rate_per_minute)
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * self.rate_per_minute / 60.0)
        self.stamp = now
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted

    def give_back(self, count: int) -> None:
        self.tokens = min(max(1.0, self.rate_per_minute), self.tokens + count)

    def next_token(self, now: float) -> float:
        missing = max(0.0, 1.0 - self.tokens)
        return now + missing * 60.0 / self.rate_per_minute


class RelayLimiter:
    """A `Limiter` in front of another: relay sites by the rules above, every other site as before."""

    def __init__(self, inner: Limiter, relays: Mapping[str, Relay], weights: Mapping[str, int],
                 clock: Callable[[], float]) -> None:
        self.inner = inner
        self.relays = dict(relays)          # site key ("relay:NAME") -> Relay
        self.clock = clock
        self._buckets: dict[str, RelayBucket] = {}
        self._static = StaticLimiter(limits_for=self._limits, weights=dict(weights), clock=clock,
                                     lease_seconds=LEASE_SECONDS)

    def __getattr__(self, name: str) -> Any:
        # The inner limiter's extras (the policy client's `subscribe` and `close`) stay visible.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _limits(self, site: str, _mx_hosts: tuple[str, ...]) -> SiteLimits:
        relay = self.relays[site]
        return SiteLimits(relay.max_connections, relay.messages_per_connection)   # the rate is relay-wide

    def _take(self, relay: Relay, wanted: int, now: float) -> int:
        if relay.rate_per_minute <= 0:
            return wanted
        bucket = self._buckets.get(relay.name)
        if bucket is None:
            bucket = self._buckets[relay.name] = RelayBucket.full(relay.rate_per_minute, now)
        return bucket.take(wanted, now)

    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        now = self.clock()
        out: list[Lease] = []
        passed: list[GrantRequest] = []
        origin: list[int] = []              # index in `requests` of each request passed on
        reserved: dict[int, int] = {}       # relay tokens taken for a request passed on
        for index, req in enumerate(requests):
            relay = self.relays.get(req.site)
            if relay is None:
                passed.append(req)
                origin.append(index)
                continue
            if req.wanted <= 0:
                continue
            allowed = self._take(relay, req.wanted, now)
            if allowed <= 0:
                out.append(self._refused(relay, req, index, now))
            elif relay.warmup:
                passed.append(replace(req, wanted=allowed))
                origin.append(index)
                reserved[index] = allowed
            else:
                out.extend(replace(lease, request=index)
                           for lease in self._static.grant([replace(req, wanted=allowed)]))
        if not passed:
            return out
        try:
            leases = await self.inner.request(passed)
        except BaseException:
            self._give_back(requests, reserved)
            raise
        for lease in leases:
            index = origin[lease.request] if 0 <= lease.request < len(origin) else -1
            relay = self.relays.get(requests[index].site) if index >= 0 else None
            if relay is not None:
                reserved[index] -= max(0, lease.count)
                lease = replace(lease, max_connections=min(lease.max_connections, relay.max_connections),
                                messages_per_connection=min(lease.messages_per_connection,
                                                            relay.messages_per_connection))
            out.append(replace(lease, request=index))
        self._give_back(requests, reserved)
        return out

    def _give_back(self, requests: Sequence[GrantRequest], reserved: Mapping[int, int]) -> None:
        """Relay tokens taken for what policyd did not grant go back to the relay's bucket."""
        for index, count in reserved.items():
            relay = self.relays[requests[index].site]
            bucket = self._buckets.get(relay.name)
            if bucket is not None and count > 0:
                bucket.give_back(count)

    def _refused(self, relay: Relay, req: GrantRequest, index: int, now: float) -> Lease:
        bucket = self._buckets[relay.name]
        return Lease(req.site, req.sources[0] if req.sources else "", 0, relay.max_connections,
                     relay.messages_per_connection, now + LEASE_SECONDS, req.stream, req.sending_domain,
                     req.tenant, retry_after=bucket.next_token(now), request=index,
                     why=f"relay {relay.name}: rate_per_minute ({relay.rate_per_minute:g}) reached")

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        kept = [o for o in outcomes if not self._private(o.site)]
        if kept:
            await self.inner.feedback(kept)

    def _private(self, site: str) -> bool:
        """Outcomes of a relay without warm-up are none of policyd's business."""
        relay = self.relays.get(site)
        return relay is not None and not relay.warmup
