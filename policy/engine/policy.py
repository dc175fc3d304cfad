"""The policy core: from settings, pair states and the clock to bucket plans, grants and actions.

`Policy` holds no state of its own besides what it derives from settings; everything that
changes lives in PairState, Health and bucket states that the caller (the service, the
simulator, a test) loads and stores. Every method takes `now` explicitly.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from policy.engine import culprits, rules, why
from policy.engine.bucket import UNLIMITED, BucketSpec, BucketState, TakePlan, TakeResult, seconds_until_one
from policy.engine.culprits import Assessment
from policy.engine.health import AUTH, OTHER_PART, Counts, Health, classify, part_id
from policy.engine.isp import OTHER, IspCatalog
from policy.engine.model import Action
from policy.engine.schedule import Calendar, Schedule
from policy.engine.settings import PolicySettings, PoolSettings
from policy.engine.state import (
    ANY_ISP,
    CAMPAIGN,
    DOMAIN,
    FOREVER,
    IP,
    ISP,
    MAILBOX,
    SENDER,
    TENANT,
    PairKey,
    PairState,
)
from policy.engine.windows import HealthWindows
from warmup_base.policy_protocol.model import Grant, GrantRequest, Outcome

TENANT_QUOTA = "tenant"    # tenant quotas are buckets only ("tenant|name|*"), with no warm-up state


@dataclass
class GrantPlan:
    """What a grant ask needs from the store: a take, or a refusal until `retry_at`."""

    take: TakePlan | None
    retry_at: float = math.inf     # earliest time an excluded source or a refusal ends
    why: str = ""                  # with no take: the refusal in words (engine/why.py)
    shared_stop: bool = False      # refused for a pause of the domain, mailbox, culprit or ISP
    own_sources: int = 0           # warm-up sources of the pool (for a domain's volume)


@dataclass
class Observations:
    """Feedback sorted by pair: per pair, counts by health class with an example reply, and the
    same counts split by would-be culprit (tenant, domain, campaign, sender; see health.part_id)."""

    by_pair: dict[PairKey, rules.Observed] = field(default_factory=dict)
    parts: dict[PairKey, dict[str, dict[str, int]]] = field(default_factory=dict)
    ignored: int = 0

    def add(self, key: PairKey, cls: str, count: int, reply: str, part: str = "") -> None:
        seen = self.by_pair.setdefault(key, {})
        before, example = seen.get(cls, (0, ""))
        seen[cls] = (before + count, example or reply)
        if part:
            by_cls = self.parts.setdefault(key, {}).setdefault(part, {})
            by_cls[cls] = by_cls.get(cls, 0) + count


class Policy:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.rules = settings.rules
        self.windows = HealthWindows(settings.rules)
        self.calendar = Calendar(settings.warmup)
        self.catalog = IspCatalog(settings.isps)
        self.schedules = {name: Schedule.from_settings(name, s) for name, s in settings.schedules.items()}
        self._sources = {s.name: s for s in settings.sources}
        self._domains = {d.name.lower(): d for d in settings.domains}
        self._mailbox_cache: dict[str, int] = {}
        self._schedule_cache: dict[PairKey, Schedule | None] = {}

    # ---- who is who
    def isp_of(self, mx_hosts: Iterable[str]) -> str:
        return self.catalog.recognise(tuple(mx_hosts))

    def mailbox_rule(self, mailbox: str) -> int:
        """Index of the first [[mailboxes]] rule matching `mailbox`, -1 if none does."""
        found = self._mailbox_cache.get(mailbox)
        if found is None:
            found = next((i for i, r in enumerate(self.settings.mailboxes)
                          if fnmatch.fnmatchcase(mailbox, r.match.lower())), -1)
            if len(self._mailbox_cache) > 100000:
                self._mailbox_cache.clear()
            self._mailbox_cache[mailbox] = found
        return found

    def schedule_for(self, key: PairKey) -> Schedule | None:
        """The warm-up schedule of a pair, None when no warm-up bucket applies to it."""
        if key not in self._schedule_cache:
            if len(self._schedule_cache) > 100000:    # many mailboxes: keep the memo bounded
                self._schedule_cache.clear()
            self._schedule_cache[key] = self._find_schedule(key)
        return self._schedule_cache[key]

    def _find_schedule(self, key: PairKey) -> Schedule | None:
        w = self.settings.warmup
        if key.kind == MAILBOX:
            rule = self.mailbox_rule(key.name)
            return self.schedules[self.settings.mailboxes[rule].schedule] if rule >= 0 else None
        if key.isp == ANY_ISP or key.kind not in (IP, DOMAIN):
            return None
        isp = self.catalog.settings(key.isp)
        if not isp.warmup:
            return None
        if key.kind == IP:
            src = self._sources.get(key.name)
            name = (src.schedule if src else "") or isp.ip_schedule or w.ip_schedule
        else:
            dom = self._domains.get(key.name)
            name = (dom.schedule if dom else "") or isp.domain_schedule or w.domain_schedule
        return self.schedules.get(name) if name else None

    def initial_state(self, key: PairKey, now: float) -> PairState:
        start = 0
        if key.kind == IP and key.name in self._sources:
            start = self._sources[key.name].start_day
        elif key.kind == DOMAIN and key.name in self._domains:
            start = self._domains[key.name].start_day
        elif key.kind == MAILBOX and self.mailbox_rule(key.name) >= 0:
            start = self.settings.mailboxes[self.mailbox_rule(key.name)].start_day
        return PairState(day=start, day_checked=self.calendar.day_index(now))

    def configured_pairs(self) -> list[PairKey]:
        """The pairs an operator expects to see before any mail was sent."""
        isps = [n for n in self.catalog.names if self.catalog.settings(n).warmup]
        pairs = [PairKey(IP, s.name, isp) for s in self.settings.sources for isp in isps]
        pairs += [PairKey(DOMAIN, d.name.lower(), isp) for d in self.settings.domains for isp in isps]
        return [p for p in pairs if self.schedule_for(p) is not None]

    # ---- pools and sources
    def pool(self, name: str) -> PoolSettings | None:
        return self.settings.pools.get(name)

    def overflow_sources(self, ask: GrantRequest) -> tuple[str, ...]:
        """Sources of the ask's overflow pool (those not in the ask's own pool)."""
        pool = self.pool(ask.pool)
        if pool is None or not pool.overflow or pool.overflow not in self.settings.pools:
            return ()
        own = set(ask.sources)
        return tuple(s for s in self.settings.pools[pool.overflow].sources if s not in own)

    def weight(self, ask: GrantRequest, source: str) -> int:
        """A source's weight: the MTA's (the ask's `weights`), else policyd's [[sources]] weight."""
        if ask.weights and len(ask.weights) == len(ask.sources) and source in ask.sources:
            return max(1, ask.weights[ask.sources.index(source)])
        src = self._sources.get(source)
        return max(1, src.weight) if src else 1

    # ---- grants
    def pair_keys(self, ask: GrantRequest, isp: str) -> list[PairKey]:
        """Every pair whose state the grant depends on: the ISP, each source (and overflow source),
        the domain, the mailbox, and the culprit pauses of tenant, campaign and sender."""
        keys = [PairKey(ISP, isp)]
        for src in dict.fromkeys((*ask.sources, *self.overflow_sources(ask))):
            keys += [PairKey(IP, src, isp), PairKey(IP, src)]
        if ask.sending_domain:
            domain = ask.sending_domain.lower()
            keys += [PairKey(DOMAIN, domain, isp), PairKey(DOMAIN, domain)]
        if ask.mailbox:
            mailbox = ask.mailbox.lower()
            if self.mailbox_rule(mailbox) >= 0:
                keys.append(PairKey(MAILBOX, mailbox))
            keys.append(PairKey(SENDER, mailbox, isp))
        if ask.tenant:
            keys.append(PairKey(TENANT, ask.tenant, isp))
        if ask.campaign:
            keys.append(PairKey(CAMPAIGN, ask.campaign, isp))
        return keys

    def daily_volume(self, key: PairKey, state: PairState, now: float, scale: int = 1) -> float | None:
        """Today's volume of a pair: its schedule's volume at its day (a domain's times `scale`).
        Throttles slow the rate (the factor), not the day's volume: what they hold back is made
        up later in the day (see `bucket_spec`)."""
        schedule = self.schedule_for(key)
        if schedule is None:
            return None
        return float(schedule.volume(state.day) * max(1, scale))

    def bucket_spec(self, key: PairKey, state: PairState, now: float, used: float | None = None,
                    scale: int = 1) -> BucketSpec | None:
        """The bucket of a pair now: the day's volume spread over the window, the rate catching up
        with what is left of the day (`[warmup] catch_up`, when `used` today is known), times the
        throttle factor; the burst is a stretch of the even rate times the factor."""
        volume = self.daily_volume(key, state, now, scale)
        if volume is None:
            return None
        even = self.calendar.rate(volume)
        rate = even
        catch_up = self.settings.warmup.catch_up
        if used is not None and catch_up > 1 and rate > 0:
            left = self.calendar.window_left(now)
            if left > 0:
                rate = max(rate, min(catch_up * rate, (volume - used) / left))
        factor = state.effective_factor(now, self.rules)
        return BucketSpec(str(key), rate * factor, self.calendar.burst_of_rate(even * factor), volume)

    def next_send(self, state: PairState, spec: BucketSpec, bucket: BucketState, now: float) -> float:
        """When a pair may take its next message: after its pause or back-off, when its bucket
        holds a whole token again, or in tomorrow's sending window once today's volume is used."""
        start = max(now, state.blocked_until(now))
        wait = seconds_until_one(bucket, spec) if start == now else 0.0
        if math.isinf(wait):
            tomorrow = self.calendar.day_begins(self.calendar.day_index(now) + 1)
            return self.calendar.next_window_start(tomorrow)
        at = start + wait
        return at if self.calendar.in_window(at) else self.calendar.next_window_start(at)

    def tenant_spec(self, tenant: str) -> BucketSpec | None:
        quota = self.settings.tenants.get(tenant)
        if quota is None or quota.daily_quota <= 0:
            return None
        return BucketSpec(f"{TENANT_QUOTA}|{tenant}|{ANY_ISP}", UNLIMITED, 0.0, float(quota.daily_quota))

    def _domain_scale(self, sources: Iterable[str], isp: str) -> int:
        if self.settings.warmup.domain_volume != "sources":
            return 1
        return max(1, sum(1 for src in dict.fromkeys(sources) if self.schedule_for(PairKey(IP, src, isp))))

    def _source_specs(self, sources: Iterable[str], isp: str, states: Mapping[PairKey, PairState],
                      used: Mapping[str, float], now: float
                      ) -> tuple[list[tuple[str, tuple[BucketSpec, ...]]], float, str]:
        """Per usable source its bucket (none for a source without warm-up), when the first
        excluded (paused, backing off) source may send again, and that exclusion in words."""
        excluded_until = math.inf
        excluded_why = ""
        per_source: list[tuple[str, tuple[BucketSpec, ...]]] = []
        for src in dict.fromkeys(sources):
            pair = PairKey(IP, src, isp)
            until = max(states[pair].blocked_until(now), states[pair.umbrella].blocked_until(now))
            if until > now:
                if until < excluded_until:
                    held = pair if states[pair].blocked_until(now) >= until else pair.umbrella
                    excluded_until, excluded_why = until, why.held_back(held, states[held], now)
                continue
            spec = self.bucket_spec(pair, states[pair], now, used.get(str(pair), 0.0))
            per_source.append((src, (spec,) if spec else ()))
        return per_source, excluded_until, excluded_why

    def _shared_specs(self, ask: GrantRequest, isp: str, states: Mapping[PairKey, PairState],
                      used: Mapping[str, float], now: float, scale: int) -> tuple[BucketSpec, ...]:
        shared: list[BucketSpec | None] = []
        if ask.sending_domain:
            key = PairKey(DOMAIN, ask.sending_domain.lower(), isp)
            shared.append(self.bucket_spec(key, states[key], now, used.get(str(key), 0.0), scale))
        if ask.mailbox and self.mailbox_rule(ask.mailbox.lower()) >= 0:
            key = PairKey(MAILBOX, ask.mailbox.lower())
            shared.append(self.bucket_spec(key, states[key], now, used.get(str(key), 0.0)))
        shared.append(self.tenant_spec(ask.tenant))
        return tuple(s for s in shared if s is not None)

    def plan(self, ask: GrantRequest, isp: str, states: Mapping[PairKey, PairState], now: float,
             used: Mapping[str, float] | None = None) -> GrantPlan:
        """Which buckets a grant must pass, or why none may be granted now. `used` is what each
        bucket (by key) has granted today, for the catch-up of its rate (none: no catch-up)."""
        used = used if used is not None else {}
        wanted = min(ask.wanted, self.settings.leases.max_messages)
        own = self._domain_scale(ask.sources, isp)
        shared_keys = [k for k in self.pair_keys(ask, isp) if k.kind != IP]
        stop = max((states[k].blocked_until(now) for k in shared_keys), default=now)
        if stop > now:
            culprit = max(shared_keys, key=lambda k: states[k].blocked_until(now))
            return GrantPlan(None, stop, why.held_back(culprit, states[culprit], now), shared_stop=True,
                             own_sources=own)
        per_source, excluded_until, excluded_why = self._source_specs(ask.sources, isp, states, used, now)
        if not per_source:
            return GrantPlan(None, excluded_until, excluded_why, own_sources=own)
        shared_specs = self._shared_specs(ask, isp, states, used, now, own)
        rated = any(s.rate >= 0 for s in shared_specs) or any(specs for _src, specs in per_source)
        if rated and not self.calendar.in_window(now):
            opens = self.calendar.next_window_start(now)
            return GrantPlan(None, opens, why.outside_window(opens, now), shared_stop=True, own_sources=own)
        take = TakePlan(shared_specs, tuple(per_source), wanted, self.calendar.day_index(now))
        return GrantPlan(take, excluded_until, own_sources=own)

    def overflow_plan(self, ask: GrantRequest, isp: str, states: Mapping[PairKey, PairState], plan: GrantPlan,
                      result: TakeResult | None, now: float, used: Mapping[str, float] | None = None
                      ) -> TakePlan | None:
        """What the overflow pool takes of an ask after the pool's own sources had their turn.

        It takes the backlog beyond what the own sources can still send today (their daily caps
        minus what they used, as far as their rates reach before the window ends), and all the
        ask wants when the own sources are paused, backing off or out of volume for longer than
        the pool's `overflow_after`. A pause of the domain, mailbox or a culprit applies to the
        overflow too: it bypasses caps, not verdicts."""
        sources = self.overflow_sources(ask)
        pool = self.pool(ask.pool)
        if not sources or pool is None or plan.shared_stop:
            return None
        used = used if used is not None else {}
        granted = result.total if result is not None else 0
        left = min(ask.wanted, self.settings.leases.max_messages) - granted
        if left <= 0:
            return None
        if result is not None and result.grants:
            wait = 0.0
        elif result is not None:
            wait = result.wait
        else:
            wait = plan.retry_at - now
        take = 0
        if wait >= pool.overflow_after:
            take = left
        elif ask.backlog > 0:
            take = min(left, max(0, ask.backlog - granted - int(self._room_today(plan, used, now))))
        if take <= 0:
            return None
        per_source, _until, _why = self._source_specs(sources, isp, states, used, now)
        if not per_source:
            return None
        scale = plan.own_sources + self._domain_scale(sources, isp)
        shared = self._shared_specs(ask, isp, states, used, now, scale)
        return TakePlan(shared, tuple(per_source), take, self.calendar.day_index(now))

    def _room_today(self, plan: GrantPlan, used: Mapping[str, float], now: float) -> float:
        """What the pool's own sources can still send today: per source its cap minus its use,
        as far as its rate reaches before the window closes."""
        if plan.take is None:
            return 0.0
        left = self.calendar.window_left(now)
        room = 0.0
        for _src, specs in plan.take.per_source:
            if not specs:
                return math.inf        # a source without warm-up limits has room for everything
            spec = specs[0]
            cap_left = max(0.0, spec.daily_cap - used.get(spec.key, 0.0)) if spec.daily_cap >= 0 else math.inf
            room += min(cap_left, spec.capacity + spec.rate * left)
        return room

    def grants(self, ask: GrantRequest, isp: str, plan: GrantPlan, result: TakeResult | None,
               now: float, overflow: TakeResult | None = None, overflow_plan: TakePlan | None = None
               ) -> list[Grant]:
        """Leases for one ask: one per source granted, or a single empty one with a retry hint."""
        limits = self.catalog.settings(isp)
        ttl = self.settings.leases.ttl
        leases: list[Grant] = []
        if result is not None and result.grants:
            granted = spread_unlimited(result.grants, plan.take, now, lambda s: self.weight(ask, s))
            leases += [Grant(src, n, max(1, min(limits.max_connections, n)), limits.messages_per_connection, ttl)
                       for src, n in granted]
        if overflow is not None and overflow.grants:
            granted = spread_unlimited(overflow.grants, overflow_plan, now, lambda s: self.weight(ask, s))
            leases += [Grant(src, n, max(1, min(limits.max_connections, n)), limits.messages_per_connection, ttl,
                             overflow=True) for src, n in granted]
        if leases:
            return leases
        retry_at = plan.retry_at
        reason = plan.why
        if result is not None:
            wait = result.wait
            used_up = math.isinf(wait)
            if used_up:    # the day's volume is used up: the next day's window
                tomorrow = self.calendar.day_begins(self.calendar.day_index(now) + 1)
                wait = self.calendar.next_window_start(tomorrow) - now
            if now + wait <= retry_at:
                retry_at = now + wait
                granted_from = [src for src, _specs in plan.take.per_source] if plan.take else []
                reason = why.warmup_wait(granted_from, isp, retry_at, used_up, now)
        if retry_at >= FOREVER or math.isinf(retry_at):
            retry_at = now + self.settings.leases.idle_retry
        source = ask.sources[0] if ask.sources else ""
        return [Grant(source, 0, limits.max_connections, limits.messages_per_connection, ttl,
                      retry_in=max(0.0, retry_at - now), why=reason)]

    # ---- feedback
    def observe(self, items: Iterable[Outcome]) -> Observations:
        """Sorts outcomes into health classes per pair: (IP, ISP), (domain, ISP) and mailbox; the
        IP and domain pairs also by would-be culprit."""
        seen = Observations()
        for item in items:
            cls = classify(item.outcome, item.reason, item.code, item.status, self.settings.classes)
            if cls is None or item.count <= 0:
                seen.ignored += max(0, item.count)
                continue
            isp = self.isp_of(item.mx_hosts) if item.mx_hosts else OTHER
            domain = item.sending_domain.lower()
            part = part_id(item.tenant, domain, item.campaign, item.mailbox.lower())
            if item.source:
                seen.add(PairKey(IP, item.source, isp), cls, item.count, item.reply, part)
            if domain:
                seen.add(PairKey(DOMAIN, domain, isp), cls, item.count, item.reply, part)
            if item.mailbox and self.mailbox_rule(item.mailbox.lower()) >= 0:
                seen.add(PairKey(MAILBOX, item.mailbox.lower()), cls, item.count, item.reply)
        return seen

    def slot(self, now: float) -> int:
        return self.windows.slot(now)

    def record(self, health: Health, observed: rules.Observed, now: float,
               parts: Mapping[str, Mapping[str, int]] | None = None) -> Health:
        slot, day = self.slot(now), self.calendar.day_index(now)
        for cls, (count, _reply) in observed.items():
            health.add(cls, count, slot, day)
        for part, by_cls in (parts or {}).items():
            for cls, count in by_cls.items():
                by_part = health.parts.setdefault(slot, {})
                if part not in by_part and len(by_part) >= 200:
                    part = OTHER_PART
                by_part.setdefault(part, Counts()).add(cls, count)
        health.prune(slot, self.rules.health_slots, day)
        return health

    def window(self, health: Health, now: float) -> Counts:
        return health.window(self.slot(now), self.rules.health_slots)

    def assess(self, key: PairKey, health: Health, now: float,
               observed: rules.Observed | None = None) -> Assessment:
        """The pair's mail judged by culprit (policy.engine.culprits); updates `health.since`."""
        return culprits.assess(key, health, now, observed, self.rules, self.windows)

    def react(self, key: PairKey, state: PairState, health: Health, observed: rules.Observed,
              now: float, rest: Mapping[int, Counts] | None = None) -> tuple[PairState, list[Action]]:
        """The pair's own rules; `rest` is what assess left (default: all of the pair's mail)."""
        if rest is None:
            slot = self.slot(now)
            rest = {s: c for s, c in health.slots.items() if slot - self.rules.health_slots < s <= slot}
        return rules.observe(key, state, self.windows.of_rest(state, rest, now), observed, now,
                             self.calendar.day_index(now), self.rules)

    def apply_verdict(self, verdict: rules.Verdict, state: PairState, now: float) -> tuple[PairState, list[Action]]:
        """A culprit's verdict on its state; a domain's complaint pause rolls its warm-up back."""
        return rules.apply(verdict, state, now, self.calendar.day_index(now), self.rules,
                           rollback=verdict.key.kind == DOMAIN)

    def react_auth(self, domain_pair: PairKey, umbrella_state: PairState, health: Health,
                   observed: rules.Observed, now: float) -> tuple[PairState, list[Action]]:
        """Authentication failures seen on (domain, ISP) pause the domain everywhere."""
        if AUTH not in observed:
            return umbrella_state, []
        failures = self.window(health, now).auth
        return rules.auth_failure(domain_pair.umbrella, umbrella_state, failures, observed[AUTH][1], now,
                                  self.rules)

    # ---- day changes
    def needs_roll_over(self, state: PairState, now: float) -> bool:
        return state.day_checked < self.calendar.day_index(now)

    def roll_over(self, key: PairKey, state: PairState, health: Health,
                  now: float) -> tuple[PairState, list[Action]]:
        today = self.calendar.day_index(now)
        schedule = self.schedule_for(key)
        if schedule is None:
            return state, []
        return rules.roll_over(key, state, health.day(today - 1), schedule.volume(state.day), schedule.last_day,
                               now, today, self.rules, self.settings.warmup, self.calendar.day_length)


def spread_unlimited(grants: list[tuple[str, int]], plan: GrantPlan | TakePlan | None, now: float,
                     weight: Callable[[str], int] = lambda _s: 1) -> list[tuple[str, int]]:
    """Shares what went to sources without any bucket (no warm-up applies to them) among all such
    sources of the pool in proportion to their weights (the MTA's egress weights), the remainder
    rotating with the clock, so a pool's IPs all carry traffic. Sources with buckets keep exactly
    what their buckets granted: a warming IP's share is its schedule, not its weight."""
    take = plan.take if isinstance(plan, GrantPlan) else plan
    if take is None:
        return grants
    free = [src for src, specs in take.per_source if not specs]
    if len(free) < 2:
        return grants
    free_set = set(free)
    total = sum(n for src, n in grants if src in free_set)
    if total == 0:
        return grants
    shift = int(now) % len(free)
    rotated = free[shift:] + free[:shift]
    weights = [max(1, weight(src)) for src in rotated]
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    for i in range(total - sum(shares)):
        shares[i % len(shares)] += 1
    return [g for g in grants if g[0] not in free_set] + [(s, n) for s, n in zip(rotated, shares, strict=True) if n > 0]
