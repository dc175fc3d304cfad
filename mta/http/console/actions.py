"""The console's actions: pause, resume and set_day go to policyd (its admin commands, as
`policyd pause|resume|set-day` run them); flush, hold and release act on the queue; lift removes
a suppression. Each one is checked, done, logged and audited in the event log with the operator
key's name (event `operator_action`: `reason` the action, `text` who did what and why)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mta.events import Event
from mta.http.api.errors import ApiError, invalid
from mta.http.console.data import policy_client
from mta.queue.siteops import flush_site, hold_site, release_site
from mta.spool.suppression import normalize, remove
from warmup_base.policy_protocol.client import PolicyRefused, PolicyUnavailable
from warmup_base.policy_protocol.wire import AdminRequest

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler

log = logging.getLogger("mta.console")

POLICY = ("pause", "resume", "set_day")
QUEUE = ("flush", "hold", "release")
ACTIONS = (*POLICY, *QUEUE, "lift")
SELECTOR = ("source", "domain", "mailbox", "isp", "tenant", "campaign")
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class Done:
    message: str            # for the operator, shown in the page
    detail: dict[str, Any]


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(name, f"{name} must be a string")
    value = " ".join(value.split())          # no control characters or line breaks in logs and events
    if len(value) > MAX_TEXT:
        raise invalid(name, f"{name} is longer than {MAX_TEXT} characters")
    return value


async def perform(scheduler: Scheduler, body: Any, operator: str) -> Done:
    if not isinstance(body, dict):
        raise invalid("", "an action is a JSON object")
    action = body.get("action")
    if action not in ACTIONS:
        raise invalid("action", f"action must be one of {', '.join(ACTIONS)}")
    reason = _text(body, "reason")
    if action in POLICY:
        done = await _policy(scheduler, action, body, operator, reason)
    elif action in QUEUE:
        done = await _queue(scheduler, action, _text(body, "site"))
    else:
        done = await _lift(scheduler, _text(body, "address"), body.get("tenant"))
    audit(scheduler, operator, action, done.message, reason)
    return done


def audit(scheduler: Scheduler, operator: str, action: str, what: str, reason: str) -> None:
    text = f"operator {operator}: {what}" + (f"; reason: {reason}" if reason else "")
    log.info("console action %s: %s", action, text)
    # reason is the action's name (a bounded metric label); the operator's words go in text
    scheduler.events.emit(Event("operator_action", "", "", time=scheduler.clock(), reason=action, text=text))


async def _policy(scheduler: Scheduler, action: str, body: dict[str, Any], operator: str, reason: str) -> Done:
    client = policy_client(scheduler)
    if client is None:
        raise ApiError(409, "conflict", "no policy daemon ([policy] address): static limits cannot be paused")
    selector = {k: v for k in SELECTOR if (v := _text(body, k))}
    if not selector:
        raise invalid("source", "name what to act on: source, domain, mailbox, isp, tenant or campaign")
    duration = _text(body, "duration") if action == "pause" else ""
    day = body.get("day", 0) if action == "set_day" else 0
    if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 10_000:
        raise invalid("day", "day must be a whole number from 0 to 10000")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise invalid("force", "force must be true or false")
    recorded = f"console ({operator})" + (f": {reason}" if reason else "")
    try:
        reply = await client.admin(AdminRequest(action, selector, duration=duration, day=day, reason=recorded,
                                                  force=force))
    except PolicyRefused as exc:
        raise ApiError(422, "invalid", f"policyd refused: {exc.detail}") from None
    except PolicyUnavailable as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    target = " ".join(f"{k}={v}" for k, v in selector.items())
    extra = (f" for {duration}" if duration else " until resumed") if action == "pause" else ""
    extra += f" to day {day}" if action == "set_day" else ""
    changed = reply.get("changed", [])
    return Done(f"{action} {target}{extra}: changed {', '.join(changed) or 'nothing'}", {"changed": changed})


async def _queue(scheduler: Scheduler, action: str, site: str) -> Done:
    if not site:
        if action != "flush":
            raise invalid("site", f"{action} needs a site")
        n = await scheduler.flush()
        return Done(f"flush: {n} recipients due now", {"recipients": n})
    run = {"flush": flush_site, "hold": hold_site, "release": release_site}[action]
    n = await run(scheduler, site)
    return Done(f"{action} {site}: {n} recipients", {"recipients": n})


async def _lift(scheduler: Scheduler, address: str, tenant: Any) -> Done:
    if "@" not in address:
        raise invalid("address", "address must be an email address")
    if tenant is not None and not isinstance(tenant, str):
        raise invalid("tenant", "tenant must be a string (\"\" for the global list)")
    n = await scheduler.spool.call(lambda s: remove(s.db, address, tenant))
    if not n:
        raise ApiError(404, "not_found", f"{normalize(address)} is not suppressed"
                       + (f" for tenant {tenant!r}" if tenant else ""))
    scope = "every tenant" if tenant is None else f"tenant {tenant}" if tenant else "the global list"
    return Done(f"lift {normalize(address)} ({scope}): {n} entries removed", {"removed": n})
