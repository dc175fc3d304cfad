"""Token buckets and the take that grants the minimum of every bucket: pure, with an explicit clock."""

from __future__ import annotations

import math

from policy.engine.bucket import UNLIMITED, BucketSpec, BucketState, TakePlan, available, refill, take

T = 1_000_000.0


def plan(shared: list[BucketSpec], per_source: dict[str, list[BucketSpec]], wanted: int, day: int = 1) -> TakePlan:
    return TakePlan(tuple(shared), tuple((s, tuple(b)) for s, b in per_source.items()), wanted, day)


def test_a_new_bucket_starts_full_and_refills_at_its_rate_up_to_capacity() -> None:
    spec = BucketSpec("b", rate=0.5, capacity=10, daily_cap=UNLIMITED)
    state = refill(None, spec, T, 1)
    assert state.tokens == 10
    state.tokens = 0
    assert refill(state, spec, T + 4, 1).tokens == 2
    assert refill(state, spec, T + 1000, 1).tokens == 10


def test_the_daily_count_resets_when_the_day_changes() -> None:
    spec = BucketSpec("b", rate=1, capacity=5, daily_cap=20)
    state = BucketState(tokens=5, stamp=T, day=1, used=20)
    assert available(refill(state, spec, T, 1), spec) == 0          # cap reached today
    assert available(refill(state, spec, T, 2), spec) == 5          # a new day: the burst again


def test_a_grant_is_the_minimum_of_the_shared_and_the_source_buckets() -> None:
    ip = BucketSpec("ip", rate=1, capacity=50, daily_cap=UNLIMITED)
    domain = BucketSpec("domain", rate=1, capacity=7, daily_cap=UNLIMITED)
    tenant = BucketSpec("tenant", rate=UNLIMITED, capacity=0, daily_cap=30)
    result, states = take(plan([domain, tenant], {"ip1": [ip]}, wanted=100), {}, T)
    assert result.grants == [("ip1", 7)]
    assert states["ip"].tokens == 43 and states["domain"].tokens == 0
    assert states["tenant"].used == 7


def test_the_tenant_quota_limits_a_day_even_with_tokens_left() -> None:
    ip = BucketSpec("ip", rate=1, capacity=100, daily_cap=UNLIMITED)
    tenant = BucketSpec("tenant", rate=UNLIMITED, capacity=0, daily_cap=12)
    states: dict[str, BucketState | None] = {}
    granted = 0
    for i in range(5):
        result, new = take(plan([tenant], {"ip1": [ip]}, wanted=5), states, T + i * 60)
        states.update(new)
        granted += result.total
    assert granted == 12


def test_sources_are_rotated_by_their_remaining_tokens() -> None:
    a = BucketSpec("a", rate=0, capacity=10, daily_cap=UNLIMITED)
    b = BucketSpec("b", rate=0, capacity=10, daily_cap=UNLIMITED)
    states: dict[str, BucketState | None] = {"a": BucketState(3, T, 1, 7), "b": BucketState(8, T, 1, 2)}
    result, new = take(plan([], {"a": [a], "b": [b]}, wanted=4), states, T)
    assert result.grants == [("b", 4)]                 # the fuller source goes first
    states.update(new)                                 # b: 4 left, a: 3 left
    result, new = take(plan([], {"a": [a], "b": [b]}, wanted=6), states, T)
    assert result.grants == [("b", 4), ("a", 2)]       # then the rest from the next one


def test_a_tie_goes_to_the_source_that_sent_least_today() -> None:
    a = BucketSpec("a", rate=1, capacity=1, daily_cap=100)
    b = BucketSpec("b", rate=1, capacity=1, daily_cap=100)
    states: dict[str, BucketState | None] = {"a": BucketState(1, T, 1, 9), "b": BucketState(1, T, 1, 3)}
    result, _ = take(plan([], {"a": [a], "b": [b]}, wanted=1), states, T)
    assert result.grants == [("b", 1)]


def test_nothing_granted_says_how_long_until_one_token() -> None:
    ip = BucketSpec("ip", rate=0.25, capacity=5, daily_cap=UNLIMITED)
    states: dict[str, BucketState | None] = {"ip": BucketState(0.5, T, 1, 0)}
    result, _ = take(plan([], {"ip1": [ip]}, wanted=3), states, T)
    assert result.grants == [] and result.wait == 2.0      # (1 - 0.5) / 0.25


def test_nothing_more_today_is_an_infinite_wait() -> None:
    ip = BucketSpec("ip", rate=1, capacity=5, daily_cap=10)
    states: dict[str, BucketState | None] = {"ip": BucketState(5, T, 1, 10)}
    result, _ = take(plan([], {"ip1": [ip]}, wanted=3), states, T)
    assert result.total == 0 and math.isinf(result.wait)


def test_float_dust_does_not_cost_a_message() -> None:
    spec = BucketSpec("b", rate=0.1, capacity=10, daily_cap=UNLIMITED)
    state = BucketState(tokens=0.0, stamp=T, day=1, used=0)
    # 0.1 * 10 s accumulates to 0.9999999999999999 in floating point
    later = refill(state, spec, T + 10 * (1 - 1e-16), 1)
    assert available(later, spec) == 1


def test_unlimited_sources_take_only_what_shared_buckets_allow() -> None:
    domain = BucketSpec("domain", rate=0, capacity=4, daily_cap=UNLIMITED)
    result, _ = take(plan([domain], {"ip1": []}, wanted=10), {}, T)
    assert result.grants == [("ip1", 4)]
