"""What the console shows, as plain dicts: thin functions over what the command lines use
(policyd's admin commands, the spool's site counts as the queue gauges take them, the
scheduler's reasons for waiting, the suppression list)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mta.http.console.stats import DeliverabilityStats
from mta.model import WAITING
from mta.spool.gauges import group_sites
from mta.spool.store import SpoolStore
from mta.spool.suppression import listing
from warmup_base.policy_protocol.client import PolicyUnavailable
from warmup_base.policy_protocol.wire import AdminRequest

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler

DAY = 86400
MAX_DECISIONS = 500
MAX_SITES = 200
REPLIES_PER_SITE = 3
WHY_SAMPLE = 2000            # queued jobs looked at per site for the reasons they wait


def policy_client(scheduler: Scheduler) -> Any | None:
    """policyd's client when the MTA uses one (`[policy] address`), else None (static limits)."""
    limiter = scheduler.limiter
    limiter = getattr(limiter, "inner", limiter)         # a relay limiter in front of it
    return limiter if hasattr(limiter, "admin") else None


# ---------------------------------------------------------------------- warm-up
async def warmup(scheduler: Scheduler, stats: DeliverabilityStats, address: str) -> dict[str, Any]:
    client = policy_client(scheduler)
    out: dict[str, Any] = {"policyd": {"connected": False, "address": address, "error": ""}, "time": scheduler.clock(),
                           "calendar_day": None, "in_window": None, "pairs": [], "schedules": {}, "shared": False,
                           "daily": stats.daily()}
    if client is None:
        out["policyd"]["error"] = "no [policy] address: static limits apply, nothing warms up"
        return out
    try:
        status = await client.admin(AdminRequest("status", {}))
    except PolicyUnavailable as exc:
        out["policyd"]["error"] = str(exc)
        return out
    out.update({k: status.get(k) for k in ("time", "calendar_day", "in_window", "pairs", "schedules")})
    out["shared"] = bool(status.get("shared", False))
    out["policyd"]["connected"] = True
    out["daily"] = with_schedule(out["daily"], out["pairs"] or [], out["schedules"] or {}, out["time"])
    return out


