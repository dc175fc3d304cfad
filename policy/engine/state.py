"""Per-pair warm-up state: warm-up day, AIMD factor, back-off, pauses and holds.

A *pair* is what a schedule and health apply to: (source IP, ISP), (sending domain, ISP) or a
sender mailbox. Umbrella pairs with ISP "*" carry only pauses: an operator's pause of a source on
every ISP, an ISP-wide pause, or a sending domain paused for failing authentication.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from policy.engine.settings import RuleSettings

IP = "ip"
DOMAIN = "domain"
MAILBOX = "mailbox"
ISP = "isp"
# Culprits without a warm-up schedule of their own: pauses only, per ISP
TENANT = "tenant"
CAMPAIGN = "campaign"
SENDER = "sender"        # a sender mailbox (envelope sender), with or without a mailbox schedule
KINDS = (IP, DOMAIN, MAILBOX, ISP, TENANT, CAMPAIGN, SENDER)
ANY_ISP = "*"
FOREVER = float(2**53)   # "until an operator resumes"; a finite number keeps JSON plain


class PairKey(NamedTuple):
    """Which pair: ("ip", source, isp), ("domain", domain, isp), ("mailbox", address, "*") or
    ("isp", isp, "*"). A named tuple, because it is hashed thousands of times per grant batch."""

    kind: str
    name: str
    isp: str = ANY_ISP

    def __str__(self) -> str:
        return f"{self.kind}|{self.name}|{self.isp}"

    @classmethod
    def parse(cls, text: str) -> PairKey:
        kind, name, isp = text.split("|")
        return cls(kind, name, isp)

    @property
    def umbrella(self) -> PairKey:
        """The all-ISPs pair of the same source, domain or mailbox."""
        return PairKey(self.kind, self.name, ANY_ISP)


@dataclass
class PairState:
    day: int = 0                  # warm-up day (index into the schedule)
    day_checked: int = -1         # calendar day of the last advance/hold decision
    factor: float = 1.0           # multiplicative decrease after throttles, at factor_stamp
    factor_stamp: float = 0.0
    factor_target: float = 1.0    # the factor before the throttles: recovery returns to it
    clean_since: float = 0.0      # first clean delivery after the back-off (the probe); 0 = none yet
    backoff_until: float = 0.0
    backoff_level: int = 0        # consecutive back-offs; each doubles the next
    paused_until: float = 0.0     # automatic cool-down
    pause_rule: str = ""
    operator_paused: bool = False  # an operator's pause: ends only by resume
    hold_until: float = 0.0       # no advance before this (complaint hold)
    warned_until: float = 0.0     # a hard-bounce warning was recorded; not repeated before this
    incident_day: int = -1        # calendar day of the last adverse action: that day was not healthy
    judged_after: float = 0.0     # rates count only mail after this (the last pause for them)
    kept: str = ""                # why the day was last kept (a hold is recorded when this changes)
    last_sent_day: int = -1       # calendar day the pair last sent (for re-warming)

    def effective_factor(self, now: float, rules: RuleSettings) -> float:
        """The factor with recovery: once a probe after the back-off came back clean, it doubles
        every recovery_interval until it is where it was before the throttles."""
        if self.factor >= 1.0:
            return 1.0
        if self.clean_since <= 0 or now < self.clean_since or rules.recovery_interval <= 0:
            return self.factor
        steps = min(64, math.floor((now - self.clean_since) / rules.recovery_interval))
        return min(max(self.factor, self.factor_target), 1.0, self.factor * 2.0 ** steps)

    def paused(self, now: float) -> bool:
        return self.operator_paused or now < self.paused_until

    def blocked_until(self, now: float) -> float:
        """When this pair may send again (`now` if it may), FOREVER for an operator's pause."""
        if self.operator_paused:
            return FOREVER
        return max(now, self.paused_until, self.backoff_until)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairState:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})
