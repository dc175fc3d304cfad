"""What happened, counted: per day and ISP, per hour and ISP, per campaign, and the run's summary.

Counts are the simulator's ground truth (it knows which address was invalid and who complained),
not policyd's view: Gmail reports no complaints to the sender, but they happen all the same and
are counted here. A message is counted on the day it was attempted; a complaint on the day it
arrives. `sent` counts attempts (a retried message counts once per attempt), so
delivered / sent is deliverability as the MTA sees it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("sent", "delivered", "deferred", "bounced", "throttled", "blocked", "complaints", "unsent")


@dataclass(slots=True)
class Tally:
    sent: int = 0          # attempts
    delivered: int = 0
    deferred: int = 0      # temporary failures (throttles, temporary blocks), retried later
    bounced: int = 0       # permanent failures: unknown users (also when bounced later by DSN), blocks, expiry
    throttled: int = 0     # throttle replies (included in deferred)
    blocked: int = 0       # block replies (in deferred or bounced, by their code)
    complaints: int = 0
    unsent: int = 0        # queued for the day's campaign, never sent: policy limits held them back

    def add(self, other: Tally) -> None:
        for name in COLUMNS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class DayRecord:
    day: int                                     # 1 = the first simulated day
    by_isp: dict[str, Tally]
    warmup_day: dict[str, int] = field(default_factory=dict)     # lowest (IP, ISP) warm-up day
    reputation: dict[str, float] = field(default_factory=dict)   # the modelled ISP's mean opinion of the IPs
    actions: dict[str, Counter[str]] = field(default_factory=dict)  # ISP ("*" = all) -> rule -> count

    def total(self) -> Tally:
        t = Tally()
        for tally in self.by_isp.values():
            t.add(tally)
        return t


@dataclass
class Campaign:
    """One day's planned mail of a newsletter or outreach stream: how much of it went out."""

    stream: str
    day: int
    queued: int
    withdrawn: int = -1        # -1 while it is still being sent
    demand_met: bool = True    # False when an outreach pool ran dry (less planned than wanted)

    @property
    def complete(self) -> bool:
        return self.queued > 0 and self.withdrawn == 0 and self.demand_met


@dataclass
class RecordedAction:
    at: float
    day: int
    key: str
    isp: str
    rule: str
    action: str
    reason: str
    reply: str


@dataclass
class IncidentMark:
    kind: str
    start: float
    end: float
    day: int
    label: str


@dataclass
class SimResult:
    scenario: str
    isps: list[str]
    start: float                                   # epoch of day 1
    day_length: float
    days: list[DayRecord] = field(default_factory=list)
    hourly: dict[str, list[int]] = field(default_factory=dict)           # ISP -> attempts per hour
    hourly_throttled: dict[str, list[int]] = field(default_factory=dict)
    campaigns: list[Campaign] = field(default_factory=list)
    actions: list[RecordedAction] = field(default_factory=list)
    incidents: list[IncidentMark] = field(default_factory=list)
    mailbox_sent: dict[str, list[int]] = field(default_factory=dict)     # mailbox -> attempts per day
    mailbox_day: dict[str, list[int]] = field(default_factory=dict)      # mailbox -> warm-up day per day
    audience_size: int = 0
    active_at_end: int = 0
    seconds: float = 0.0

    def days_to_full_volume(self) -> int | None:
        """First day on which every planned campaign went out in full (the whole active audience)."""
        by_day: dict[int, list[Campaign]] = {}
        for c in self.campaigns:
            by_day.setdefault(c.day, []).append(c)
        for day in sorted(by_day):
            if all(c.complete for c in by_day[day]):
                return day
        return None

    def throttle_loss(self) -> list[dict[str, Any]]:
        """Per ISP-wide throttle: the share of that ISP's day it cost, as deliveries that day
        against the day before (1 - today / yesterday; 0 when the day delivered as much)."""
        out = []
        for mark in self.incidents:
            if mark.kind != "isp_throttle" or not 2 <= mark.day <= len(self.days):
                continue
            isp = mark.label.split(" ", 1)[0]
            before = self.days[mark.day - 2].by_isp.get(isp)
            today = self.days[mark.day - 1].by_isp.get(isp)
            if before is None or today is None or not before.delivered:
                continue
            lost = max(0.0, 1.0 - today.delivered / before.delivered)
            out.append({"isp": isp, "day": mark.day, "delivered": today.delivered,
                        "delivered_day_before": before.delivered, "lost_share": round(lost, 4)})
        return out

    def summary(self) -> dict[str, Any]:
        totals = Tally()
        for d in self.days:
            totals.add(d.total())
        rates = [d.total().complaints / d.total().delivered for d in self.days if d.total().delivered]
        full = self.days_to_full_volume()
        return {
            "scenario": self.scenario,
            "days": len(self.days),
            "audience": self.audience_size,
            "days_to_full_volume": full,
            "delivered_ratio": round(totals.delivered / totals.sent, 6) if totals.sent else None,
            "peak_complaint_rate": round(max(rates), 6) if rates else 0.0,
            "actions": dict(sorted(Counter(a.rule for a in self.actions).items())),
            "sent_per_day": [d.total().sent for d in self.days],
            "delivered_per_day": [d.total().delivered for d in self.days],
            "sent": totals.sent, "delivered": totals.delivered, "deferred": totals.deferred,
            "bounced": totals.bounced, "complaints": totals.complaints,
            "full_volume_sent": self.days[full - 1].total().sent if full else None,
            "active_recipients_at_end": self.active_at_end,
            "incidents": [{"kind": m.kind, "day": m.day, "label": m.label} for m in self.incidents],
            "throttle_loss": self.throttle_loss(),
            "seconds": round(self.seconds, 2),
        }
