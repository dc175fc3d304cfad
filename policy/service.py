"""The policy service: the engine wired to a store and a clock. Shared by daemon, CLI and simulator.

Grant path per batch: recognise ISPs, load the pair states (cached for `cache_seconds`, so a busy
site costs no state read per ask), roll over pairs whose calendar day changed, plan, then one
atomic take per ask in one store round trip. Feedback path: update health, then let the rules
react, each pair by one atomic update; every action goes to the history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from policy.engine import operator
from policy.engine.bucket import TakePlan, TakeResult, refill
from policy.engine.culprits import Assessment
from policy.engine.health import AUTH, Health
from policy.engine.model import Action
from policy.engine.policy import Policy
from policy.engine.rules import Verdict
from policy.engine.state import ANY_ISP, CAMPAIGN, DOMAIN, FOREVER, IP, ISP, MAILBOX, SENDER, TENANT, PairKey, PairState
from policy.store.base import HEALTH, PAIR, Store
from warmup_base.policy_protocol.model import Grant, GrantRequest, Outcome
from warmup_base.policy_protocol.wire import key_safe

log = logging.getLogger("policyd")


class ServiceHooks(Protocol):
    """What the service reports as it works (metrics); every method is optional in spirit."""

    def granted(self, isp: str, asked: int, grants: Sequence[Grant]) -> None: ...
    def observed(self, cls: str, count: int, isp: str = "") -> None: ...
    def acted(self, action: Action) -> None: ...


@dataclass
class PairStatus:
    """One row of `policyd status`."""

    key: PairKey
    schedule: str
    state: PairState
    volume: int              # the schedule's volume at the pair's day
    limit: float             # today's allowance: volume x factor
    factor: float
    tokens: float | None     # bucket now (None: never used)
    used_today: float
    health: dict[str, int] = field(default_factory=dict)
    paused_until: float = 0.0
    next_at: float | None = None   # when this pair may take its next message (None: no limit on it)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.key.kind, "name": self.key.name, "isp": self.key.isp,
                "schedule": self.schedule, "day": self.state.day, "volume": self.volume,
                "limit": round(self.limit, 2), "factor": round(self.factor, 4),
                "tokens": None if self.tokens is None else round(self.tokens, 3),
                "used_today": self.used_today, "health": self.health,
                "paused": self.paused_until > 0, "paused_until": self.paused_until or None,
                "operator_paused": self.state.operator_paused, "pause_rule": self.state.pause_rule,
                "backoff_until": self.state.backoff_until or None, "hold_until": self.state.hold_until or None,
                "next_at": self.next_at}


class PolicyService:
    def __init__(self, policy: Policy, store: Store, clock: Callable[[], float], cache_seconds: float = 1.0,
                 hooks: ServiceHooks | None = None) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.hooks = hooks
        self._cache: dict[PairKey, tuple[PairState, float]] = {}
        # What each bucket granted today, for the catch-up of its rate: bucket key -> (calendar
        # day, used, when read from the store). Kept up to date with this process's own grants and
        # re-read every cache_seconds (other processes sharing the store grant too).
        self._used: dict[str, tuple[int, float, float]] = {}

    def reload(self, policy: Policy) -> None:
        """Takes new settings; cached states are dropped because defaults (start days) may differ."""
        self.policy = policy
        self._cache.clear()
        self._used.clear()

    # ---- pair states
    async def _states(self, keys: Sequence[PairKey], now: float) -> dict[PairKey, PairState]:
        states: dict[PairKey, PairState] = {}
        missing = []
        for key in dict.fromkeys(keys):
            cached = self._cache.get(key)
            if cached is not None and now - cached[1] < self.cache_seconds:
                states[key] = cached[0]
            else:
                missing.append(key)
        if missing:
            found = await self.store.get(PAIR, [str(k) for k in missing])
            for key in missing:
                record = found.get(str(key))
                if record is not None:
                    states[key] = PairState.from_dict(record)
                elif self.policy.schedule_for(key) is not None:
                    states[key] = await self._create(key, now)
                else:
                    states[key] = PairState()
                self._cache[key] = (states[key], now)
        for key, state in states.items():
            if self.policy.schedule_for(key) is not None and self.policy.needs_roll_over(state, now):
                states[key] = await self._roll_over(key, now)
        return states

    async def _create(self, key: PairKey, now: float) -> PairState:
        """Records a warm-up pair the first time it is seen, so its days are counted from now."""
        fresh = self.policy.initial_state(key, now).to_dict()
        stored = await self.store.update(PAIR, str(key), lambda old: fresh if old is None else None)
        return PairState.from_dict(stored or fresh)

    async def _change(self, key: PairKey,
                      decide: Callable[[PairState], tuple[PairState, list[Action]]]) -> PairState:
        """One atomic read-decide-write of a pair; the decision's actions go to the history."""
        return (await self._change_many([key], lambda _key, state: decide(state)))[key]

    async def _change_many(self, keys: Sequence[PairKey],
                           decide: Callable[[PairKey, PairState], tuple[PairState, list[Action]]]
                           ) -> dict[PairKey, PairState]:
        """Atomic read-decide-write of each pair, in one store round trip where the backend can."""
        by_name = {str(k): k for k in keys}
        taken: dict[str, list[Action]] = {}      # by key: the last decision is the one stored

        def mutate(name: str, old: dict[str, Any] | None) -> dict[str, Any] | None:
            key = by_name[name]
            state = PairState.from_dict(old) if old is not None else self.policy.initial_state(key, self.clock())
            new, actions = decide(key, state)
            taken[name] = actions
            return new.to_dict() if actions or new != state or old is None else None

        stored = await self.store.update_many(PAIR, list(by_name), mutate)
        now = self.clock()
        states = {}
        for name, key in by_name.items():
            record = stored.get(name)
            states[key] = PairState.from_dict(record) if record is not None else PairState()
            self._cache[key] = (states[key], now)
        await self._record([a for actions in taken.values() for a in actions])
        return states

    async def _roll_over(self, key: PairKey, now: float) -> PairState:
        health = Health.from_dict((await self.store.get(HEALTH, [str(key)])).get(str(key)))
        return await self._change(key, lambda s: self.policy.roll_over(key, s, health, now))

    async def _record(self, actions: Sequence[Action]) -> None:
        if not actions:
            return
        await self.store.add_actions(actions)
        for a in actions:
            log.info("action %s on %s: %s (%s)%s", a.rule, a.key, a.action, a.reason,
                     f" after {a.reply!r}" if a.reply else "")
            if self.hooks:
                self.hooks.acted(a)

    # ---- grants and feedback
    async def _used_today(self, keys: Sequence[str], now: float) -> dict[str, float]:
        """What each bucket granted today (for the catch-up of its rate), cached like pair states."""
        day = self.policy.calendar.day_index(now)
        stale = [k for k in dict.fromkeys(keys)
                 if k not in self._used or now - self._used[k][2] >= self.cache_seconds]
        if stale:
            found = await self.store.buckets(stale)
            for k in stale:
                b = found.get(k)
                self._used[k] = (b.day, b.used, now) if b is not None else (day, 0.0, now)
        return {k: (u if d == day else 0.0) for k in keys for d, u, _t in (self._used[k],)}

    def _count_used(self, plan: TakePlan, result: TakeResult, now: float) -> None:
        day = self.policy.calendar.day_index(now)
        specs = dict(plan.per_source)
        for src, n in result.grants:
            for spec in (*plan.shared, *specs.get(src, ())):
                d, u, t = self._used.get(spec.key, (day, 0.0, now))
                self._used[spec.key] = (day, (u if d == day else 0.0) + n, t)

    async def grant(self, asks: Sequence[GrantRequest]) -> list[list[Grant]]:
        now = self.clock()
        policy = self.policy
        isps = [policy.isp_of(a.mx_hosts) for a in asks]
        keys = [k for ask, isp in zip(asks, isps, strict=True) for k in policy.pair_keys(ask, isp)]
        states = await self._states(keys, now)
        used = await self._used_today([str(k) for k in keys], now) if policy.settings.warmup.catch_up > 1 else {}
        plans = [policy.plan(ask, isp, states, now, used) if ask.wanted > 0 else None
                 for ask, isp in zip(asks, isps, strict=True)]
        takes = [p.take for p in plans if p is not None and p.take]
        results = iter(await self.store.take(takes, now))
        first: list[TakeResult | None] = []
        for plan in plans:
            result = next(results) if plan is not None and plan.take else None
            if result is not None and plan is not None and plan.take is not None:
                self._count_used(plan.take, result, now)
            first.append(result)
        # The overflow pools take what the pools' own sources left, in a second round.
        overflow: list[TakePlan | None] = [
            policy.overflow_plan(ask, isp, states, plan, result, now, used) if plan is not None else None
            for ask, isp, plan, result in zip(asks, isps, plans, first, strict=True)]
        extra = iter(await self.store.take([o for o in overflow if o is not None], now)) \
            if any(o is not None for o in overflow) else iter(())
        out = []
        for ask, isp, plan, result, over in zip(asks, isps, plans, first, overflow, strict=True):
            if plan is None:
                out.append([])
                continue
            over_result = next(extra) if over is not None else None
            if over is not None and over_result is not None:
                self._count_used(over, over_result, now)
            grants = policy.grants(ask, isp, plan, result, now, over_result, over)
            if self.hooks:
                self.hooks.granted(isp, ask.wanted, grants)
            out.append(grants)
        return out

    async def feedback(self, items: Sequence[Outcome]) -> int:
        """Counts outcomes into health, judges culprits, and lets the rules react; returns how many
        outcomes were counted into a (source IP, ISP) window."""
        now = self.clock()
        policy = self.policy
        seen = policy.observe(items)
        if not seen.by_pair:
            return 0
        by_name = {str(k): k for k in seen.by_pair}
        assessed: dict[PairKey, Assessment] = {}
        healths: dict[PairKey, Health] = {}

        def update(name: str, old: dict[str, Any] | None) -> dict[str, Any]:
            key = by_name[name]
            health = policy.record(Health.from_dict(old), seen.by_pair[key], now, seen.parts.get(key))
            assessed[key] = policy.assess(key, health, now, seen.by_pair[key])     # may set health.since
            healths[key] = health       # the last run is the one stored
            return health.to_dict()

        await self.store.update_many(HEALTH, list(by_name), update)
        verdicts: dict[PairKey, list[Verdict]] = {}
        for a in assessed.values():
            for v in a.verdicts:
                verdicts.setdefault(v.key, []).append(v)
        if verdicts:        # culprits first: a pair's own rule then finds a culprit's pause done
            await self._change_many(list(verdicts), lambda k, s: _apply_all(policy, verdicts[k], s, now))
        await self._change_many(list(seen.by_pair),
                                lambda k, s: policy.react(k, s, healths[k], seen.by_pair[k], now,
                                                          assessed[k].rest if k in assessed else None))
        auth = [k for k, observed in seen.by_pair.items() if k.kind == DOMAIN and AUTH in observed]
        for key in auth:
            await self._change(key.umbrella,
                               lambda s, k=key: policy.react_auth(k, s, healths[k], seen.by_pair[k], now))
        counted = 0
        for key, observed in seen.by_pair.items():
            if key.kind != IP:
                continue
            counted += sum(n for n, _reply in observed.values())
            if self.hooks:
                for cls, (n, _reply) in observed.items():
                    self.hooks.observed(cls, n, key.isp)
        return counted

    # ---- operators
    async def pause(self, key: PairKey, duration: float = 0.0, reason: str = "") -> PairState:
        now = self.clock()
        return await self._change(key, lambda s: _one(operator.pause(key, s, now, duration, reason)))

    async def resume(self, key: PairKey, reason: str = "") -> PairState:
        now = self.clock()
        return await self._change(key, lambda s: _one(operator.resume(key, s, now, reason)))

    async def set_day(self, key: PairKey, day: int, reason: str = "") -> PairState:
        now = self.clock()
        return await self._change(key, lambda s: _one(operator.set_day(key, s, day, now, reason)))

    async def history(self, key_prefix: str = "", limit: int = 100) -> list[Action]:
        return await self.store.actions(key_prefix, limit)

    async def known_pairs(self) -> list[PairKey]:
        """Configured warm-up pairs first, then every pair with stored state."""
        stored = [PairKey.parse(k) for k in await self.store.keys(PAIR)]
        return list(dict.fromkeys([*self.policy.configured_pairs(), *sorted(stored)]))

    async def status(self, pairs: Sequence[PairKey] | None = None) -> list[PairStatus]:
        """Read-only view of warm-up pairs and of any pair that is paused; changes nothing."""
        now = self.clock()
        policy = self.policy
        keys = list(pairs) if pairs is not None else await self.known_pairs()
        records = await self.store.get(PAIR, [str(k) for k in keys])
        healths = await self.store.get(HEALTH, [str(k) for k in keys])
        buckets = await self.store.buckets([str(k) for k in keys])
        rows = []
        for key in keys:
            record = records.get(str(key))
            state = PairState.from_dict(record) if record else policy.initial_state(key, now)
            schedule = policy.schedule_for(key)
            paused_until = state.blocked_until(now) if state.paused(now) else 0.0
            if schedule is None and not paused_until:
                continue
            spec = policy.bucket_spec(key, state, now)
            bucket = buckets.get(str(key))
            tokens = used = None
            next_at: float | None = None
            if spec is not None:
                day = policy.calendar.day_index(now)
                now_state = refill(bucket, spec, now, day)
                if bucket is not None:
                    tokens, used = now_state.tokens, now_state.used
                next_at = policy.next_send(state, spec, now_state, now)
            window = policy.window(Health.from_dict(healths.get(str(key))), now)
            rows.append(PairStatus(key, schedule.name if schedule else "", state,
                                   schedule.volume(state.day) if schedule else 0,
                                   policy.daily_volume(key, state, now) or 0.0,
                                   state.effective_factor(now, policy.rules), tokens, used or 0.0,
                                   window.to_dict(), paused_until, next_at))
        return rows

    # ---- explain
    async def explain_keys(self, key: PairKey) -> list[PairKey]:
        """The pairs `policyd explain` looks at for a selector: per ISP for a source or domain (and
        its all-ISPs pause), the mailbox and its per-ISP sender pauses, an ISP and every pair on it."""
        known = await self.known_pairs()
        isps = [n for n in self.policy.catalog.names if self.policy.catalog.settings(n).warmup]
        if key.kind == ISP:
            return [key, *[k for k in known if k.isp == key.name]]
        if key.isp != ANY_ISP:
            return [key, key.umbrella] if key.kind in (IP, DOMAIN) else [key]
        if key.kind == MAILBOX:
            seen = [k for k in known if k.kind == SENDER and k.name == key.name]
            return [key, *dict.fromkeys([*seen, *(PairKey(SENDER, key.name, i) for i in isps)])]
        seen = [k for k in known if (k.kind, k.name) == (key.kind, key.name) and k.isp != ANY_ISP]
        per_isp = [PairKey(key.kind, key.name, i) for i in isps] if key.kind in (IP, DOMAIN) else []
        return [key, *dict.fromkeys([*per_isp, *seen])]

    async def explain(self, key: PairKey, history: int = 10) -> list[dict[str, Any]]:
        """Why each pair's limit is what it is now: schedule day and volume, factor and back-off,
        pauses and holds, the day's use, the health the rules judge, and the actions (with their
        evidence) that led there. Read-only."""
        now = self.clock()
        policy = self.policy
        keys = await self.explain_keys(key)
        records = await self.store.get(PAIR, [str(k) for k in keys])
        healths = await self.store.get(HEALTH, [str(k) for k in keys])
        buckets = await self.store.buckets([str(k) for k in keys])
        day_index = policy.calendar.day_index(now)
        out = []
        for k in keys:
            record = records.get(str(k))
            state = PairState.from_dict(record) if record else policy.initial_state(k, now)
            schedule = policy.schedule_for(k)
            bucket = buckets.get(str(k))
            used = bucket.used if bucket is not None and bucket.day == day_index else 0.0
            spec = policy.bucket_spec(k, state, now, used)
            why: list[str] = []
            if schedule is not None and spec is not None:
                why.append(f"schedule {schedule.name!r}, warm-up day {state.day} of {schedule.last_day}: "
                           f"{schedule.volume(state.day):,} a day" + (" (the last day: full volume)"
                                                                       if state.day >= schedule.last_day else
                                                                       f", {schedule.volume(state.day + 1):,} next"))
                if k.kind == DOMAIN and policy.settings.warmup.domain_volume == "sources":
                    why.append("a domain's volume is its schedule's times the warm-up sources of the pool it is "
                               "sent over")
                why.append(f"today: {used:,.0f} used of {spec.daily_cap:,.0f}; rate now {spec.rate * 60:.2f}/min "
                           f"(even {policy.calendar.rate(spec.daily_cap) * 60:.2f}/min, catching up with the day "
                           f"at most x{policy.settings.warmup.catch_up:g}), burst {spec.capacity:.1f}")
            elif schedule is None:
                why.append("no warm-up schedule: only pauses apply" if k.kind != IP else
                           "no warm-up limit on this ISP (warmup = false or no schedule)")
            factor = state.effective_factor(now, policy.rules)
            if factor < 1.0:
                if now < state.backoff_until:
                    why.append(f"throttled: rate x{factor:.2f}, backing off for {state.backoff_until - now:.0f}s "
                               f"more; then one probe, and back to x{state.factor_target:.2f} once it is clean")
                elif state.clean_since:
                    why.append(f"recovering: rate x{factor:.2f}, doubling every {policy.rules.recovery_interval:g}s "
                               f"since a clean probe, to x{state.factor_target:.2f}")
                else:
                    why.append(f"throttled: rate x{factor:.2f} until a delivery after the back-off shows replies "
                               "are clean (the next lease is the probe)")
            if state.operator_paused:
                why.append("paused by an operator until resumed")
            elif now < state.paused_until:
                why.append(f"paused by rule {state.pause_rule} for {state.paused_until - now:.0f}s more")
            if now < state.hold_until:
                why.append(f"held (no advance) for {state.hold_until - now:.0f}s more (complaints)")
            if state.kept:
                why.append(f"the last day was kept ({state.kept}); see the hold below")
            if state.last_sent_day >= 0:
                idle = day_index - state.last_sent_day
                rewarm = policy.settings.warmup.rewarm_after / 86400
                why.append(f"last sent {idle} day(s) ago"
                           + (f"; re-warms after {rewarm:g} idle days" if idle > 1 else ""))
            window = policy.window(Health.from_dict(healths.get(str(k))), now)
            z = policy.rules.confidence_z
            if window.sent or window.complaint:
                why.append(f"health ({policy.rules.health_window / 3600:g}h): {window.sent:,} sent, "
                           f"{window.delivered:,} delivered, hard bounces {window.hard_bounce} "
                           f"(at least {window.lower('hard_bounce', z) * 100:.2f}%), complaints {window.complaint} "
                           f"(at least {window.lower('complaint', z) * 100:.3f}%), throttled {window.throttled}, "
                           f"blocked {window.blocked}")
            actions = await self.store.actions(str(k), history)
            if k.kind == ISP and k.isp == ANY_ISP:
                actions = [a for a in actions if a.key == str(k)]
            out.append({"key": str(k), "kind": k.kind, "name": k.name, "isp": k.isp,
                        "schedule": schedule.name if schedule else "", "day": state.day,
                        "volume": spec.daily_cap if spec else None, "used_today": used,
                        "rate_per_minute": round(spec.rate * 60, 4) if spec else None,
                        "factor": round(factor, 4), "paused": state.paused(now),
                        "paused_until": (None if not state.paused(now) else
                                         (FOREVER if state.operator_paused else state.paused_until)),
                        "pause_rule": state.pause_rule if state.paused(now) else "",
                        "why": why, "actions": [a.to_dict() for a in actions]})
        return out


