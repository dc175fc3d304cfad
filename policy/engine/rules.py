"""Rules: health in, actions out. Pure functions of a pair's state, its counts and the clock.

Every function returns the new state and the actions it took; an action names its rule, what it
did, why (with the numbers), the reply that caused it and when its effect ends. Rules that react
to one reply (throttle, block) fire once per back-off or cool-down, because replies to leases
granted before the action keep arriving for a while and must not compound it.
"""

from __future__ import annotations

from dataclasses import replace

from policy.engine.health import AUTH, BLOCKED, COMPLAINT, HARD_BOUNCE, THROTTLED, Counts
from policy.engine.model import Action
from policy.engine.settings import RuleSettings, WarmupSettings
from policy.engine.state import FOREVER, PairKey, PairState

Observed = dict[str, tuple[int, str]]    # health class -> (count in this batch, an example reply)


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _duration(seconds: float) -> str:
    if seconds >= FOREVER:
        return "until resumed"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def throttle(key: PairKey, state: PairState, observed: Observed, now: float, today: int,
             rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Throttle replies: multiply the rate down and back off; recovery is additive (see PairState)."""
    count, reply = observed.get(THROTTLED, (0, ""))
    if count <= 0 or now < state.backoff_until:
        return state, []
    level = 0 if now - state.backoff_until > rules.throttle_backoff_max else state.backoff_level
    backoff = min(rules.throttle_backoff_max, rules.throttle_backoff * 2**level)
    before = state.effective_factor(now, rules)
    after = max(rules.min_factor, before * rules.throttle_decrease)
    new = replace(state, factor=after, factor_stamp=now, backoff_until=now + backoff,
                  backoff_level=level + 1, incident_day=today)
    reason = f"{count} throttle replies; rate x{after:.2f} (was x{before:.2f}), back off {_duration(backoff)}"
    return new, [Action(now, str(key), "throttle", "decrease", reason, reply, now + backoff)]


def block(key: PairKey, state: PairState, observed: Observed, now: float, today: int,
          rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Block replies: pause for a cool-down and roll the warm-up back."""
    count, reply = observed.get(BLOCKED, (0, ""))
    if count <= 0 or now < state.paused_until:
        return state, []
    until = now + rules.block_cooldown
    day = max(0, state.day - rules.block_rollback_days)
    new = replace(state, paused_until=until, pause_rule="block", day=day, incident_day=today)
    reason = (f"{count} block replies; pause {_duration(rules.block_cooldown)}, "
              f"warm-up day {state.day} -> {day}")
    return new, [Action(now, str(key), "block", "pause", reason, reply, until)]


def rates(key: PairKey, state: PairState, window: Counts, observed: Observed, now: float, today: int,
          rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Hard-bounce and complaint rates over the health window, judged on enough mail only."""
    actions: list[Action] = []
    if window.sent >= rules.min_sample and now >= state.paused_until:
        hard = window.rate(HARD_BOUNCE)
        reply = observed.get(HARD_BOUNCE, (0, ""))[1]
        if hard > rules.hard_bounce_pause:
            until = now + rules.hard_bounce_cooldown
            state = replace(state, paused_until=until, pause_rule="hard_bounce_pause", incident_day=today)
            actions.append(Action(now, str(key), "hard_bounce_pause", "pause",
                                  f"hard bounces {_pct(hard)} of {window.sent} sent > "
                                  f"{_pct(rules.hard_bounce_pause)}; clean the list", reply, until))
        elif hard > rules.hard_bounce_warn and now >= state.warned_until:
            state = replace(state, warned_until=now + rules.health_window)
            actions.append(Action(now, str(key), "hard_bounce_warning", "warn",
                                  f"hard bounces {_pct(hard)} of {window.sent} sent > "
                                  f"{_pct(rules.hard_bounce_warn)}", reply, now + rules.health_window))
    if window.delivered >= rules.min_sample and now >= state.paused_until:
        rate = window.rate(COMPLAINT)
        reply = observed.get(COMPLAINT, (0, ""))[1]
        if rate > rules.complaint_pause:
            until = now + rules.complaint_cooldown
            day = max(0, state.day - rules.complaint_rollback_days)
            state = replace(state, paused_until=until, pause_rule="complaint_pause", day=day,
                            hold_until=max(state.hold_until, until), incident_day=today)
            actions.append(Action(now, str(key), "complaint_pause", "pause",
                                  f"complaints {_pct(rate)} of {window.delivered} delivered > "
                                  f"{_pct(rules.complaint_pause)}; warm-up day -> {day}", reply, until))
        elif rate > rules.complaint_hold and now >= state.hold_until:
            until = now + rules.health_window
            state = replace(state, hold_until=until, incident_day=today)
            actions.append(Action(now, str(key), "complaint_hold", "hold",
                                  f"complaints {_pct(rate)} of {window.delivered} delivered > "
                                  f"{_pct(rules.complaint_hold)}; no advance", reply, until))
    return state, actions


def auth_failure(umbrella: PairKey, state: PairState, failures: int, reply: str, now: float,
                 rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Authentication failures pause the sending domain on every ISP: more volume will not help."""
    if failures < rules.auth_failure_min or state.paused(now):
        return state, []
    until = now + rules.auth_failure_pause if rules.auth_failure_pause > 0 else FOREVER
    new = replace(state, paused_until=until, pause_rule="auth_failure")
    reason = (f"{failures} authentication failures; check SPF, DKIM and DMARC of the domain; "
              f"pause {_duration(until - now)}")
    return new, [Action(now, str(umbrella), "auth_failure", "pause", reason, reply,
                        until if until < FOREVER else 0.0)]


def mailbox_complaint(key: PairKey, state: PairState, observed: Observed, now: float,
                      rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Outreach mailboxes: any complaint pauses the mailbox."""
    count, reply = observed.get(COMPLAINT, (0, ""))
    if count <= 0 or rules.mailbox_complaint_pause <= 0 or now < state.paused_until:
        return state, []
    until = now + rules.mailbox_complaint_pause
    new = replace(state, paused_until=until, pause_rule="mailbox_complaint")
    return new, [Action(now, str(key), "mailbox_complaint", "pause",
                        f"{count} complaints; pause {_duration(rules.mailbox_complaint_pause)}", reply, until)]


def observe(key: PairKey, state: PairState, window: Counts, observed: Observed, now: float, today: int,
            rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """All rules that react to feedback on one pair, in order of severity."""
    actions: list[Action] = []
    if key.kind == "ip":
        state, a = block(key, state, observed, now, today, rules)
        actions += a
        state, a = throttle(key, state, observed, now, today, rules)
        actions += a
    if key.kind in ("ip", "domain"):
        state, a = rates(key, state, window, observed, now, today, rules)
        actions += a
    if key.kind == "mailbox":
        state, a = mailbox_complaint(key, state, observed, now, rules)
        actions += a
    return state, actions


def roll_over(key: PairKey, state: PairState, yesterday: Counts, volume: int, last_day: int, now: float,
              today: int, rules: RuleSettings, warmup: WarmupSettings) -> tuple[PairState, list[Action]]:
    """At the first look in a new calendar day: advance one warm-up day if yesterday earned it.

    Yesterday earned it when it was healthy (no adverse action, rates under the warning levels,
    few throttles), the pair is not paused or held, and at least `advance_min_usage` of the
    day's volume was sent. Idle days are not recorded: a pair nobody sends over just waits.
    """
    if state.day_checked >= today:
        return state, []
    checked = replace(state, day_checked=today)
    if state.day_checked < 0:
        return checked, []
    usage = yesterday.sent / volume if volume > 0 else 0.0
    why_not = ""
    if state.paused(now):
        why_not = "paused"
    elif now < state.hold_until:
        why_not = "held (complaints)"
    elif state.incident_day >= today - 1:
        why_not = "yesterday was not healthy (see previous actions)"
    elif yesterday.rate(HARD_BOUNCE) > rules.hard_bounce_warn:
        why_not = f"hard bounces {_pct(yesterday.rate(HARD_BOUNCE))} yesterday"
    elif yesterday.rate(COMPLAINT) > rules.complaint_hold:
        why_not = f"complaints {_pct(yesterday.rate(COMPLAINT))} yesterday"
    elif yesterday.rate(AUTH) > 0 and key.kind == "domain":
        why_not = "authentication failures yesterday"
    elif yesterday.rate(THROTTLED) > rules.healthy_max_throttle_rate:
        why_not = f"throttled {_pct(yesterday.rate(THROTTLED))} yesterday"
    elif usage < warmup.advance_min_usage:
        why_not = f"used {_pct(usage)} of {volume} < {_pct(warmup.advance_min_usage)}"
    if why_not:
        if yesterday.sent == 0 and not state.paused(now):
            return checked, []
        return checked, [Action(now, str(key), "hold", "hold", f"day {state.day} kept: {why_not}")]
    if state.day >= last_day:
        return checked, []
    advanced = replace(checked, day=state.day + 1)
    return advanced, [Action(now, str(key), "advance", "advance",
                             f"day {state.day} -> {state.day + 1}: used {_pct(usage)} of {volume}, healthy")]
