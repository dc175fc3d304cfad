"""Issue 18's warm-up mechanics: catch-up, throttles late in the day, a domain over several IPs,
advancement gates, re-warming, quiet holds, source weights and overflow pools."""

from __future__ import annotations

from policy.engine import GrantRequest, Policy, rules
from policy.engine.bucket import TakePlan
from policy.engine.health import Counts
from policy.engine.policy import spread_unlimited
from policy.engine.settings import (
    PolicySettings,
    PoolSettings,
    RuleSettings,
    ScheduleSettings,
    SourceSettings,
    WarmupSettings,
)
from policy.engine.state import PairKey, PairState
from policy.service import PolicyService
from policy.store.memory_store import MemoryStore
from tests.policy.conftest import DAY, T0, Clock, make_settings
from tests.policy.test_engine import GOOGLE, ask, granted, outcome

R = RuleSettings()
W = WarmupSettings()
KEY = PairKey("ip", "ip1", "google")
TODAY = 20000


def service(settings: PolicySettings, clock: Clock) -> PolicyService:
    return PolicyService(Policy(settings), MemoryStore(), clock, cache_seconds=0.0)


async def send_until(svc: PolicyService, clock: Clock, end: float, step: float = 60.0,
                     sources: tuple[str, ...] = ("ip1",)) -> int:
    total = 0
    while clock.now < end:
        got = await granted(svc, ask(500, sources=sources))
        total += sum(got.values())
        if got:
            await svc.feedback([outcome(s, "delivered", n) for s, n in got.items()])
        clock.advance(step)
    return total


async def test_a_late_start_still_gets_the_days_volume(clock: Clock) -> None:
    svc = service(make_settings(burst=120.0), clock)
    clock.advance(DAY / 2)                                   # the day's mail is queued at noon
    assert await send_until(svc, clock, T0 + DAY) >= 0.97 * 240   # 240 a day: made up by the evening


async def test_the_rate_catches_up_at_most_twice_the_even_rate(clock: Clock) -> None:
    svc = service(make_settings(burst=120.0), clock)
    clock.advance(DAY - 6 * 3600)                            # six hours left: a quarter of the day at most x2
    sent = await send_until(svc, clock, T0 + DAY)
    assert 0.45 * 240 <= sent <= 0.5 * 240 + 2


async def test_a_throttle_late_in_the_day_does_not_answer_tomorrow(clock: Clock) -> None:
    svc = service(make_settings(burst=120.0), clock)
    clock.advance(DAY - 2 * 3600)                            # 22:00
    await svc.feedback([outcome("ip1", "deferred", 1, reason="toomanyconn", code=421, status="4.7.28")])
    [[lease]] = await svc.grant([ask(50, sources=("ip1",))])
    assert lease.count == 0 and lease.retry_in <= R.throttle_backoff + 1
    clock.advance(R.throttle_backoff)
    assert sum((await granted(svc, ask(50, sources=("ip1",)))).values()) > 0


async def test_a_domain_over_several_ips_gets_their_volume_not_one_ips(clock: Clock) -> None:
    s = make_settings(burst=3600.0)
    s.schedules["dom"] = ScheduleSettings([240])            # the IPs' schedule
    svc = service(s, clock)
    assert await granted(svc, ask(100)) == {"ip1": 10, "ip2": 10}     # not 10 between them
    s.warmup.domain_volume = "fixed"
    svc = service(s, Clock())
    assert sum((await granted(svc, ask(100))).values()) == 10


def roll(state: PairState, yesterday: Counts, volume: int = 1000) -> tuple[PairState, list]:
    return rules.roll_over(KEY, state, yesterday, volume, 10, T0, TODAY, R, W)


def test_a_day_delivered_below_90_percent_does_not_advance() -> None:
    state, [a] = roll(PairState(day=3, day_checked=TODAY - 1), Counts(delivered=850, soft_bounce=150))
    assert state.day == 3 and "delivered 85.00% of sent < 90.00%" in a.reason


def test_a_day_judged_on_too_little_mail_does_not_advance() -> None:
    state, [a] = roll(PairState(day=0, day_checked=TODAY - 1), Counts(delivered=15), volume=50)
    assert state.day == 0 and "15 sent, 30 needed" in a.reason
    state, [a] = roll(PairState(day=0, day_checked=TODAY - 1), Counts(delivered=40), volume=50)
    assert state.day == 1 and a.rule == "advance"            # a small day needs its usage share, no more


def test_a_kept_day_is_recorded_once_until_the_reason_changes() -> None:
    state, [a] = roll(PairState(day=3, day_checked=TODAY - 1), Counts(delivered=500))
    assert a.rule == "hold" and "used 50.00%" in a.reason
    state = PairState(**{**state.to_dict(), "day_checked": TODAY - 1})
    again, actions = roll(state, Counts(delivered=600))
    assert actions == [] and again.kept == "usage"
    again = PairState(**{**again.to_dict(), "day_checked": TODAY - 1})
    _, [b] = roll(again, Counts(delivered=850, soft_bounce=150))
    assert "delivered" in b.reason