def _apply_all(policy: Policy, verdicts: Sequence[Verdict], state: PairState,
               now: float) -> tuple[PairState, list[Action]]:
    """Verdicts on one culprit from several pairs: the first of each rule acts, the rest find it done."""
    actions: list[Action] = []
    for v in verdicts:
        state, a = policy.apply_verdict(v, state, now)
        actions += a
    return state, actions


def _one(change: tuple[PairState, Action]) -> tuple[PairState, list[Action]]:
    state, action = change
    return state, [action]


def selector_key(source: str = "", domain: str = "", mailbox: str = "", isp: str = "", tenant: str = "",
                 campaign: str = "") -> PairKey:
    """The pair an operator means by --source/--domain/--mailbox/--tenant/--campaign/--isp (ISP
    alone = every sender). Tenants and campaigns are culprits: paused per ISP, no schedule."""
    if sum(bool(x) for x in (source, domain, mailbox, tenant, campaign)) > 1:
        raise ValueError("give one of --source, --domain, --mailbox, --tenant or --campaign")
    source, domain, mailbox, tenant, campaign = map(key_safe, (source, domain, mailbox, tenant, campaign))
    if tenant:
        return PairKey(TENANT, tenant, isp or ANY_ISP)
    if campaign:
        return PairKey(CAMPAIGN, campaign, isp or ANY_ISP)
    if source:
        return PairKey(IP, source, isp or ANY_ISP)
    if domain:
        return PairKey(DOMAIN, domain.lower(), isp or ANY_ISP)
    if mailbox:
        if isp:
            raise ValueError("a mailbox has no ISP of its own; leave out --isp")
        return PairKey(MAILBOX, mailbox.lower())
    if isp:
        return PairKey(ISP, isp)
    raise ValueError("give --source, --domain, --mailbox or --isp")
