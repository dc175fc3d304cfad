"""What the MTA and policyd exchange, as plain data: the MTA's queue asks a `Limiter` for *leases*
in batches (never per message) and reports *outcomes* in batches.

`GrantRequest` and `Outcome` travel as they are; policyd answers a request with `Grant`s (times
relative, so the hosts' clocks need not agree), which the client turns into `Lease`s (absolute
times on the MTA's clock). The MTA's `StaticLimiter` (mta.queue.limits) and the policy client
(warmup_base.policy_protocol.client) both implement `Limiter`. `feedback_class` names the health
class an outcome counts as, for the MTA and for the simulator alike.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """How many messages a site's lane would like to send now (a `grant` request on the wire)."""

    site: str                      # site key: the destination's MX host set
    mx_hosts: tuple[str, ...]      # MX host names, for ISP recognition
    pool: str                      # egress pool name
    sources: tuple[str, ...]       # source names of that pool (what a lease may use)
    stream: str                    # "transactional", "marketing", ...
    sending_domain: str            # domain of the envelope sender / From
    tenant: str
    wanted: int
    mailbox: str = ""              # envelope sender, for per-mailbox schedules ("" = not per mailbox)
    campaign: str = ""             # the campaign (tag) of the mail, so a bad campaign can be paused alone
    backlog: int = 0               # messages the lane holds in all (0 = not told): what overflow may take
    weights: tuple[int, ...] = ()  # per source (as `sources`), the MTA's egress weights; () = policyd's


@dataclass(frozen=True, slots=True)
class Lease:
    """Permission to send `count` messages to `site` from `source` until `valid_until`."""

    site: str
    source: str
    count: int
    max_connections: int
    messages_per_connection: int
    valid_until: float
    stream: str = ""
    sending_domain: str = ""
    tenant: str = ""
    retry_after: float = 0.0       # with count == 0: when asking again makes sense
    request: int = -1              # index of the GrantRequest (in its batch) this lease answers
    why: str = ""                  # with count == 0: what holds the mail back, for operators


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery outcome as policyd counts it, or `count` alike ones aggregated (`feedback` on
    the wire)."""

    site: str
    mx_hosts: tuple[str, ...]
    source: str
    sending_domain: str
    tenant: str
    stream: str
    outcome: str                  # delivered | deferred | bounced | throttled | blocked ...
    reason: str                   # bounce_parser reason name ("" if none)
    code: int
    status: str                   # enhanced status code, "" if none
    count: int = 1
    mailbox: str = ""
    campaign: str = ""

    @property
    def reply(self) -> str:
        """The reply as an operator reads it in an action's record: "421 4.7.28 (toomanyconn)"."""
        parts = [str(self.code) if self.code else "", self.status, f"({self.reason})" if self.reason else ""]
        return " ".join(p for p in parts if p)


class Limiter(Protocol):
    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        """Leases for a batch of requests (possibly several per request, one per source)."""
        ...

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        """Reports outcomes; implementations aggregate and forward them."""
        ...


@dataclass(frozen=True, slots=True)
class Grant:
    """What policyd grants for one GrantRequest (a Lease on the wire: times relative, not absolute):
    `count` messages over `source` for `ttl` seconds; count 0 = wait `retry_in`."""

    source: str
    count: int
    max_connections: int
    messages_per_connection: int
    ttl: float
    retry_in: float = 0.0
    why: str = ""             # with count 0: what holds the mail back, in words for operators
    overflow: bool = False    # the source belongs to the ask's overflow pool, not to its own


def feedback_class(kind: str, delivered: bool = False) -> str:
    """The health class policyd counts (an Outcome's `outcome`), from the reply classifier's `kind`
    (bounce_parser: delivered, throttled, blocked, auth, hard, soft) or a complaint."""
    if delivered or kind == "delivered":
        return "delivered"
    if kind in ("throttled", "blocked", "auth", "complaint"):
        return kind
    return "hard_bounce" if kind == "hard" else "soft_bounce"
