"""Operator overrides: pause, resume and set-day. Pure, recorded like automatic actions.

Overrides live in the pair state, which the store keeps, so they survive restarts.
"""

from __future__ import annotations

from dataclasses import replace

from policy.engine.model import Action
from policy.engine.state import PairKey, PairState


def pause(key: PairKey, state: PairState, now: float, duration: float = 0.0,
          reason: str = "") -> tuple[PairState, Action]:
    """Pause until resumed, or for `duration` seconds when one is given."""
    why = reason or "operator pause"
    if duration > 0:
        until = now + duration
        new = replace(state, paused_until=max(state.paused_until, until), pause_rule="operator")
        return new, Action(now, str(key), "operator", "pause", why, "", until)
    return replace(state, operator_paused=True), Action(now, str(key), "operator", "pause", why)


def resume(key: PairKey, state: PairState, now: float, reason: str = "") -> tuple[PairState, Action]:
    """Ends every pause and back-off of the pair, automatic ones included; keeps day and factor."""
    new = replace(state, operator_paused=False, paused_until=0.0, pause_rule="", backoff_until=0.0,
                  backoff_level=0)
    return new, Action(now, str(key), "operator", "resume", reason or "operator resume")


def set_day(key: PairKey, state: PairState, day: int, now: float, reason: str = "") -> tuple[PairState, Action]:
    if day < 0:
        raise ValueError("a warm-up day is 0 or more")
    new = replace(state, day=day)
    return new, Action(now, str(key), "operator", "set_day", reason or f"warm-up day {state.day} -> {day}")
