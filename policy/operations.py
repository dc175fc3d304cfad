"""Operator operations shared by the `policyd` command line and the admin requests on the wire
(which the MTA's web console uses): status, history, explain, pause, resume, set-day.

One place decides which pairs a command touches and refuses names nobody has heard of, so the
console and the command line cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy.engine.state import ANY_ISP, MAILBOX, SENDER, PairKey
from policy.service import PairStatus, PolicyService, selector_key
from warmup_base.configload import parse_duration

__all__ = ["COMMANDS", "OperationError", "Selector", "apply", "history", "status", "targets", "unknown_names"]

COMMANDS = ("status", "history", "explain", "pause", "resume", "set_day")


class OperationError(ValueError):
    """The operation cannot be done as asked (an unknown name, a missing selector); says why.
    `unknown`: the (selector, value) pairs nobody has heard of, for callers that phrase their own."""

    def __init__(self, message: str, unknown: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.unknown = unknown or []


@dataclass(frozen=True, slots=True)
class Selector:
    source: str = ""
    domain: str = ""
    mailbox: str = ""
    isp: str = ""
    tenant: str = ""
    campaign: str = ""

    @property
    def empty(self) -> bool:
        return not any((self.source, self.domain, self.mailbox, self.isp, self.tenant, self.campaign))

    def key(self) -> PairKey:
        return selector_key(self.source, self.domain, self.mailbox, self.isp, self.tenant, self.campaign)

    def matches(self, row: PairStatus) -> bool:
        k = row.key
        return ((not self.source or (k.kind, k.name) == ("ip", self.source))
                and (not self.domain or (k.kind, k.name) == ("domain", self.domain.lower()))
                and (not self.mailbox or (k.kind, k.name) == ("mailbox", self.mailbox.lower()))
                and (not self.isp or k.isp == self.isp or (k.kind, k.name) == ("isp", self.isp)))


async def targets(service: PolicyService, command: str, selector: Selector) -> list[PairKey]:
    """The pairs a command changes.

    A warm-up day belongs to (sender, ISP) pairs, so set-day without an ISP sets it on every ISP.
    Pause without an ISP pauses the sender on every ISP at once (its all-ISPs pair); resume without
    an ISP ends that pause and every per-ISP pause and back-off of the sender too.
    """
    key = selector.key()
    if command == "set_day" and key.kind not in ("ip", "domain", "mailbox"):
        raise OperationError("set-day needs a source, domain or mailbox")
    if key.kind in ("tenant", "campaign") and key.isp == ANY_ISP and command != "pause":
        seen = [k for k in await service.known_pairs() if (k.kind, k.name) == (key.kind, key.name)]
        return [key, *seen]
    if key.isp != ANY_ISP or key.kind not in ("ip", "domain") or command == "pause":
        return [key]
    isps = [n for n in service.policy.catalog.names if service.policy.catalog.settings(n).warmup]
    seen_isps = [k.isp for k in await service.known_pairs() if (k.kind, k.name) == (key.kind, key.name)]
    per_isp = [PairKey(key.kind, key.name, isp) for isp in dict.fromkeys([*isps, *seen_isps]) if isp != ANY_ISP]
    return per_isp if command == "set_day" else [key, *per_isp]


async def unknown_names(service: PolicyService, selector: Selector) -> list[tuple[str, str]]:
    """Selector values that match nothing configured and nothing seen: `--isp gmial` must not
    silently pause nothing."""
    known = await service.known_pairs()
    seen = {(k.kind, k.name) for k in known} | {("isp", k.isp) for k in known}
    seen |= {("isp", name) for name in service.policy.catalog.names}
    wanted = [("ip", "source", selector.source), ("domain", "domain", selector.domain.lower()),
              ("mailbox", "mailbox", selector.mailbox.lower()), ("isp", "isp", selector.isp)]
    return [(flag, value) for kind, flag, value in wanted if value and (kind, value) not in seen]


async def apply(service: PolicyService, command: str, selector: Selector, *, duration: str = "", day: int = 0,
                reason: str = "", force: bool = False) -> list[PairKey]:
    """pause / resume / set_day; returns the pairs changed. OperationError for unknown names
    (unless `force`) or an empty selector."""
    if command not in ("pause", "resume", "set_day"):
        raise OperationError(f"unknown command {command!r}")
    if command in ("pause", "set_day") and not force:
        unknown = await unknown_names(service, selector)
        if unknown:
            names = ", ".join(f"{flag} {value}" for flag, value in unknown)
            raise OperationError(f"unknown {names}: not configured and never seen in traffic (a typo?)", unknown)
    seconds = parse_duration(duration, "duration") if command == "pause" and duration else 0.0
    keys = await targets(service, command, selector)
    for key in keys:
        if command == "pause":
            await service.pause(key, seconds, reason)
        elif command == "resume":
            await service.resume(key, reason)
        else:
            await service.set_day(key, day, reason)
    return keys


async def status(service: PolicyService, selector: Selector) -> dict[str, Any]:
    rows = [r for r in await service.status() if selector.matches(r)]
    now = service.clock()
    schedules = {name: list(sched.days) for name, sched in service.policy.settings.schedules.items()}
    return {"time": now, "calendar_day": service.policy.calendar.day_index(now),
            "in_window": service.policy.calendar.in_window(now), "pairs": [r.to_dict() for r in rows],
            "schedules": schedules, "shared": service.store.shared}


async def history(service: PolicyService, selector: Selector, limit: int) -> list[dict[str, Any]]:
    """Recorded actions, oldest first; a mailbox's include the sender-culprit actions about it."""
    prefixes = [""]
    if not selector.empty:
        key = selector.key()
        isp = "" if key.isp == ANY_ISP else key.isp
        prefixes = [f"{key.kind}|{key.name}|{isp}"]
        if key.kind == MAILBOX:
            prefixes.append(f"{SENDER}|{key.name}|{isp}")
    actions = [a for prefix in prefixes for a in await service.history(prefix, limit)]
    if len(prefixes) > 1:
        actions.sort(key=lambda a: a.at)
        actions = actions[-limit:] if limit > 0 else actions
    return [a.to_dict() for a in actions]
