"""The policy core: from settings, pair states and the clock to bucket plans, grants and actions.

`Policy` holds no state of its own besides what it derives from settings; everything that
changes lives in PairState, Health and bucket states that the caller (the service, the
simulator, a test) loads and stores. Every method takes `now` explicitly.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from policy.engine import rules, why
from policy.engine.bucket import UNLIMITED, BucketSpec, BucketState, TakePlan, TakeResult, seconds_until_one
from policy.engine.health import AUTH, Counts, Health, classify
from policy.engine.isp import OTHER, IspCatalog
from policy.engine.model import Action
from policy.engine.schedule import Calendar, Schedule
from policy.engine.settings import PolicySettings
from policy.engine.state import ANY_ISP, DOMAIN, FOREVER, IP, ISP, MAILBOX, PairKey, PairState
from warmup_base.policy_protocol.model import Grant, GrantRequest, Outcome

TENANT = "tenant"    # tenant quotas are buckets only, with no warm-up state


@dataclass
class GrantPlan:
    """What a grant ask needs from the store: a take, or a refusal until `retry_at`."""

    take: TakePlan | None
    retry_at: float = math.inf     # earliest time an excluded source or a refusal ends
    why: str = ""                  # with no take: the refusal in words (engine/why.py)


@dataclass
class Observations:
    """Feedback sorted by pair: per pair, counts by health class with an example reply."""

    by_pair: dict[PairKey, rules.Observed] = field(default_factory=dict)
    ignored: int = 0

    def add(self, key: PairKey, cls: str, count: int, reply: str) -> None:
        seen = self.by_pair.setdefault(key, {})
        before, example = seen.get(cls, (0, ""))
        seen[cls] = (before + count, example or reply)


class Policy:
    def __init__(self, settings: PolicySettings) -> None:
        self.settings = settings
        self.rules = settings.rules
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

    # ---- grants
    def pair_keys(self, ask: GrantRequest, isp: str) -> list[PairKey]:
        """Every pair whose state the grant depends on."""
        keys = [PairKey(ISP, isp)]
        for src in dict.fromkeys(ask.sources):
            keys += [PairKey(IP, src, isp), PairKey(IP, src)]
        if ask.sending_domain:
            domain = ask.sending_domain.lower()
            keys += [PairKey(DOMAIN, domain, isp), PairKey(DOMAIN, domain)]
        if ask.mailbox and self.mailbox_rule(ask.mailbox.lower()) >= 0:
            keys.append(PairKey(MAILBOX, ask.mailbox.lower()))
        return keys

    def daily_volume(self, key: PairKey, state: PairState, now: float) -> float | None:
        """Today's allowance of a pair: its schedule's volume at its day, times its factor."""
        schedule = self.schedule_for(key)
        if schedule is None:
            return None
        return schedule.volume(state.day) * state.effective_factor(now, self.rules)

    def bucket_spec(self, key: PairKey, state: PairState, now: float) -> BucketSpec | None:
        volume = self.daily_volume(key, state, now)
        if volume is None:
            return None
        return BucketSpec(str(key), self.calendar.rate(volume), self.calendar.burst(volume), volume)

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
        return BucketSpec(f"{TENANT}|{tenant}|{ANY_ISP}", UNLIMITED, 0.0, float(quota.daily_quota))

    def plan(self, ask: GrantRequest, isp: str, states: Mapping[PairKey, PairState], now: float) -> GrantPlan:
        """Which buckets a grant must pass, or why none may be granted now."""
        wanted = min(ask.wanted, self.settings.leases.max_messages)
        shared_keys = [k for k in self.pair_keys(ask, isp) if k.kind != IP]
        stop = max((states[k].blocked_until(now) for k in shared_keys), default=now)
        if stop > now:
            culprit = max(shared_keys, key=lambda k: states[k].blocked_until(now))
            return GrantPlan(None, stop, why.held_back(culprit, states[culprit], now))
        excluded_until = math.inf
        excluded_why = ""
        per_source: list[tuple[str, tuple[BucketSpec, ...]]] = []
        for src in dict.fromkeys(ask.sources):
            pair = PairKey(IP, src, isp)
            until = max(states[pair].blocked_until(now), states[pair.umbrella].blocked_until(now))
            if until > now:
                if until < excluded_until:
                    held = pair if states[pair].blocked_until(now) >= until else pair.umbrella
                    excluded_until, excluded_why = until, why.held_back(held, states[held], now)
                continue
            spec = self.bucket_spec(pair, states[pair], now)
            per_source.append((src, (spec,) if spec else ()))
        if not per_source:
            return GrantPlan(None, excluded_until, excluded_why)
        shared = [self.bucket_spec(k, states[k], now) for k in shared_keys if k.kind in (DOMAIN, MAILBOX)]
        shared.append(self.tenant_spec(ask.tenant))
        shared_specs = tuple(s for s in shared if s is not None)
        rated = any(s.rate >= 0 for s in shared_specs) or any(specs for _src, specs in per_source)
        if rated and not self.calendar.in_window(now):
            opens = self.calendar.next_window_start(now)
            return GrantPlan(None, opens, why.outside_window(opens, now))
        take = TakePlan(shared_specs, tuple(per_source), wanted, self.calendar.day_index(now))
        return GrantPlan(take, excluded_until)

    def grants(self, ask: GrantRequest, isp: str, plan: GrantPlan, result: TakeResult | None,
               now: float) -> list[Grant]:
        """Leases for one ask: one per source granted, or a single empty one with a retry hint."""
        limits = self.catalog.settings(isp)
        ttl = self.settings.leases.ttl
        if result is not None and result.grants:
            granted = spread_unlimited(result.grants, plan, now)
            return [Grant(src, n, max(1, min(limits.max_connections, n)), limits.messages_per_connection, ttl)
                    for src, n in granted]
        retry_at = plan.retry_at
        reason = plan.why
        if result is not None:
            wait = result.wait
            used_up = math.isinf(wait)
            if used_up:    # nothing more today: the next day's window
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
        """Sorts outcomes into health classes per pair: (IP, ISP), (domain, ISP) and mailbox."""
        seen = Observations()
        for item in items:
            cls = classify(item.outcome, item.reason, item.code, item.status, self.settings.classes)
            if cls is None or item.count <= 0:
                seen.ignored += max(0, item.count)
                continue
            isp = self.isp_of(item.mx_hosts) if item.mx_hosts else OTHER
            if item.source:
                seen.add(PairKey(IP, item.source, isp), cls, item.count, item.reply)
            if item.sending_domain:
                seen.add(PairKey(DOMAIN, item.sending_domain.lower(), isp), cls, item.count, item.reply)
            if item.mailbox and self.mailbox_rule(item.mailbox.lower()) >= 0:
                seen.add(PairKey(MAILBOX, item.mailbox.lower()), cls, item.count, item.reply)
        return seen

    def slot(self, now: float) -> int:
        return math.floor(now / (self.rules.health_window / max(1, self.rules.health_slots)))

    def record(self, health: Health, observed: rules.Observed, now: float) -> Health:
        slot, day = self.slot(now), self.calendar.day_index(now)
        for cls, (count, _reply) in observed.items():
            health.add(cls, count, slot, day)
        health.prune(slot, self.rules.health_slots, day)
        return health

    def window(self, health: Health, now: float) -> Counts:
        return health.window(self.slot(now), self.rules.health_slots)

    def react(self, key: PairKey, state: PairState, health: Health, observed: rules.Observed,
              now: float) -> tuple[PairState, list[Action]]:
        return rules.observe(key, state, self.window(health, now), observed, now,
                             self.calendar.day_index(now), self.rules)

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
                               now, today, self.rules, self.settings.warmup)


def spread_unlimited(grants: list[tuple[str, int]], plan: GrantPlan, now: float) -> list[tuple[str, int]]:
    """Shares what went to sources without any bucket (no warm-up applies to them) evenly among
    all such sources of the pool, the remainder rotating with the clock, so a pool's IPs all
    carry traffic. Sources with buckets keep exactly what their buckets granted."""
    if plan.take is None:
        return grants
    free = [src for src, specs in plan.take.per_source if not specs]
    if len(free) < 2:
        return grants
    free_set = set(free)
    total = sum(n for src, n in grants if src in free_set)
    if total == 0:
        return grants
    shift = int(now) % len(free)
    rotated = free[shift:] + free[:shift]
    base, extra = divmod(total, len(free))
    shares = [(src, base + (1 if i < extra else 0)) for i, src in enumerate(rotated)]
    return [g for g in grants if g[0] not in free_set] + [s for s in shares if s[1] > 0]
