"""Rules: health in, actions out. Pure functions of a pair's state, its counts and the clock.

Every function returns the new state and the actions it took; an action names its rule, what it
did, why (with the numbers), the reply that caused it and when its effect ends. Rules that react
to one reply (throttle, block) fire once per back-off or cool-down, because replies to leases
granted before the action keep arriving for a while and must not compound it.

Rates (hard bounces, complaints, throttles, deliveries) are judged by their Wilson lower bound
over at least `min_sample` messages and `min_events` events, over the health window and over
the recent window, so a small sample proves little and a sudden bad list shows within the hour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from policy.engine.health import AUTH, BLOCKED, COMPLAINT, DELIVERED, HARD_BOUNCE, THROTTLED, Counts
from policy.engine.model import Action
from policy.engine.settings import RuleSettings, WarmupSettings
from policy.engine.state import FOREVER, PairKey, PairState

Observed = dict[str, tuple[int, str]]    # health class -> (count in this batch, an example reply)
Windows = list[tuple[str, Counts]]       # (label, counts): the health window and the recent one

_NOUNS = {HARD_BOUNCE: ("hard bounces", "sent"), COMPLAINT: ("complaints", "delivered"),
          THROTTLED: ("throttles", "sent"), BLOCKED: ("blocks", "sent")}


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _duration(seconds: float) -> str:
    if seconds >= FOREVER:
        return "until resumed"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Judged:
    """A rate judged over one window: its lower bound and the evidence in words."""

    lower: float
    evidence: str


def too_small_to_judge(counts: Counts, cls: str, rules: RuleSettings) -> bool:
    """Too little mail or too few events of `cls` for a rate rule to judge (see `judge`)."""
    return counts.base(cls) < rules.min_sample or getattr(counts, cls) < rules.min_events


def judge(windows: Windows, cls: str, rules: RuleSettings) -> Judged | None:
    """The window (of those with enough mail) whose rate of `cls` is surely highest; None if none
    has enough mail and events to be judged at all."""
    best: Judged | None = None
    noun, per = _NOUNS[cls]
    for label, counts in windows:
        if too_small_to_judge(counts, cls, rules):
            continue
        events, base = getattr(counts, cls), counts.base(cls)
        lower = counts.lower(cls, rules.confidence_z)
        if best is None or lower > best.lower:
            best = Judged(lower, f"{noun} {events} of {base} {per} in {label} ({_pct(events / base)}, "
                                 f"at least {_pct(lower)})")
    return best


def throttle(key: PairKey, state: PairState, observed: Observed, now: float, today: int,
             rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Throttle replies: multiply the rate down and back off. Recovery (see PairState) starts with
    the first clean delivery after the back-off and returns to the factor before the throttles."""
    count, reply = observed.get(THROTTLED, (0, ""))
    if count <= 0:
        delivered = observed.get(DELIVERED, (0, ""))[0]
        if delivered and state.factor < 1.0 and not state.clean_since and now >= state.backoff_until:
            return replace(state, clean_since=now), []
        return state, []
    if now < state.backoff_until:
        return (replace(state, clean_since=0.0), []) if state.clean_since else (state, [])
    new_episode = now - state.backoff_until > rules.throttle_backoff_max
    level = 0 if new_episode else state.backoff_level
    backoff = min(rules.throttle_backoff_max, rules.throttle_backoff * 2**level)
    before = state.effective_factor(now, rules)
    target = before if new_episode else max(state.factor_target, before)
    after = max(rules.min_factor, before * rules.throttle_decrease)
    new = replace(state, factor=after, factor_stamp=now, factor_target=target, clean_since=0.0,
                  backoff_until=now + backoff, backoff_level=level + 1)
    reason = (f"{count} throttle replies; rate x{after:.2f} (was x{before:.2f}), back off {_duration(backoff)}, "
              f"then probe and return to x{target:.2f} once replies are clean")
    return new, [Action(now, str(key), "throttle", "decrease", reason, reply, now + backoff)]


