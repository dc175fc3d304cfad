"""Health: what the ISPs answered, counted per scope over a rolling window and per warm-up day.

Outcomes arrive as (outcome class, bounce-taxonomy reason, reply code, enhanced status); they are
sorted into a handful of health classes here, once, so every rule speaks the same words.
"""

from __future__ import annotations

import fnmatch
import math
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


def wilson_lower(events: int, trials: int, z: float) -> float:
    """Lower bound of the Wilson score interval: the least share `events / trials` is likely to be.

    A small sample says little: one complaint in 100 deliveries is a ratio of 1%, but with 95%
    confidence (z = 1.96) only "at least 0.2%"; 1 in 1,000 is "at least 0.02%". Rules compare this
    bound, not the raw ratio, with their thresholds, so they act on what the numbers prove.
    """
    if trials <= 0 or events <= 0:
        return 0.0
    p = min(1.0, events / trials)
    zz = z * z
    centre = p + zz / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + zz / (4 * trials * trials))
    return max(0.0, (centre - margin) / (1 + zz / trials))


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
        self.delivered += other.delivered
        self.throttled += other.throttled
        self.blocked += other.blocked
        self.hard_bounce += other.hard_bounce
        self.soft_bounce += other.soft_bounce
        self.complaint += other.complaint
        self.auth += other.auth

    def base(self, cls: str) -> int:
        """What a share of `cls` is taken of: delivered messages for complaints, else sent ones."""
        return self.delivered if cls == COMPLAINT else self.sent

    def rate(self, cls: str) -> float:
        """Share of `cls`: complaints per delivered message, everything else per sent message."""
        base = self.base(cls)
        return getattr(self, cls) / base if base else 0.0

    def lower(self, cls: str, z: float) -> float:
        """The Wilson lower bound of the share of `cls` (see wilson_lower)."""
        return wilson_lower(getattr(self, cls), self.base(cls), z)

    def minus(self, other: Counts) -> Counts:
        return Counts(max(0, self.delivered - other.delivered), max(0, self.throttled - other.throttled),
                      max(0, self.blocked - other.blocked), max(0, self.hard_bounce - other.hard_bounce),
                      max(0, self.soft_bounce - other.soft_bounce), max(0, self.complaint - other.complaint),
                      max(0, self.auth - other.auth))

    def copy(self) -> Counts:
        return Counts(self.delivered, self.throttled, self.blocked, self.hard_bounce, self.soft_bounce,
                      self.complaint, self.auth)

    def to_list(self) -> list[int]:
        return [self.delivered, self.throttled, self.blocked, self.hard_bounce, self.soft_bounce, self.complaint,
                self.auth]

    @classmethod
    def from_list(cls, values: list[int]) -> Counts:
        return cls(*values)

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


MAX_PARTS = 200          # culprit combinations kept per slot; the rest are summed under OTHER_PART
OTHER_PART = "~"


def part_id(tenant: str, domain: str, campaign: str, sender: str) -> str:
    """The combination of would-be culprits one message belongs to: "tenant|domain|campaign|sender"."""
    return f"{tenant}|{domain}|{campaign}|{sender}"


@dataclass
class Health:
    """Counts of one scope: rolling slots for rates, and whole warm-up days for advance decisions.

    `parts` splits each slot by the combination of tenant, sending domain, campaign and sender
    mailbox (see part_id), so a rule can tell one bad sender from trouble spread over many.
    `since` marks, per culprit ("campaign:x", "domain:y", ...), the last slot whose counts were
    already acted on: they are not judged again, neither for the culprit nor for the rest.
    """

    slots: dict[int, Counts] = field(default_factory=dict)
    days: dict[int, Counts] = field(default_factory=dict)
    parts: dict[int, dict[str, Counts]] = field(default_factory=dict)
    since: dict[str, int] = field(default_factory=dict)

    def add(self, cls: str, n: int, slot: int, day: int, part: str = "") -> None:
        self.slots.setdefault(slot, Counts()).add(cls, n)
        self.days.setdefault(day, Counts()).add(cls, n)
        if part:
            by_part = self.parts.setdefault(slot, {})
            if part not in by_part and len(by_part) >= MAX_PARTS:
                part = OTHER_PART
            by_part.setdefault(part, Counts()).add(cls, n)

    def window(self, slot: int, n_slots: int, after: int | None = None) -> Counts:
        """Counts of the last `n_slots` slots up to `slot`, and only of slots after `after` if given."""
        total = Counts()
        first = slot - n_slots if after is None else max(slot - n_slots, after)
        for index, counts in self.slots.items():
            if first < index <= slot:
                total.merge(counts)
        return total

    def part_windows(self, slot: int, n_slots: int) -> dict[str, dict[int, Counts]]:
        """Per part, its counts by slot within the window."""
        out: dict[str, dict[int, Counts]] = {}
        for index, by_part in self.parts.items():
            if slot - n_slots < index <= slot:
                for part, counts in by_part.items():
                    out.setdefault(part, {})[index] = counts
        return out

    def day(self, day: int) -> Counts:
        return self.days.get(day) or Counts()

    def prune(self, slot: int, n_slots: int, day: int, keep_days: int = 3) -> None:
        self.slots = {i: c for i, c in self.slots.items() if i > slot - n_slots}
        self.parts = {i: c for i, c in self.parts.items() if i > slot - n_slots}
        self.since = {k: v for k, v in self.since.items() if v > slot - n_slots}
        self.days = {d: c for d, c in self.days.items() if d > day - keep_days}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"slots": {str(i): c.to_list() for i, c in self.slots.items()},
                             "days": {str(d): c.to_list() for d, c in self.days.items()}}
        if self.parts:
            d["parts"] = {str(i): {p: c.to_list() for p, c in by.items()} for i, by in self.parts.items()}
        if self.since:
            d["since"] = dict(self.since)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Health:
        if not d:
            return cls()
        return cls({int(i): Counts.from_list(v) for i, v in d.get("slots", {}).items()},
                   {int(i): Counts.from_list(v) for i, v in d.get("days", {}).items()},
                   {int(i): {p: Counts.from_list(v) for p, v in by.items()} for i, by in d.get("parts", {}).items()},
                   {k: int(v) for k, v in d.get("since", {}).items()})
