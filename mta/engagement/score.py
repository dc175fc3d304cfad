"""Per-recipient engagement: a decaying score and the order in which capped mail goes out.

Pure: no I/O; times are passed in. The score adds a weight per human open (1) and click (3) and
halves every `half_life` (30 days by default), so last year's reader ranks below this month's.
Machine activity (privacy-proxy opens, link scanners) never counts.

Sending order while a warm-up cap holds mail back (what warm-up guides advise and what the
simulator's planner does): recipients who engage, most engaged first; then recipients we know
nothing about; last, recipients who have been sent mail for `inactive_after` (180 days) without
engaging once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["EngagementRecord", "EngagementRules", "activity_weight", "anchored", "current_score",
           "engaged_threshold", "from_anchored", "note_activity", "note_delivery", "send_rank"]

OPENED = "opened"
CLICKED = "clicked"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class EngagementRules:
    half_life: float = 30 * DAY
    open_weight: float = 1.0
    click_weight: float = 3.0
    engaged_score: float = 0.25         # a decayed score at or above this is "engaged"
    inactive_after: float = 180 * DAY


@dataclass(frozen=True, slots=True)
class EngagementRecord:
    recipient: str
    score: float = 0.0
    score_at: float = 0.0               # when `score` was last brought up to date
    last_open: float = 0.0
    last_click: float = 0.0
    first_delivered: float = 0.0
    last_delivered: float = 0.0
    opens: int = 0
    clicks: int = 0


EPOCH = 1767225600.0     # 2026-01-01Z: anchored scores are relative to it, so 2**(t/half_life) stays finite


def anchored(weight: float, at: float, rules: EngagementRules = EngagementRules()) -> float:
    """`weight` earned at `at`, expressed at EPOCH's scale: anchored values simply add up, so a store
    can update a score with one atomic increment (SQLite upsert, Redis HINCRBYFLOAT)."""
    return weight * math.pow(2.0, (at - EPOCH) / rules.half_life)


def from_anchored(total: float, now: float, rules: EngagementRules = EngagementRules()) -> float:
    """The score at `now` of a sum of anchored weights."""
    return total * math.pow(2.0, -(now - EPOCH) / rules.half_life) if total > 0 else 0.0


def engaged_threshold(now: float, rules: EngagementRules = EngagementRules()) -> float:
    """The anchored score at or above which a recipient counts as engaged at `now`."""
    return anchored(rules.engaged_score, now, rules)


def activity_weight(kind: str, rules: EngagementRules = EngagementRules()) -> float:
    return rules.click_weight if kind == CLICKED else rules.open_weight


def current_score(record: EngagementRecord, now: float, rules: EngagementRules = EngagementRules()) -> float:
    if record.score <= 0:
        return 0.0
    age = max(0.0, now - record.score_at)
    return record.score * math.pow(0.5, age / rules.half_life)


def note_activity(record: EngagementRecord, kind: str, now: float,
                  rules: EngagementRules = EngagementRules()) -> EngagementRecord:
    """A human open or click (machine activity must not reach here)."""
    weight = activity_weight(kind, rules)
    score = current_score(record, now, rules) + weight
    if kind == CLICKED:
        return replace(record, score=score, score_at=now, last_click=max(record.last_click, now),
                       clicks=record.clicks + 1)
    return replace(record, score=score, score_at=now, last_open=max(record.last_open, now), opens=record.opens + 1)


def note_delivery(record: EngagementRecord, now: float) -> EngagementRecord:
    return replace(record, first_delivered=record.first_delivered or now,
                   last_delivered=max(record.last_delivered, now))


ENGAGED, UNKNOWN, INACTIVE = 0, 1, 2


def send_rank(record: EngagementRecord | None, now: float,
              rules: EngagementRules = EngagementRules()) -> tuple[int, float]:
    """Sort key: lower goes first. (class, -score) with class ENGAGED, UNKNOWN or INACTIVE."""
    if record is None:
        return (UNKNOWN, 0.0)
    score = current_score(record, now, rules)
    if score >= rules.engaged_score:
        return (ENGAGED, -score)
    last_engaged = max(record.last_open, record.last_click)
    mailed_since = record.first_delivered and now - max(record.first_delivered, last_engaged) >= rules.inactive_after
    if mailed_since:
        return (INACTIVE, -score)
    return (UNKNOWN, -score)
