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
from policy.engine.health import AUTH, Health
from policy.engine.model import Action, FeedbackItem, Grant, GrantAsk
from policy.engine.policy import Assessment, Policy
from policy.engine.rules import Verdict
from policy.engine.state import ANY_ISP, DOMAIN, IP, ISP, MAILBOX, PairKey, PairState
from policy.store.base import HEALTH, PAIR, Store

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

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.key.kind, "name": self.key.name, "isp": self.key.isp,
                "schedule": self.schedule, "day": self.state.day, "volume": self.volume,
                "limit": round(self.limit, 2), "factor": round(self.factor, 4),
                "tokens": None if self.tokens is None else round(self.tokens, 3),
                "used_today": self.used_today, "health": self.health,
                "paused": self.paused_until > 0, "paused_until": self.paused_until or None,
                "operator_paused": self.state.operator_paused, "pause_rule": self.state.pause_rule,
                "backoff_until": self.state.backoff_until or None, "hold_until": self.state.hold_until or None}


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

    async def grant(self, asks: Sequence[GrantAsk]) -> list[list[Grant]]:
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

    async def feedback(self, items: Sequence[FeedbackItem]) -> int:
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
            if spec is not None and bucket is not None:
                now_state = refill(bucket, spec, now, policy.calendar.day_index(now))
                tokens, used = now_state.tokens, now_state.used
            window = policy.window(Health.from_dict(healths.get(str(key))), now)
            rows.append(PairStatus(key, schedule.name if schedule else "", state,
                                   schedule.volume(state.day) if schedule else 0,
                                   policy.daily_volume(key, state, now) or 0.0,
                                   state.effective_factor(now, policy.rules), tokens, used or 0.0,
                                   window.to_dict(), paused_until))
        return rows


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


def selector_key(source: str = "", domain: str = "", mailbox: str = "", isp: str = "") -> PairKey:
    """The pair an operator means by --source/--domain/--mailbox/--isp (ISP alone = every sender)."""
    if sum(bool(x) for x in (source, domain, mailbox)) > 1:
        raise ValueError("give one of --source, --domain or --mailbox")
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
