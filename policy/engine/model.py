"""Plain data that flows into and out of the engine: grant asks, grants, feedback, actions."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GrantAsk:
    """How many messages a site's lane would like to send (mirrors mta.limits.GrantRequest)."""

    site: str
    mx_hosts: tuple[str, ...]
    pool: str
    sources: tuple[str, ...]
    stream: str
    sending_domain: str
    tenant: str
    wanted: int
    mailbox: str = ""           # envelope sender, for per-mailbox schedules; "" = none
    campaign: str = ""          # the campaign (tag) of the mail, so a bad campaign can be paused alone
    backlog: int = 0            # messages the lane holds in all (0 = not told): what overflow may take
    weights: tuple[int, ...] = ()   # per source (as `sources`), the MTA's egress weights; () = policyd's


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for `count` messages over `source` for `ttl` seconds; count 0 = wait `retry_in`."""

    source: str
    count: int
    max_connections: int
    messages_per_connection: int
    ttl: float
    retry_in: float = 0.0
    overflow: bool = False      # the source belongs to the ask's overflow pool, not to its own


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """Aggregated outcomes of one kind (mirrors mta.limits.Outcome plus an optional mailbox)."""

    site: str
    mx_hosts: tuple[str, ...]
    source: str
    sending_domain: str
    tenant: str
    stream: str
    outcome: str
    reason: str
    code: int
    status: str
    count: int = 1
    mailbox: str = ""
    campaign: str = ""

    @property
    def reply(self) -> str:
        """The reply as an operator reads it in an action's record: "421 4.7.28 (toomanyconn)"."""
        parts = [str(self.code) if self.code else "", self.status, f"({self.reason})" if self.reason else ""]
        return " ".join(p for p in parts if p)


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
