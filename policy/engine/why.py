"""Why a grant was refused, in words an operator can act on.

The MTA shows these next to the mail that waits (`mta queue list|show`), so that mail held back by
the warm-up is not mistaken for mail that is stuck: "waiting for warm-up: ip1 -> google, next at
14:32" rather than an old "Connection refused". Pure functions of the refusal's facts.
"""

from __future__ import annotations

import math
import time

from policy.engine.state import ANY_ISP, FOREVER, PairKey, PairState


def at(t: float, now: float) -> str:
    """A wall-clock time as the operator reads it (policyd's local time zone); the date only when
    it is not within a day."""
    if t >= FOREVER or math.isinf(t):
        return "until resumed"
    return time.strftime("%H:%M:%S" if t - now < 86400 else "%Y-%m-%d %H:%M", time.localtime(t))


def describe(key: PairKey) -> str:
    """ip1 -> google, domain news.example -> yahoo, mailbox sam@example.com, isp google."""
    if key.kind == "isp":
        return f"isp {key.name}"
    where = f"{key.name}" if key.kind == "ip" else f"{key.kind} {key.name}"
    return where if key.isp == ANY_ISP else f"{where} -> {key.isp}"


def held_back(key: PairKey, state: PairState, now: float) -> str:
    """A pair that may not send at all now: paused, or backing off."""
    if state.operator_paused:
        return f"paused by an operator: {describe(key)}, until resumed"
    if now < state.paused_until:
        rule = f" (rule {state.pause_rule})" if state.pause_rule else ""
        return f"paused{rule}: {describe(key)}, until {at(state.paused_until, now)}"
    if now < state.backoff_until:
        return f"backing off after throttling: {describe(key)}, next at {at(state.backoff_until, now)}"
    return f"held back: {describe(key)}"


def outside_window(opens: float, now: float) -> str:
    return f"outside the sending window, which opens at {at(opens, now)}"


def warmup_wait(sources: list[str], isp: str, retry_at: float, today_used_up: bool, now: float) -> str:
    """Every bucket that applies is empty for now (or for today)."""
    pairs = ", ".join(f"{s} -> {isp}" for s in sources) or f"-> {isp}"
    if today_used_up:
        return f"waiting for warm-up: today's volume is used ({pairs}), next at {at(retry_at, now)}"
    return f"waiting for warm-up: {pairs}, next at {at(retry_at, now)}"