def block(key: PairKey, state: PairState, observed: Observed, now: float, today: int,
          rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """Block replies: pause for a cool-down and roll the warm-up back."""
    count, reply = observed.get(BLOCKED, (0, ""))
    if count <= 0 or now < state.paused_until:
        return state, []
    until = now + rules.block_cooldown
    day = max(0, state.day - rules.block_rollback_days)
    new = replace(state, paused_until=until, pause_rule="block", day=day, incident_day=today, judged_after=now)
    reason = (f"{count} block replies; pause {_duration(rules.block_cooldown)}, "
              f"warm-up day {state.day} -> {day}")
    return new, [Action(now, str(key), "block", "pause", reason, reply, until)]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rate rule decided about a culprit (or a pair): applied to its state by `apply`."""

    key: PairKey
    rule: str            # hard_bounce_pause, hard_bounce_warning, complaint_pause, complaint_hold
    reason: str
    reply: str = ""


def verdicts(key: PairKey, windows: Windows, observed: Observed, rules: RuleSettings,
             what: str = "") -> list[Verdict]:
    """The rate rules' verdicts on one scope's counts (the strongest per class)."""
    found = []
    hard = judge(windows, HARD_BOUNCE, rules)
    reply = observed.get(HARD_BOUNCE, (0, ""))[1]
    if hard is not None and hard.lower > rules.hard_bounce_pause:
        found.append(Verdict(key, "hard_bounce_pause", f"{what}{hard.evidence} > {_pct(rules.hard_bounce_pause)}; "
                                                       "clean the list", reply))
    elif hard is not None and hard.lower > rules.hard_bounce_warn:
        found.append(Verdict(key, "hard_bounce_warning", f"{what}{hard.evidence} > {_pct(rules.hard_bounce_warn)}",
                             reply))
    compl = judge(windows[:1], COMPLAINT, rules)   # complaints come hours after their deliveries:
    # judged over the whole health window only, never as recent complaints over recent deliveries
    reply = observed.get(COMPLAINT, (0, ""))[1]
    if compl is not None and compl.lower > rules.complaint_pause:
        found.append(Verdict(key, "complaint_pause", f"{what}{compl.evidence} > {_pct(rules.complaint_pause)}",
                             reply))
    elif compl is not None and compl.lower > rules.complaint_hold:
        found.append(Verdict(key, "complaint_hold", f"{what}{compl.evidence} > {_pct(rules.complaint_hold)}",
                             reply))
    return found


PAUSES = ("hard_bounce_pause", "complaint_pause")


def level_of(rule: str, rules: RuleSettings) -> tuple[str, float]:
    """The health class a rate rule judges and the level over which it acts."""
    return {"hard_bounce_pause": (HARD_BOUNCE, rules.hard_bounce_pause),
            "hard_bounce_warning": (HARD_BOUNCE, rules.hard_bounce_warn),
            "complaint_pause": (COMPLAINT, rules.complaint_pause),
            "complaint_hold": (COMPLAINT, rules.complaint_hold)}[rule]


def rates(key: PairKey, state: PairState, windows: Windows | Counts, observed: Observed, now: float,
          today: int, rules: RuleSettings, what: str = "") -> tuple[PairState, list[Action]]:
    """Hard-bounce and complaint rates of a pair (or culprit) judged and acted on."""
    if isinstance(windows, Counts):
        windows = [(_duration(rules.health_window), windows)]
    actions: list[Action] = []
    for verdict in verdicts(key, windows, observed, rules, what):
        state, a = apply(verdict, state, now, today, rules)
        actions += a
    return state, actions


def apply(verdict: Verdict, state: PairState, now: float, today: int, rules: RuleSettings,
          rollback: bool = True) -> tuple[PairState, list[Action]]:
    """A verdict on a pair or culprit: pause (complaints also roll a warm-up back when `rollback`),
    hold, or warn; once per cool-down, hold or warning period."""
    key, rule = str(verdict.key), verdict.rule
    if rule == "hard_bounce_pause" and now >= state.paused_until:
        until = now + rules.hard_bounce_cooldown
        new = replace(state, paused_until=until, pause_rule=rule, incident_day=today, judged_after=now)
        return new, [Action(now, key, rule, "pause", f"{verdict.reason}; pause {_duration(until - now)}",
                            verdict.reply, until)]
    if rule == "complaint_pause" and now >= state.paused_until:
        until = now + rules.complaint_cooldown
        day = max(0, state.day - rules.complaint_rollback_days) if rollback else state.day
        new = replace(state, paused_until=until, pause_rule=rule, day=day, hold_until=max(state.hold_until, until),
                      incident_day=today, judged_after=now)
        back = f", warm-up day {state.day} -> {day}" if day != state.day else ""
        return new, [Action(now, key, rule, "pause", f"{verdict.reason}; pause {_duration(until - now)}{back}",
                            verdict.reply, until)]
    if rule == "complaint_hold" and now >= state.hold_until and now >= state.paused_until:
        until = now + rules.health_window
        new = replace(state, hold_until=until, incident_day=today)
        return new, [Action(now, key, rule, "hold", f"{verdict.reason}; no advance", verdict.reply, until)]
    if rule == "hard_bounce_warning" and now >= state.warned_until and now >= state.paused_until:
        until = now + rules.health_window
        return replace(state, warned_until=until), [Action(now, key, rule, "warn", verdict.reason, verdict.reply,
                                                           until)]
    return state, []


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


def observe(key: PairKey, state: PairState, windows: Windows, observed: Observed, now: float, today: int,
            rules: RuleSettings) -> tuple[PairState, list[Action]]:
    """All rules that react to feedback on one pair, in order of severity. `windows` hold the
    pair's mail that no culprit explains (see Policy.assess): the trouble spread over its senders."""
    actions: list[Action] = []
    if observed.get(DELIVERED, (0, ""))[0] + sum(n for c, (n, _r) in observed.items() if c != COMPLAINT) > 0 \
            and state.last_sent_day < today:
        state = replace(state, last_sent_day=today)
    if key.kind == "ip":
        state, a = block(key, state, observed, now, today, rules)
        actions += a
        state, a = throttle(key, state, observed, now, today, rules)
        actions += a
    if key.kind in ("ip", "domain"):
        what = "spread over the IP's senders, not one sender's: " if key.kind == "ip" else "the domain's own mail: "
        state, a = rates(key, state, windows, observed, now, today, rules, what)
        actions += a
    if key.kind == "mailbox":
        state, a = mailbox_complaint(key, state, observed, now, rules)
        actions += a
    return state, actions


def roll_over(key: PairKey, state: PairState, yesterday: Counts, volume: int, last_day: int, now: float,
              today: int, rules: RuleSettings, warmup: WarmupSettings,
              day_length: float = 86400.0) -> tuple[PairState, list[Action]]:
    """At the first look in a new calendar day: advance one warm-up day if yesterday earned it.

    Yesterday earned it when it was healthy (no adverse action; bounce, complaint and throttle
    rates surely under their levels), the pair is not paused or held, at least
    `advance_min_usage` of the day's volume was sent, at least `advance_min_delivered` of it
    accepted, and enough of it to judge by. A pair that sent nothing for `rewarm_after` steps
    back `rewarm_rollback_days`. A kept day is recorded when the reason changes, not every day.
    """
    if state.day_checked >= today:
        return state, []
    checked = replace(state, day_checked=today)
    if state.day_checked < 0:
        return checked, []
    idle_days = today - state.last_sent_day - 1 if state.last_sent_day >= 0 else -1
    if idle_days * day_length >= warmup.rewarm_after > 0 and state.day > 0:
        day = max(0, state.day - warmup.rewarm_rollback_days)
        new = replace(checked, day=day, last_sent_day=today - 1, kept="")
        return new, [Action(now, str(key), "rewarm", "rollback",
                            f"sent nothing for {idle_days} days (>= {_duration(warmup.rewarm_after)}); "
                            f"warm-up day {state.day} -> {day}")]
    usage = yesterday.sent / volume if volume > 0 else 0.0
    needed = max(1, min(rules.min_sample, int(warmup.advance_min_usage * volume)))
    z = rules.confidence_z
    kept, why_not = "", ""
    if state.paused(now):
        kept, why_not = "paused", "paused"
    elif now < state.hold_until:
        kept, why_not = "held", "held (complaints)"
    elif state.incident_day >= today - 1:
        kept, why_not = "incident", "yesterday was not healthy (see the previous actions)"
    elif yesterday.sent < needed:
        kept, why_not = "sample", f"{yesterday.sent} sent, {needed} needed to judge the day"
    elif yesterday.lower(HARD_BOUNCE, z) > rules.hard_bounce_warn:
        kept, why_not = "bounces", f"hard bounces at least {_pct(yesterday.lower(HARD_BOUNCE, z))} yesterday"
    elif yesterday.lower(COMPLAINT, z) > rules.complaint_hold:
        kept, why_not = "complaints", f"complaints at least {_pct(yesterday.lower(COMPLAINT, z))} yesterday"
    elif yesterday.rate(AUTH) > 0 and key.kind == "domain":
        kept, why_not = "auth", "authentication failures yesterday"
    elif yesterday.lower(THROTTLED, z) > rules.healthy_max_throttle_rate:
        kept, why_not = "throttled", f"throttled at least {_pct(yesterday.lower(THROTTLED, z))} of sent yesterday"
    elif yesterday.delivered < warmup.advance_min_delivered * yesterday.sent:
        kept, why_not = "delivered", (f"delivered {_pct(yesterday.delivered / yesterday.sent)} of sent < "
                                      f"{_pct(warmup.advance_min_delivered)}")
    elif usage < warmup.advance_min_usage:
        kept, why_not = "usage", f"used {_pct(usage)} of {volume} < {_pct(warmup.advance_min_usage)}"
    if why_not:
        if yesterday.sent == 0 and not state.paused(now):
            return checked, []
        if kept == state.kept:
            return replace(checked, kept=kept), []
        return replace(checked, kept=kept), [
            Action(now, str(key), "hold", "hold", f"day {state.day} kept: {why_not} (recorded again when the "
                                                  "reason changes)")]
    if state.day >= last_day:
        return replace(checked, kept=""), []
    advanced = replace(checked, day=state.day + 1, kept="")
    return advanced, [Action(now, str(key), "advance", "advance",
                             f"day {state.day} -> {state.day + 1}: used {_pct(usage)} of {volume}, "
                             f"delivered {_pct(yesterday.delivered / yesterday.sent)}, healthy")]
