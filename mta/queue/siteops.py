"""Operator holds: the mail of one destination site (the web console's hold, release and flush),
or given messages (`mta queue hold QUEUE_ID...`).

A site's mail is the rows whose last attempt went to it, and the never-tried rows of the domains
routed to it (the grouping of `mta queue stats` and the queue gauges: a domain not routed yet is
its own "site"). Holding also takes the jobs out of memory (they wait in lanes for a grant or a
connection, or for their route), so the hold is immediate; transactions already running finish.
A held row must never have a job in memory: released, it is claimed afresh from disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mta.model import CLAIMED, HELD, WAITING
from mta.spool.store import SpoolStore

if TYPE_CHECKING:
    from mta.queue.scheduler import Scheduler

__all__ = ["flush_site", "hold_messages", "hold_site", "release_site"]


def _domains(scheduler: Scheduler, site: str) -> list[str]:
    return sorted({name for name, ds in scheduler.domains.items() if ds.site == site} | {site})


def _match(domains: list[str]) -> str:
    return f"(last_site = ? OR (last_site = '' AND domain IN ({','.join('?' * len(domains))})))"


def _due_domains(store: SpoolStore, site: str, domains: list[str], state: int) -> list[str]:
    sql = f"SELECT DISTINCT domain FROM recipients WHERE state = ? AND {_match(domains)}"
    return [r[0] for r in store.db.execute(sql, (state, site, *domains))]


def hold_rows(store: SpoolStore, site: str, domains: list[str], claimed: list[int]) -> int:
    n = store.db.execute(f"UPDATE recipients SET state = ? WHERE state = ? AND {_match(domains)}",
                         (HELD, WAITING, site, *domains)).rowcount
    for rid in claimed:
        n += store.db.execute("UPDATE recipients SET state = ? WHERE id = ? AND state = ?",
                              (HELD, rid, CLAIMED)).rowcount
    return n


def release_rows(store: SpoolStore, site: str, domains: list[str], now: float) -> tuple[int, list[str]]:
    due = _due_domains(store, site, domains, HELD)
    n = store.db.execute(f"UPDATE recipients SET state = ?, next_attempt = ? WHERE state = ? AND {_match(domains)}",
                         (WAITING, now, HELD, site, *domains)).rowcount
    return n, due


def flush_rows(store: SpoolStore, site: str, domains: list[str], now: float) -> tuple[int, list[str]]:
    """Waiting rows due now (scheduled sends keep their time, as in retry_all)."""
    scheduled = (" AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = recipients.message AND m.send_at > ?)"
                 if store.has_send_at else "")
    params: tuple = (now, WAITING, now, site, *domains) + ((now,) if store.has_send_at else ())
    due = _due_domains(store, site, domains, WAITING)
    n = store.db.execute(f"UPDATE recipients SET next_attempt = ? WHERE state = ? AND next_attempt > ?"
                         f" AND {_match(domains)}{scheduled}", params).rowcount
    return n, due


async def hold_site(scheduler: Scheduler, site: str) -> int:
    """Holds every recipient of the site not in a transaction now; returns how many."""
    live = scheduler.sites.get(site)
    jobs = live.drain_all() if live is not None else []
    claimed = [r.id for job in jobs for r in job.recipients]
    domains = _domains(scheduler, site)
    # persist: on a full disk the write waits for room rather than leaving the rows claimed
    n = await scheduler.spool.call(lambda s: hold_rows(s, site, domains, claimed), persist=True)
    for job in jobs:
        scheduler.release(job)
    return n


async def hold_messages(scheduler: Scheduler, queue_ids: list[str]) -> int:
    """Holds these messages' recipients that are not in a transaction now; returns how many."""
    message_ids = set(await scheduler.spool.call(lambda s: s.message_ids(queue_ids)))
    jobs = scheduler.router.remove_messages(message_ids)
    for live in scheduler.sites.values():
        jobs += live.remove_messages(message_ids)
    # persist: on a full disk the write waits for room rather than leaving the rows claimed
    n = await scheduler.spool.call(lambda s: s.hold(queue_ids), persist=True)
    for job in jobs:
        scheduler.release(job)
    return n


async def release_site(scheduler: Scheduler, site: str) -> int:
    now = scheduler.clock()
    domains = _domains(scheduler, site)
    n, due = await scheduler.spool.call(lambda s: release_rows(s, site, domains, now))
    for domain in due:
        scheduler.mark_due(domain, now)
    return n


async def flush_site(scheduler: Scheduler, site: str) -> int:
    """The site's waiting mail is due now, its back-off is over and its lanes ask for grants again."""
    now = scheduler.clock()
    live = scheduler.sites.get(site)
    if live is not None:
        live.backoff_until = 0.0
        live.retry_now()
        live.pump()
    domains = _domains(scheduler, site)
    n, due = await scheduler.spool.call(lambda s: flush_rows(s, site, domains, now))
    for domain in due:
        scheduler.mark_due(domain, now)
    return n
