"""The rules, as pure functions of state, counts and an injected time: health in, actions out."""

from __future__ import annotations

import pytest

from policy.engine import rules
from policy.engine.health import (
    AUTH,
    BLOCKED,
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    THROTTLED,
    Counts,
    classify,
    wilson_lower,
)
from policy.engine.settings import ClassSettings, RuleSettings, WarmupSettings
from policy.engine.state import FOREVER, PairKey, PairState
from tests.policy.conftest import T0

R = RuleSettings()
W = WarmupSettings()
KEY = PairKey("ip", "ip1", "google")
TODAY = 20000


def counts(**kw: int) -> Counts:
    return Counts(**kw)


@pytest.mark.parametrize(("outcome", "reason", "code", "status", "cls"), [
    ("delivered", "", 250, "2.0.0", DELIVERED),
    ("deferred", "toomanyconn", 421, "4.7.28", THROTTLED),
    ("deferred", "toomanyconn", 450, "4.2.1", SOFT_BOUNCE),     # one recipient's rate, not the IP's
    ("throttled", "", 421, "4.7.0", THROTTLED),
    ("bounced", "blocked", 550, "5.7.1", BLOCKED),
    ("bounced", "userunknown", 550, "5.1.1", HARD_BOUNCE),
    ("bounced", "notaccept", 556, "5.1.10", HARD_BOUNCE),
    ("bounced", "mailboxfull", 452, "4.2.2", SOFT_BOUNCE),
    ("bounced", "securityerror", 550, "5.7.26", AUTH),
    ("bounced", "", 550, "5.7.26", AUTH),                       # Gmail's code alone is enough
    ("complaint", "feedback", 0, "", COMPLAINT),
    ("unknown", "", 0, "", None),
    # An explicit class from the MTA wins over the reason name ("access denied" is named
    # securityerror by the taxonomy but is no authentication failure of the sender's).
    ("soft_bounce", "securityerror", 550, "5.7.1", SOFT_BOUNCE),
    ("hard_bounce", "userunknown", 550, "5.1.1", HARD_BOUNCE),
    ("soft_bounce", "blocked", 451, "4.7.1", SOFT_BOUNCE),
])
def test_outcomes_are_classified_once_for_every_rule(outcome: str, reason: str, code: int, status: str,
                                                      cls: str | None) -> None:
    assert classify(outcome, reason, code, status, ClassSettings()) == cls


def test_a_throttle_halves_the_rate_and_backs_off() -> None:
    state, actions = rules.throttle(KEY, PairState(), {THROTTLED: (3, "421 4.7.28 (toomanyconn)")}, T0, TODAY, R)
    assert state.factor == 0.5 and state.backoff_until == T0 + R.throttle_backoff
    [a] = actions
    assert (a.rule, a.action, a.reply, a.expires) == ("throttle", "decrease", "421 4.7.28 (toomanyconn)",
                                                      T0 + R.throttle_backoff)
    assert "3 throttle replies" in a.reason


def test_throttles_during_the_back_off_do_not_compound() -> None:
    state, _ = rules.throttle(KEY, PairState(), {THROTTLED: (1, "")}, T0, TODAY, R)
    again, actions = rules.throttle(KEY, state, {THROTTLED: (5, "")}, T0 + 60, TODAY, R)
    assert again == state and actions == []


def test_back_to_back_throttles_double_the_back_off_and_a_clean_probe_restores_the_rate() -> None:
    state, _ = rules.throttle(KEY, PairState(), {THROTTLED: (1, "")}, T0, TODAY, R)
    t1 = state.backoff_until + 1
    state, _ = rules.throttle(KEY, state, {THROTTLED: (1, "")}, t1, TODAY, R)
    assert state.backoff_until - t1 == 2 * R.throttle_backoff
    assert state.factor == pytest.approx(0.25) and state.factor_target == 1.0
    end = state.backoff_until
    assert state.effective_factor(end + 3600, R) == pytest.approx(0.25)      # no clean reply: no recovery
    probe = end + 30
    state, actions = rules.throttle(KEY, state, {DELIVERED: (3, "")}, probe, TODAY, R)
    assert actions == [] and state.clean_since == probe
    assert state.effective_factor(probe + R.recovery_interval - 1, R) == pytest.approx(0.25)
    assert state.effective_factor(probe + R.recovery_interval, R) == pytest.approx(0.5)
    assert state.effective_factor(probe + 2 * R.recovery_interval, R) == 1.0     # back within minutes


