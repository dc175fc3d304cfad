"""Token buckets with a daily cap, and the atomic "take" that grants the minimum of several.

A grant for a site must fit every bucket that applies: each source IP's (IP, ISP) bucket, and the
shared (domain, ISP), mailbox and tenant buckets. `take` is a pure function of the bucket states
and the clock; the SQLite and memory stores run it inside one transaction, and the Redis store
runs the same algorithm as a Lua script (policy/store/take.lua), so that several policyd processes
sharing one Redis never grant more together than the buckets hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

UNLIMITED = -1.0
EPSILON = 1e-9          # float dust must not cost a whole message


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """What a bucket is allowed now; computed by the engine from schedule, day and health."""

    key: str
    rate: float             # tokens per second; UNLIMITED (< 0) = no rate limit
    capacity: float         # tokens at most (the burst)
    daily_cap: float        # messages per warm-up day; UNLIMITED (< 0) = no cap


@dataclass(slots=True)
class BucketState:
    tokens: float
    stamp: float
    day: int
    used: float             # taken on `day`

    def to_dict(self) -> dict[str, float]:
        return {"tokens": self.tokens, "stamp": self.stamp, "day": self.day, "used": self.used}

    @classmethod
    def from_dict(cls, d: Mapping[str, float]) -> BucketState:
        return cls(float(d["tokens"]), float(d["stamp"]), int(d["day"]), float(d["used"]))


def refill(state: BucketState | None, spec: BucketSpec, now: float, day: int) -> BucketState:
    """The state at `now`: tokens grown at the rate up to capacity, the daily count reset daily."""
    if state is None:
        return BucketState(spec.capacity, now, day, 0.0)
    elapsed = max(0.0, now - state.stamp)
    tokens = spec.capacity if spec.rate < 0 else min(spec.capacity, state.tokens + elapsed * spec.rate)
    used = state.used if state.day == day else 0.0
    return BucketState(tokens, max(now, state.stamp), day, used)


def headroom(state: BucketState, spec: BucketSpec) -> float:
    """What the bucket allows now, fractions included (math.inf when it limits nothing)."""
    by_rate = math.inf if spec.rate < 0 else state.tokens
    by_day = math.inf if spec.daily_cap < 0 else spec.daily_cap - state.used
    return min(by_rate, by_day)


def whole(room: float) -> float:
    """Whole messages in a headroom: float dust rounds up, infinity stays."""
    return room if math.isinf(room) else max(0.0, float(math.floor(room + EPSILON)))


def available(state: BucketState, spec: BucketSpec) -> float:
    """Whole messages the bucket allows now (math.inf when it limits nothing)."""
    return whole(headroom(state, spec))


def seconds_until_one(state: BucketState, spec: BucketSpec) -> float:
    """How long until the bucket allows one message; math.inf if not before the day ends."""
    if available(state, spec) >= 1:
        return 0.0
    if spec.daily_cap >= 0 and spec.daily_cap - state.used + EPSILON < 1:
        return math.inf
    if spec.rate <= 0 or spec.capacity < 1:
        return math.inf
    return (1.0 - state.tokens) / spec.rate


@dataclass(frozen=True, slots=True)
class TakePlan:
    """One grant request as buckets: `shared` apply to every source, `per_source` to one each."""

    shared: tuple[BucketSpec, ...]
    per_source: tuple[tuple[str, tuple[BucketSpec, ...]], ...]
    wanted: int
    day: int

    def specs(self) -> list[BucketSpec]:
        return list(self.shared) + [s for _src, specs in self.per_source for s in specs]


@dataclass(slots=True)
class TakeResult:
    grants: list[tuple[str, int]] = field(default_factory=list)   # (source, messages), count > 0
    wait: float = 0.0     # with no grant: seconds until asking again may help (math.inf: not today)

    @property
    def total(self) -> int:
        return sum(n for _s, n in self.grants)


def take(plan: TakePlan, states: Mapping[str, BucketState | None],
         now: float) -> tuple[TakeResult, dict[str, BucketState]]:
    """Grants up to `wanted`, the fullest source first; returns the result and the new states.

    Sources are ordered by their headroom, fractions of a token included (most first; on a tie,
    the one that sent least today, then the pool's order), which rotates a pool's IPs by their
    remaining tokens. Every bucket a granted message passes through
    loses one token and counts one use.
    """
    new = {spec.key: refill(states.get(spec.key), spec, now, plan.day) for spec in plan.specs()}
    shared_room = min((available(new[s.key], s) for s in plan.shared), default=math.inf)
    room = {src: min((headroom(new[s.key], s) for s in specs), default=math.inf)
            for src, specs in plan.per_source}
    used = {src: sum(new[s.key].used for s in specs) for src, specs in plan.per_source}
    order = sorted(range(len(plan.per_source)),
                   key=lambda i: (-room[plan.per_source[i][0]], used[plan.per_source[i][0]]))
    remaining = min(float(plan.wanted), shared_room)
    result = TakeResult()
    for i in order:
        source, specs = plan.per_source[i]
        granted = int(min(whole(room[source]), remaining))
        if granted <= 0:
            continue
        for spec in (*plan.shared, *specs):
            state = new[spec.key]
            state.tokens -= granted if spec.rate >= 0 else 0
            state.used += granted
        remaining -= granted
        result.grants.append((source, granted))
    if not result.grants:
        result.wait = _wait(plan, new)
    return result, new


def _wait(plan: TakePlan, states: Mapping[str, BucketState]) -> float:
    shared = max((seconds_until_one(states[s.key], s) for s in plan.shared), default=0.0)
    per_source = [max((seconds_until_one(states[s.key], s) for s in specs), default=0.0)
                  for _src, specs in plan.per_source]
    return max(shared, min(per_source, default=math.inf))