def test_a_throttle_is_no_incident_but_a_throttled_day_is_not_healthy() -> None:
    state, _ = rules.throttle(KEY, PairState(day=3, day_checked=TODAY - 1), {"throttled": (1, "")}, T0 - 60,
                              TODAY - 1, R)
    advanced, [a] = roll(state, Counts(delivered=990, throttled=10))
    assert advanced.day == 4 and a.rule == "advance"          # one throttle in a day of 1,000
    kept, [b] = roll(state, Counts(delivered=900, throttled=100))
    assert kept.day == 3 and "throttled at least" in b.reason


def test_an_ip_idle_for_30_days_is_re_warmed() -> None:
    state = PairState(day=20, day_checked=TODAY - 40, last_sent_day=TODAY - 35)
    new, [a] = roll(state, Counts())
    assert new.day == 20 - W.rewarm_rollback_days and a.rule == "rewarm" and "sent nothing for 34 days" in a.reason
    fresh, actions = roll(PairState(day=20, day_checked=TODAY - 3, last_sent_day=TODAY - 3), Counts())
    assert fresh.day == 20 and actions == []


def test_unlimited_sources_share_by_their_weights() -> None:
    take = TakePlan((), (("a", ()), ("b", ()), ("c", ())), 100, 0)
    weights = {"a": 1, "b": 2, "c": 1}
    shares = dict(spread_unlimited([("a", 100)], take, 0.0, weights.__getitem__))
    assert shares == {"a": 25, "b": 50, "c": 25}


def test_the_mta_s_weights_in_the_grant_request_win_over_policyd_s() -> None:
    s = make_settings()
    s.sources = [SourceSettings("ip1", weight=5), SourceSettings("ip2")]
    p = Policy(s)
    a = GrantRequest("g", GOOGLE, "default", ("ip1", "ip2"), "m", "", "", 10)
    assert (p.weight(a, "ip1"), p.weight(a, "ip2")) == (5, 1)
    a = GrantRequest("g", GOOGLE, "default", ("ip1", "ip2"), "m", "", "", 10, weights=(1, 3))
    assert (p.weight(a, "ip1"), p.weight(a, "ip2")) == (1, 3)


def overflow_settings() -> PolicySettings:
    s = make_settings(burst=3600.0)
    s.sources.append(SourceSettings("warm1", start_day=2))          # 960 a day: 40 at once
    s.pools = {"young": PoolSettings(overflow="warm"), "warm": PoolSettings(sources=["warm1"])}
    return s


def young(wanted: int, backlog: int = 0, domain: str = "example.test") -> GrantRequest:
    return GrantRequest("gmail.com", GOOGLE, "young", ("ip1",), "marketing", domain, "t1", wanted, backlog=backlog)


async def test_overflow_takes_the_backlog_beyond_what_the_young_ip_can_send_today(clock: Clock) -> None:
    svc = service(overflow_settings(), clock)
    [own, extra] = (await svc.grant([young(500, backlog=1000)]))[0]
    assert (own.source, own.count, own.overflow) == ("ip1", 10, False)      # the young IP's share first
    assert (extra.source, extra.count, extra.overflow) == ("warm1", 40, True)
    svc = service(overflow_settings(), Clock())
    leases = (await svc.grant([young(500, backlog=200)]))[0]     # the young IP can send 200 today itself
    assert [(g.source, g.count) for g in leases] == [("ip1", 10)]


async def test_overflow_takes_everything_while_the_young_ip_is_out_of_volume_or_paused(clock: Clock) -> None:
    svc = service(overflow_settings(), clock)
    await svc.pause(PairKey("ip", "ip1", "google"))
    [lease] = (await svc.grant([young(30)]))[0]
    assert (lease.source, lease.count, lease.overflow) == ("warm1", 30, True)
    await svc.resume(PairKey("ip", "ip1", "google"))
    await svc.pause(PairKey("domain", "example.test", "google"))     # a verdict on the sender is no cap
    [lease] = (await svc.grant([young(30)]))[0]
    assert lease.count == 0


async def test_without_an_overflow_pool_a_capped_lane_waits_for_tomorrow(clock: Clock) -> None:
    svc = service(make_settings(burst=DAY), clock)          # the whole day's volume at once
    clock.advance(DAY - 3600)
    assert await granted(svc, ask(500, sources=("ip1",))) == {"ip1": 240}
    [[lease]] = await svc.grant([ask(10, sources=("ip1",))])
    assert lease.count == 0 and lease.retry_in == 3600      # the next day's window: capped, not stranded
    s = overflow_settings()
    s.warmup.burst = DAY
    svc = service(s, clock)
    leases = (await svc.grant([young(500)]))[0]
    assert [(g.source, g.count) for g in leases] == [("ip1", 240)]     # no backlog told: own sources first
    [lease] = (await svc.grant([young(100)]))[0]            # the cap is used up: overflow, not tomorrow
    assert (lease.source, lease.count, lease.overflow) == ("warm1", 100, True)