def test_deliveries_during_the_back_off_are_no_probe() -> None:
    state, _ = rules.throttle(KEY, PairState(), {THROTTLED: (1, "")}, T0, TODAY, R)
    state, _ = rules.throttle(KEY, state, {DELIVERED: (5, "")}, T0 + 10, TODAY, R)
    assert state.clean_since == 0.0


def test_recovery_returns_to_the_factor_before_the_throttles_not_beyond() -> None:
    state = PairState(factor=0.4, factor_target=0.4)
    state, _ = rules.throttle(KEY, state, {THROTTLED: (1, "")}, T0, TODAY, R)
    assert state.factor == pytest.approx(0.2) and state.factor_target == pytest.approx(0.4)
    state, _ = rules.throttle(KEY, state, {DELIVERED: (1, "")}, state.backoff_until, TODAY, R)
    assert state.effective_factor(state.clean_since + 10 * R.recovery_interval, R) == pytest.approx(0.4)


def test_the_factor_never_falls_below_the_minimum() -> None:
    state = PairState(factor=0.06, factor_stamp=T0)
    state, _ = rules.throttle(KEY, state, {THROTTLED: (1, "")}, T0, TODAY, R)
    assert state.factor == R.min_factor


def test_a_block_pauses_for_a_cool_down_and_rolls_back() -> None:
    state, [a] = rules.block(KEY, PairState(day=5), {BLOCKED: (1, "550 5.7.1 (blocked)")}, T0, TODAY, R)
    assert state.day == 5 - R.block_rollback_days
    assert state.paused(T0 + R.block_cooldown - 1) and not state.paused(T0 + R.block_cooldown)
    assert (a.rule, a.action, a.expires) == ("block", "pause", T0 + R.block_cooldown)
    assert "day 5 -> 3" in a.reason
    again, more = rules.block(KEY, state, {BLOCKED: (1, "")}, T0 + 10, TODAY, R)
    assert more == [] and again.day == 3                     # no second roll-back in the cool-down


def test_the_wilson_lower_bound_is_what_a_sample_proves() -> None:
    assert wilson_lower(0, 100, 1.96) == 0.0
    assert wilson_lower(1, 100, 1.96) == pytest.approx(0.0018, abs=0.0002)     # 1% seen, 0.18% proven
    assert wilson_lower(100, 10000, 1.96) == pytest.approx(0.0082, abs=0.0002)
    assert wilson_lower(30, 100, 1.96) < 0.3 < wilson_lower(300, 1000, 0) + 1e-9


def test_hard_bounces_surely_over_3_percent_warn_and_over_10_percent_pause() -> None:
    window = counts(delivered=950, hard_bounce=50)            # 5%: at least 3.6%
    state, [a] = rules.rates(KEY, PairState(), window, {}, T0, TODAY, R)
    assert (a.rule, a.action) == ("hard_bounce_warning", "warn") and not state.paused(T0)
    assert "at least 3.62%" in a.reason
    _, repeated = rules.rates(KEY, state, window, {}, T0 + 60, TODAY, R)
    assert repeated == []                                     # warned once per window
    _, none = rules.rates(KEY, PairState(), counts(delivered=965, hard_bounce=35), {}, T0, TODAY, R)
    assert none == []                                         # 3.5% of 1,000 does not prove 3%
    state, [a] = rules.rates(KEY, PairState(), counts(delivered=850, hard_bounce=150), {}, T0, TODAY, R)
    assert (a.rule, a.action) == ("hard_bounce_pause", "pause") and state.paused(T0 + 1)


def test_rates_are_not_judged_on_a_small_sample() -> None:
    _, actions = rules.rates(KEY, PairState(), counts(delivered=20, hard_bounce=8), {}, T0, TODAY, R)
    assert actions == []


def test_one_complaint_is_not_a_rate() -> None:
    _, actions = rules.rates(KEY, PairState(day=4), counts(delivered=100, complaint=1), {}, T0, TODAY, R)
    assert actions == []                                      # 1% of 100, but one event proves nothing