def with_schedule(daily: dict[str, list[dict[str, Any]]], pairs: list[dict[str, Any]],
                  schedules: dict[str, list[int]], now: float) -> dict[str, list[dict[str, Any]]]:
    """Each day of a source's delivered volume with what its schedules allowed that day: the sum
    over its (IP, ISP) pairs of the schedule's volume at the pair's warm-up day then (today's day
    less the days since; a pair's day may have moved otherwise, so this is the plan, not history)."""
    today = int(now // DAY * DAY)
    out = {}
    for source, days in daily.items():
        mine = [p for p in pairs if p.get("kind") == "ip" and p.get("name") == source and p.get("isp") != "*"]
        rows = []
        for d in days:
            back = max(0, (today - int(d["start"])) // DAY)
            planned = 0
            for p in mine:
                volumes = schedules.get(p.get("schedule", ""), [])
                if volumes:
                    planned += volumes[min(max(0, int(p.get("day", 0)) - back), len(volumes) - 1)]
            rows.append({**d, "schedule": planned if mine else None})
        out[source] = rows
    return out


# ---------------------------------------------------------------------- decisions
def _selector(source: str, domain: str, isp: str) -> dict[str, str]:
    """The history is kept by pair key prefix: with a source or domain policyd can narrow it."""
    sel = {k: v for k, v in (("source", source), ("domain", domain)) if v}
    if sel and isp:
        sel["isp"] = isp
    return sel


def matches(action: dict[str, Any], source: str, isp: str, domain: str, kind: str) -> bool:
    a_kind, _, rest = str(action.get("key", "")).partition("|")
    name, _, a_isp = rest.partition("|")
    return ((not source or (a_kind, name) == ("ip", source))
            and (not domain or (a_kind, name) == ("domain", domain.lower()))
            and (not isp or a_isp == isp or (a_kind, name) == ("isp", isp))
            and (not kind or str(action.get("rule", "")).startswith(kind)))


async def decisions(scheduler: Scheduler, source: str = "", isp: str = "", domain: str = "",
                    kind: str = "") -> dict[str, Any]:
    """policyd's recorded actions, oldest first, filtered as `policyd history` would."""
    client = policy_client(scheduler)
    if client is None:
        return {"actions": [], "note": "no policy daemon: no automatic decisions"}
    reply = await client.admin(AdminRequest("history", _selector(source, domain, isp), limit=MAX_DECISIONS))
    return {"actions": [a for a in reply.get("actions", []) if matches(a, source, isp, domain, kind)]}


# ---------------------------------------------------------------------- queue
class QueueView:
    """Per site: counts from disk (one grouped scan, as the queue gauges do) and the replies seen
    most, read on a thread of its own with a read-only connection; what the site's mail waits
    for from the scheduler's memory. One scan serves every console for `max_age` seconds."""

    def __init__(self, spool_dir: str, max_age: float = 3.0) -> None:
        self.spool_dir = spool_dir
        self.max_age = max_age
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-queue")
        self._store: SpoolStore | None = None
        self._last: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    def _scan(self) -> dict[str, Any]:
        if self._store is None:
            self._store = SpoolStore(self.spool_dir, readonly=True)
        store = self._store
        sites, _oldest = group_sites(store.site_backlog(), MAX_SITES)
        replies: dict[str, list[tuple[int, str]]] = {}
        next_attempt: dict[str, float] = {}
        for site, code, text, n, due in store.db.execute(
                "SELECT CASE WHEN last_site <> '' THEN last_site ELSE domain END, last_code, last_text, COUNT(*),"
                " MIN(CASE WHEN state = ? THEN next_attempt END) FROM recipients GROUP BY 1, 2, 3", (WAITING,)):
            if text:
                replies.setdefault(site, []).append((n, text if not code or text.startswith(str(code))
                                                     else f"{code} {text}"))
            if due is not None and (site not in next_attempt or due < next_attempt[site]):
                next_attempt[site] = due
        return {"sites": sites, "next_attempt": next_attempt,
                "replies": {s: [t for _n, t in sorted(r, reverse=True)[:REPLIES_PER_SITE]] for s, r in replies.items()}}

    async def snapshot(self) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] > self.max_age:
                scan = await asyncio.get_running_loop().run_in_executor(self._executor, self._scan)
                self._last = (time.monotonic(), scan)
            return self._last[1]

    def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None
        self._executor.submit(shut)
        self._executor.shutdown(wait=False)


def why_waiting(scheduler: Scheduler, now: float) -> dict[str, dict[str, Any]]:
    """Per site in memory: the distinct reasons its queued mail waits, and its memory counts."""
    out: dict[str, dict[str, Any]] = {}
    for key, site in scheduler.sites.items():
        reasons: list[str] = []
        if site.in_backoff(now):
            reasons.append("site backing off until " + time.strftime("%H:%M:%S", time.localtime(site.backoff_until)))
        for job in site.queued_jobs()[:WHY_SAMPLE]:
            why = site.why_waiting(job, now)
            if why not in reasons:
                reasons.append(why)
        out[key] = {"waiting": "; ".join(reasons[:4]), "in_memory": site.queued, "connections": site.connections}
    return out


async def queue(scheduler: Scheduler, view: QueueView) -> dict[str, Any]:
    snap = await view.snapshot()
    now = scheduler.clock()
    memory = why_waiting(scheduler, now)
    # A domain never tried yet is counted under its own name on disk; its route, once known, names the site.
    routed = {name: ds.site for name, ds in scheduler.domains.items() if ds.site}
    rows: dict[str, dict[str, Any]] = {}
    for name, counts in snap["sites"].items():
        site = routed.get(name, name)
        row = rows.setdefault(site, {"site": site, "queued": 0, "deferred": 0, "held": 0, "oldest": 0.0,
                                     "last_replies": [], "next_attempt": None})
        due = snap["next_attempt"].get(name)
        if due is not None and (row["next_attempt"] is None or due < row["next_attempt"]):
            row["next_attempt"] = due
        for state in ("queued", "deferred", "held"):
            row[state] += counts.recipients.get(state, 0)
        if counts.oldest and (not row["oldest"] or counts.oldest < row["oldest"]):
            row["oldest"] = counts.oldest
        for reply in snap["replies"].get(name, []):
            if reply not in row["last_replies"]:
                row["last_replies"].append(reply)
    for site, info in memory.items():
        if info["in_memory"] and site not in rows:
            rows[site] = {"site": site, "queued": 0, "deferred": 0, "held": 0, "oldest": 0.0, "last_replies": [],
                          "next_attempt": None}
    out = []
    for site, row in rows.items():
        oldest = row.pop("oldest")
        info = memory.get(site, {})
        waiting = info.get("waiting", "")
        if not waiting and row["next_attempt"] is not None:      # on disk only: a retry or a scheduled send
            waiting = ("due now" if row["next_attempt"] <= now else
                       "on disk until its next attempt at " + time.strftime("%H:%M:%S",
                                                                           time.localtime(row["next_attempt"])))
        out.append({**row, "oldest_age": max(0.0, now - oldest) if oldest else None,
                    "waiting": waiting, "in_memory": info.get("in_memory", 0),
                    "connections": info.get("connections", 0)})
    out.sort(key=lambda r: (-(r["queued"] + r["deferred"] + r["held"]), r["site"]))
    return {"sites": out}


# ---------------------------------------------------------------------- deliverability, suppressions
def deliverability(stats: DeliverabilityStats, by: str, hours: int, now: float) -> dict[str, Any]:
    return {"by": by, "hours": hours, "series": stats.series(by, hours, now)}


def suppression_entries(store: SpoolStore, address: str, now: float) -> list[dict[str, Any]]:
    """Every tenant's entry for the address (global ones have tenant ""), in force or not."""
    return [{"address": e.address, "tenant": e.tenant, "reason": e.reason, "created": e.created,
             "expires": e.expires or None, "source": e.source, "detail": e.detail,
             "in_force": not e.expires or e.expires > now}
            for e in listing(store.db, None, None, 100, address)]
