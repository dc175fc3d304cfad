"""A modelled mailbox provider: its opinion of each source IP and the replies that follow from it.

Per source IP the ISP keeps a reputation (0..1) and remembers the busiest recent hour of mail
from it. Per clock hour it takes (reputation / steady_reputation) ** surge times that remembered
volume (at least `min_hourly`), so volume that grows steadily with a good reputation goes
through, a sudden jump is throttled, and a falling reputation shrinks what it takes below what
the IP sends today. Reputation grows with engaged mail and falls with hard bounces and
complaints, each weighed against the IP's usual hourly volume (a rate, not a count); below
`block_floor` every attempt is blocked, and a punished reputation slowly recovers while idle.
Many unknown users or complaints within an hour make the ISP defer the IP for the rest of that
hour, the way providers slow down list-bombing and spam runs at once.

Pure: the clock and a seeded random source are passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from policy.sim.replies import Reply, classify
from policy.sim.scenario import IspModelSettings

HOUR = 3600.0


@dataclass(slots=True)
class Standing:
    """What one ISP thinks of one source IP."""

    reputation: float
    remembered: float = 0.0      # busiest recent hour (messages), fading with volume_memory
    hour: int = -1               # clock hour the counters below belong to
    attempts: int = 0            # messages taken this hour (accepted or bounced)
    hard: int = 0                # unknown users this hour
    complained: int = 0          # complaints this hour
    deferring: bool = False      # deferring the IP for the rest of the hour (unknown users, complaints)
    stamp: float = 0.0           # when the reputation was last brought up to date
    delivered: int = 0           # since then:
    engagement: float = 0.0      # sum of the delivered recipients' engagement
    bounced: int = 0
    complaints: int = 0


@dataclass(frozen=True, slots=True)
class ReplySet:
    """One ISP's replies with one source's address filled in, classified once."""

    accept: Reply
    throttle: Reply
    block: Reply
    blocklist: Reply
    unknown_user: Reply


@dataclass(slots=True)
class SessionResult:
    """How one lease's messages fared at the ISP, in the order they were tried."""

    refusal: Reply | None = None     # the push-back that ended the session, if any
    delivered: list[int] = field(default_factory=list)
    bounced: list[int] = field(default_factory=list)        # unknown users refused at RCPT
    late_bounces: list[int] = field(default_factory=list)   # unknown users accepted, bounced later by DSN
    refused: list[int] = field(default_factory=list)        # answered with `refusal`
    untried: list[int] = field(default_factory=list)        # given back: the lease is revoked on push-back
    engagement: float = 0.0
    tried: int = 0           # batch[:tried] were taken (delivered or bounced), then refused, then untried


