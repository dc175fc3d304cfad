"""The modelled ISP: budgets follow reputation and history; throttles, blocks and deferrals as specified."""

from __future__ import annotations

import random
from dataclasses import replace

from policy.sim.isp_model import HOUR, ModelledIsp, SessionResult
from policy.sim.scenario import IspModelSettings
from tests.sim.conftest import scenario, small

T0 = 1_740_960_000.0      # a midnight, UTC
SETTINGS: IspModelSettings = scenario(small()).isps["google"]


def isp(**changes: object) -> ModelledIsp:
    return ModelledIsp("google", replace(SETTINGS, **changes))


def deliver(model: ModelledIsp, count: int, now: float, invalid: set[int] = frozenset(), engagement: float = 0.5,
            connections: int = 5, source: str = "ip1") -> SessionResult:
    st = model.standing(source, now)
    flags = [1 if i in invalid else 0 for i in range(count)]
    return model.receive(st, model.replies(source, "192.0.2.1"), list(range(count)), connections, flags,
                         [engagement] * count, random.Random(1), now)


def test_a_new_ip_gets_its_minimum_hourly_volume_scaled_by_reputation() -> None:
    model = isp(min_hourly=40, initial_reputation=0.3, steady_reputation=0.2, surge=1.5)
    st = model.standing("ip1", T0)
    assert model.budget(st) == int(40 * 1.5 ** 1.5)
    st.reputation = 0.2
    assert model.budget(st) == 40


def test_mail_beyond_the_hourly_budget_is_throttled_and_the_rest_of_the_lease_given_back() -> None:
    model = isp(min_hourly=20, initial_reputation=0.2, steady_reputation=0.2)
    result = deliver(model, 30, T0, connections=3)
    assert len(result.delivered) == 20
    assert result.refusal is not None and result.refusal.outcome == "throttled"
    assert len(result.refused) == 3 and len(result.untried) == 7
    assert result.refused == [20, 21, 22]
    again = deliver(model, 5, T0 + 60)
    assert again.delivered == [] and again.refusal is not None     # the hour's budget is spent
    later = deliver(model, 5, T0 + HOUR)
    model.advance(T0 + HOUR)
    later = deliver(model, 5, T0 + HOUR)
    assert len(later.delivered) == 5


def test_the_budget_remembers_the_busiest_recent_hour_and_forgets_it_slowly() -> None:
    model = isp(min_hourly=20, initial_reputation=0.2, steady_reputation=0.2, volume_memory=24 * HOUR)
    st = model.standing("ip1", T0)
    st.attempts = 400
    model.advance(T0 + HOUR)
    assert model.budget(st) == 400
    model.advance(T0 + 25 * HOUR)           # a day idle: half remembered
    assert 190 <= model.budget(st) <= 200


def test_reputation_grows_with_engaged_mail_and_falls_with_bounces_and_complaints() -> None:
    good, bouncy, complained = isp(), isp(), isp()
    for hour in range(24):
        now = T0 + hour * HOUR
        for model in (good, bouncy, complained):
            model.advance(now)
        deliver(good, 20, now, engagement=0.6)
        deliver(bouncy, 20, now, invalid={0, 1}, engagement=0.6)
        deliver(complained, 20, now, engagement=0.6)
        complained.complained(complained.standing("ip1", now), 1)
    for model in (good, bouncy, complained):
        model.advance(T0 + 24 * HOUR)
    start = SETTINGS.initial_reputation
    r = {name: m.standing("ip1", T0).reputation for name, m in
         (("good", good), ("bouncy", bouncy), ("complained", complained))}
    assert r["good"] > start
    assert r["bouncy"] < r["good"] and r["complained"] < r["good"]
    assert r["complained"] < start         # one complaint per 20 messages is a spam run


def test_unengaged_mail_costs_reputation() -> None:
    model = isp()
    for hour in range(12):
        model.advance(T0 + hour * HOUR)
        deliver(model, 20, T0 + hour * HOUR, engagement=0.0)
    model.advance(T0 + 12 * HOUR)
    assert model.standing("ip1", T0).reputation < SETTINGS.initial_reputation


def test_below_the_block_floor_every_attempt_is_blocked_and_idle_time_heals() -> None:
    model = isp(block_floor=0.1, drift=0.05)
    st = model.standing("ip1", T0)
    st.reputation = 0.05
    result = deliver(model, 10, T0, connections=2)
    assert result.refusal is not None and result.refusal.outcome == "blocked"
    assert result.refusal.code == 550 and result.delivered == [] and len(result.refused) == 2
    model.advance(T0 + 48 * HOUR)
    assert st.reputation > 0.1
    assert deliver(model, 3, T0 + 48 * HOUR).refusal is None


def test_many_unknown_users_in_an_hour_make_it_defer_the_ip_for_the_rest_of_the_hour() -> None:
    model = isp(min_hourly=1000, bounce_throttle=0.1, bounce_throttle_min=20)
    result = deliver(model, 200, T0, invalid=set(range(0, 200, 3)))     # a third are dead
    assert len(result.bounced) == 20 and result.refusal is not None and result.refusal.outcome == "throttled"
    assert deliver(model, 5, T0 + 600).refusal is not None
    model.advance(T0 + HOUR)
    assert deliver(model, 5, T0 + HOUR).refusal is None


def test_a_few_unknown_users_among_many_are_taken_in_stride() -> None:
    model = isp(min_hourly=1000)
    result = deliver(model, 500, T0, invalid=set(range(0, 500, 50)))
    assert result.refusal is None and len(result.bounced) == 10 and len(result.delivered) == 490


def test_a_burst_of_complaints_within_the_hour_makes_it_defer() -> None:
    model = isp(min_hourly=1000, complaint_throttle=0.005, complaint_throttle_min=5)
    deliver(model, 400, T0)
    st = model.standing("ip1", T0)
    model.complained(st, 4)
    assert deliver(model, 5, T0 + 60).refusal is None
    model.complained(st, 1)
    assert deliver(model, 5, T0 + 120).refusal is not None


def test_late_bounces_are_accepted_first() -> None:
    model = isp(min_hourly=1000, async_bounce_share=1.0)
    result = deliver(model, 10, T0, invalid={3, 4})
    assert result.late_bounces == [3, 4] and result.bounced == [] and len(result.delivered) == 8


def test_an_isp_wide_throttle_and_a_blocklisting_answer_every_attempt() -> None:
    model = isp(uses_blocklists=True)
    model.throttling_until = T0 + HOUR
    assert deliver(model, 3, T0).refusal.outcome == "throttled"
    st = model.standing("ip1", T0)
    replies = model.replies("ip1", "192.0.2.1")
    listed = model.receive(st, replies, [1, 2], 1, [0, 0, 0], [0.5] * 3, random.Random(1), T0 + HOUR, True)
    assert listed.refusal == replies.blocklist
    ignoring = isp(uses_blocklists=False)
    st = ignoring.standing("ip1", T0)
    assert ignoring.refusal(st, ignoring.replies("ip1", "x"), T0, blocklisted=True) is None
