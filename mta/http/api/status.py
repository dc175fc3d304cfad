"""A recipient's state from its event history. Pure: the event names in, one state out.

States: scheduled (waiting for its send_at), queued, deferred (an attempt failed for now),
delivered, bounced, suppressed (dropped because the address is on the suppression list),
dropped (removed by an operator), expired, cancelled (through the API). Events that say nothing
about where the message is (delayed DSN sent, opened, clicked, complaint, unsubscribed) leave
the state as it was.
"""

from __future__ import annotations

from typing import Any

from mta.spool.suppression import REASONS as SUPPRESSION_REASONS

_STATE_OF = {"accepted": "queued", "recovered": "queued", "scheduled": "scheduled", "deferred": "deferred",
             "delivered": "delivered", "bounced": "bounced", "expired": "expired", "cancelled": "cancelled"}
FINAL = {"delivered", "bounced", "expired", "cancelled", "suppressed", "dropped"}


def state_after(current: str, event: dict[str, Any]) -> str:
    name = event.get("event", "")
    if name == "dropped":
        return "suppressed" if event.get("reason") in SUPPRESSION_REASONS else "dropped"
    if name == "bounced" and current == "delivered":
        return "bounced"          # a bounce after delivery (a DSN that came later) still counts
    if current in FINAL and name not in ("bounced",):
        return current
    return _STATE_OF.get(name, current)


def recipient_states(events: list[dict[str, Any]], send_at: float, now: float) -> dict[str, dict[str, Any]]:
    """{recipient: {"state", "events"}} in the order recipients first appear."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        rcpt = e.get("recipient", "")
        entry = out.setdefault(rcpt, {"address": rcpt, "state": "queued", "events": []})
        entry["state"] = state_after(entry["state"], e)
        entry["events"].append(e)
    for entry in out.values():
        if entry["state"] == "scheduled" and now >= send_at:
            entry["state"] = "queued"      # its time has come: it waits for its turn like any other
    return out