class ModelledIsp:
    def __init__(self, name: str, settings: IspModelSettings) -> None:
        self.name = name
        self.settings = settings
        self.standings: dict[str, Standing] = {}
        self.throttling_until = 0.0           # an incident: throttle everyone until then
        self._replies: dict[str, ReplySet] = {}
        self._decay_per_hour = 0.5 ** (HOUR / settings.volume_memory)

    # ---- who
    def standing(self, source: str, now: float, reputation: float = -1.0) -> Standing:
        st = self.standings.get(source)
        if st is None:
            start = reputation if reputation >= 0 else self.settings.initial_reputation
            st = self.standings[source] = Standing(start, hour=math.floor(now / HOUR), stamp=now)
        return st

    def replies(self, source: str, address: str) -> ReplySet:
        found = self._replies.get(source)
        if found is None:
            s, key = self.settings, f"isps.{self.name}"
            found = self._replies[source] = ReplySet(
                classify(s.accept_reply, f"{key}.accept_reply", address),
                classify(s.throttle_reply, f"{key}.throttle_reply", address),
                classify(s.block_reply, f"{key}.block_reply", address),
                classify(s.blocklist_reply, f"{key}.blocklist_reply", address),
                classify(s.unknown_user_reply, f"{key}.unknown_user_reply", address))
        return found

    # ---- what it answers
    def budget(self, st: Standing) -> int:
        """Messages an hour it takes from this IP now."""
        s = self.settings
        return int((st.reputation / s.steady_reputation) ** s.surge * max(float(s.min_hourly), st.remembered))

    def refusal(self, st: Standing, replies: ReplySet, now: float, blocklisted: bool) -> Reply | None:
        """The reply to every attempt of a session, or None while it takes mail (up to `room`)."""
        if now < self.throttling_until:
            return replies.throttle
        if blocklisted and self.settings.uses_blocklists:
            return replies.blocklist
        if st.reputation < self.settings.block_floor:
            return replies.block
        if st.deferring or self.room(st) <= 0:
            return replies.throttle
        return None

    def room(self, st: Standing) -> int:
        return self.budget(st) - st.attempts

    def receive(self, st: Standing, replies: ReplySet, batch: Sequence[int], connections: int,
                invalid: Sequence[int], engagement: Sequence[float], rng: random.Random, now: float,
                blocklisted: bool = False) -> SessionResult:
        """One lease's messages over `connections` connections. On push-back each open connection
        gets the refusal and closes; the MTA revokes the lease and keeps the rest queued."""
        result = SessionResult(refusal=self.refusal(st, replies, now, blocklisted))
        tried = 0
        if result.refusal is None:
            s = self.settings
            room = self.room(st)
            late_share = s.async_bounce_share
            for rid in batch[:room]:
                tried += 1
                st.attempts += 1
                if not invalid[rid]:
                    result.delivered.append(rid)
                    result.engagement += engagement[rid]
                    continue
                st.hard += 1
                if late_share and rng.random() < late_share:
                    result.late_bounces.append(rid)
                else:
                    result.bounced.append(rid)
                if s.bounce_throttle_min and st.hard >= s.bounce_throttle_min \
                        and st.hard > s.bounce_throttle * st.attempts:
                    st.deferring = True     # too many unknown users: defer the IP for the rest of the hour
                    break
            if tried < len(batch):
                result.refusal = replies.throttle
        result.tried = tried
        if result.refusal is not None:
            result.refused = list(batch[tried:tried + max(1, connections)])
            result.untried = list(batch[tried + len(result.refused):])
        st.delivered += len(result.delivered)
        st.engagement += result.engagement
        st.bounced += len(result.bounced) + len(result.late_bounces)
        return result

    # ---- what it sees later

    def complained(self, st: Standing, count: int = 1) -> None:
        st.complaints += count
        st.complained += count
        s = self.settings
        if s.complaint_throttle_min and st.complained >= s.complaint_throttle_min \
                and st.complained > s.complaint_throttle * max(1, st.attempts):
            st.deferring = True     # a spam run: defer the IP for the rest of the hour

    # ---- time
    def advance(self, now: float) -> None:
        """Brings every IP's reputation and hourly counters up to `now`."""
        for st in self.standings.values():
            self._roll_hours(st, now)
            self._update_reputation(st, now)

    def _roll_hours(self, st: Standing, now: float) -> None:
        hour = math.floor(now / HOUR)
        if hour <= st.hour:
            return
        idle_hours = hour - st.hour - 1
        st.remembered = max(st.remembered * self._decay_per_hour, float(st.attempts))
        st.remembered *= self._decay_per_hour ** idle_hours
        st.hour, st.attempts, st.hard, st.complained, st.deferring = hour, 0, 0, 0, False

    def _update_reputation(self, st: Standing, now: float) -> None:
        s = self.settings
        usual = max(float(s.min_hourly), st.remembered)
        r = st.reputation
        if st.delivered:
            earned = s.gain * (st.engagement / st.delivered - s.neutral_engagement) * st.delivered / usual
            r = 1.0 - (1.0 - r) * math.exp(-earned) if earned > 0 else r * math.exp(earned)
        penalty = (s.bounce_weight * st.bounced + s.complaint_weight * st.complaints) / usual
        if penalty:
            r *= math.exp(-penalty)
        hours = max(0.0, now - st.stamp) / HOUR
        if r < s.initial_reputation and hours:
            r += (s.initial_reputation - r) * (1.0 - math.exp(-s.drift * hours))
        st.reputation = min(1.0, max(0.0, r))
        st.stamp = now
        st.delivered = st.bounced = st.complaints = 0
        st.engagement = 0.0
