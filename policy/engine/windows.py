"""Health windows in slots: the clock the policy judges rates by.

A pair's health is kept in slots of `health_window / health_slots` seconds; the health window
is the last `health_slots` of them and the recent window the last `recent_window` seconds'
worth, the current slot included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from policy.engine import rules
from policy.engine.health import Counts
from policy.engine.settings import RuleSettings
from policy.engine.state import PairState


class HealthWindows:
    def __init__(self, settings: RuleSettings) -> None:
        self.rules = settings
        self.slot_seconds = settings.health_window / max(1, settings.health_slots)
        self.recent_slots = min(settings.health_slots, max(1, math.ceil(settings.recent_window / self.slot_seconds)))
        self.window_label = rules._duration(settings.health_window)
        self.recent_label = f"the last {rules._duration(self.recent_slots * self.slot_seconds)}"

    def slot(self, now: float) -> int:
        return math.floor(now / self.slot_seconds)

    def labelled(self, full: Counts, recent: Counts) -> rules.Windows:
        return [(self.window_label, full), (self.recent_label, recent)]

    def of_rest(self, state: PairState, rest: Mapping[int, Counts], now: float) -> rules.Windows:
        """The health window and the recent window of `rest` (slot -> counts), counting only mail
        after the pair's last pause for rates (state.judged_after)."""
        slot = self.slot(now)
        after = self.slot(state.judged_after) if state.judged_after else -1
        full, recent = Counts(), Counts()
        for s, counts in rest.items():
            if s <= after or s <= slot - self.rules.health_slots:
                continue
            full.merge(counts)
            if s > slot - self.recent_slots:
                recent.merge(counts)
        return self.labelled(full, recent)
