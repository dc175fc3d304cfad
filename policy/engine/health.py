"""Health: what the ISPs answered, counted per scope over a rolling window and per warm-up day.

Outcomes arrive as (outcome class, bounce-taxonomy reason, reply code, enhanced status); they are
sorted into a handful of health classes here, once, so every rule speaks the same words.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields
from typing import Any

from policy.engine.settings import ClassSettings

DELIVERED = "delivered"
THROTTLED = "throttled"
BLOCKED = "blocked"
HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCE = "soft_bounce"
COMPLAINT = "complaint"
AUTH = "auth"
CLASSES = (DELIVERED, THROTTLED, BLOCKED, HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, AUTH)


def classify(outcome: str, reason: str, code: int, status: str, classes: ClassSettings) -> str | None:
    """The health class of one outcome, or None for outcomes that say nothing about health."""
    outcome, reason = outcome.lower(), reason.lower()
    if outcome == DELIVERED or reason == "delivered":
        return DELIVERED
    if outcome == COMPLAINT or reason in classes.complaint:
        return COMPLAINT
    if outcome in (HARD_BOUNCE, SOFT_BOUNCE):
        # The sender already knows the class (the MTA classifies every reply): trust it rather
        # than guess from the reason name, which follows the bounce taxonomy, not policy meaning.
        return outcome
    if outcome == AUTH or reason in classes.auth or any(fnmatch.fnmatchcase(status, p) for p in classes.auth_status):
        return AUTH
    if outcome == THROTTLED or reason in classes.throttled:
        return SOFT_BOUNCE if status in classes.recipient_only_status else THROTTLED
    if outcome == BLOCKED or reason in classes.blocked:
        return BLOCKED
    permanent = code >= 500 or status.startswith("5")
    if reason in classes.hard_bounce or (reason == "notaccept" and permanent):
        return HARD_BOUNCE
    if outcome in ("bounced", "deferred", "failed", "expired") or code >= 400:
        return SOFT_BOUNCE
    return None


@dataclass(slots=True)
class Counts:
    delivered: int = 0
    throttled: int = 0
    blocked: int = 0
    hard_bounce: int = 0
    soft_bounce: int = 0
    complaint: int = 0
    auth: int = 0

    @property
    def sent(self) -> int:
        """Attempts that used a token: everything but complaints, which come after delivery."""
        return self.delivered + self.throttled + self.blocked + self.hard_bounce + self.soft_bounce + self.auth

    def add(self, cls: str, n: int) -> None:
        setattr(self, cls, getattr(self, cls) + n)

    def merge(self, other: Counts) -> None:
        for f in CLASSES:
            self.add(f, getattr(other, f))

    def rate(self, cls: str) -> float:
        """Share of `cls`: complaints per delivered message, everything else per sent message."""
        base = self.delivered if cls == COMPLAINT else self.sent
        return getattr(self, cls) / base if base else 0.0

    def to_list(self) -> list[int]:
        return [getattr(self, f) for f in CLASSES]

    @classmethod
    def from_list(cls, values: list[int]) -> Counts:
        return cls(*values)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Health:
    """Counts of one scope: rolling slots for rates, and whole warm-up days for advance decisions."""

    slots: dict[int, Counts] = field(default_factory=dict)
    days: dict[int, Counts] = field(default_factory=dict)

    def add(self, cls: str, n: int, slot: int, day: int) -> None:
        self.slots.setdefault(slot, Counts()).add(cls, n)
        self.days.setdefault(day, Counts()).add(cls, n)

    def window(self, slot: int, n_slots: int) -> Counts:
        total = Counts()
        for index, counts in self.slots.items():
            if slot - n_slots < index <= slot:
                total.merge(counts)
        return total

    def day(self, day: int) -> Counts:
        return self.days.get(day) or Counts()

    def prune(self, slot: int, n_slots: int, day: int, keep_days: int = 3) -> None:
        self.slots = {i: c for i, c in self.slots.items() if i > slot - n_slots}
        self.days = {d: c for d, c in self.days.items() if d > day - keep_days}

    def to_dict(self) -> dict[str, Any]:
        return {"slots": {str(i): c.to_list() for i, c in self.slots.items()},
                "days": {str(d): c.to_list() for d, c in self.days.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Health:
        if not d:
            return cls()
        return cls({int(i): Counts.from_list(v) for i, v in d.get("slots", {}).items()},
                   {int(i): Counts.from_list(v) for i, v in d.get("days", {}).items()})
