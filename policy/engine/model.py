"""Actions: the engine's decisions as plain data. What flows in and out with the MTA (grant asks,
grants, feedback) is the protocol's: warmup_base.policy_protocol.model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Action:
    """One decision, automatic or an operator's, kept in the history with why it was taken."""

    at: float
    key: str            # the pair or culprit it applies to, "kind|name|isp" (see state.PairKey)
    rule: str           # throttle, block, hard_bounce_warning, complaint_hold, advance, operator, ...
    action: str         # decrease, pause, rollback, hold, advance, warn, resume, set_day
    reason: str         # what was seen, with the numbers
    reply: str = ""     # the ISP reply that caused it, if any
    expires: float = 0.0  # when its effect ends; 0 = it has no end of its own

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Action:
        return cls(**d)