def test_complaints_surely_over_0_1_percent_hold_and_over_0_3_percent_pause_and_roll_back() -> None:
    _, none = rules.rates(KEY, PairState(day=4), counts(delivered=1000, complaint=2), {}, T0, TODAY, R)
    assert none == []                                         # 0.2% of 1,000: not surely over 0.1%
    state, [a] = rules.rates(KEY, PairState(day=4), counts(delivered=1000, complaint=6), {}, T0, TODAY, R)
    assert (a.rule, a.action) == ("complaint_hold", "hold")
    assert state.hold_until > T0 and state.day == 4 and not state.paused(T0)
    state, [a] = rules.rates(KEY, PairState(day=4), counts(delivered=1000, complaint=12), {}, T0, TODAY, R)
    assert (a.rule, a.action) == ("complaint_pause", "pause")
    assert state.day == 4 - R.complaint_rollback_days and state.paused(T0 + 1)


def test_authentication_failures_pause_the_domain_everywhere() -> None:
    umbrella = PairKey("domain", "example.test")
    state, [a] = rules.auth_failure(umbrella, PairState(), 1, "550 5.7.26", T0, R)
    assert state.paused(T0 + 1) and a.key == "domain|example.test|*" and a.rule == "auth_failure"
    assert "SPF, DKIM and DMARC" in a.reason
    forever, [b] = rules.auth_failure(umbrella, PairState(), 1, "", T0, RuleSettings(auth_failure_pause=0.0))
    assert forever.paused_until == FOREVER and b.expires == 0.0


def test_any_complaint_pauses_an_outreach_mailbox() -> None:
    key = PairKey("mailbox", "a@outreach.test")
    state, [a] = rules.mailbox_complaint(key, PairState(), {COMPLAINT: (1, "")}, T0, R)
    assert state.paused(T0 + R.mailbox_complaint_pause - 1) and a.rule == "mailbox_complaint"


def roll(state: PairState, yesterday: Counts, volume: int = 1000, last_day: int = 10,
         now: float = T0) -> tuple[PairState, list]:
    return rules.roll_over(KEY, state, yesterday, volume, last_day, now, TODAY, R, W)


def test_a_healthy_and_mostly_used_day_advances_one_day() -> None:
    state, [a] = roll(PairState(day=3, day_checked=TODAY - 1), counts(delivered=800))
    assert state.day == 4 and state.day_checked == TODAY and a.rule == "advance"


def test_a_day_used_below_80_percent_does_not_advance() -> None:
    state, [a] = roll(PairState(day=3, day_checked=TODAY - 1), counts(delivered=799))
    assert state.day == 3 and a.rule == "hold" and "79.90%" in a.reason


def test_an_idle_day_is_neither_advanced_nor_recorded() -> None:
    state, actions = roll(PairState(day=3, day_checked=TODAY - 1), counts())
    assert state.day == 3 and actions == [] and state.day_checked == TODAY


@pytest.mark.parametrize(("state", "yesterday", "why"), [
    (PairState(day=3, day_checked=TODAY - 1, incident_day=TODAY - 1), counts(delivered=900), "not healthy"),
    (PairState(day=3, day_checked=TODAY - 1, hold_until=T0 + 10), counts(delivered=900), "held"),
    (PairState(day=3, day_checked=TODAY - 1, paused_until=T0 + 10), counts(delivered=900), "paused"),
    (PairState(day=3, day_checked=TODAY - 1), counts(delivered=860, hard_bounce=40), "hard bounces"),
    (PairState(day=3, day_checked=TODAY - 1), counts(delivered=900, complaint=5), "complaints"),
    (PairState(day=3, day_checked=TODAY - 1), counts(delivered=800, throttled=100), "throttled"),
])
def test_an_unhealthy_day_holds(state: PairState, yesterday: Counts, why: str) -> None:
    new, [a] = roll(state, yesterday)
    assert new.day == 3 and a.rule == "hold" and why in a.reason


def test_the_day_is_judged_once_per_calendar_day() -> None:
    state, _ = roll(PairState(day=3, day_checked=TODAY - 1), counts(delivered=900))
    again, actions = roll(state, counts(delivered=900))
    assert again.day == 4 and actions == []


def test_a_finished_schedule_does_not_count_further() -> None:
    state, actions = roll(PairState(day=10, day_checked=TODAY - 1), counts(delivered=1000), last_day=10)
    assert state.day == 10 and actions == []
