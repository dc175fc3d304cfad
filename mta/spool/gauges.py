"""Gauges of the on-disk queue and of the spool's file system.

`mta_queue_state` shows what the scheduler holds in memory; with a backlog most of the queue waits
on disk, so these gauges read the spool itself. The file system is read at each scrape (one
statvfs). The queue is counted by one grouped scan of the recipients every
`metrics.queue_interval`, on a thread and a read-only connection of its own: a million recipients
take under a second, and neither the event loop nor the spool's reader thread waits for it. A
scrape shows the last count; ages are computed at the scrape from the stored creation times.

Site labels are bounded: the `metrics.queue_sites` sites with the most recipients have their own
series, every other site is summed into `site="_other"` (its oldest age is the oldest of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mta.spool.store import SiteBacklog, SpoolStore

log = logging.getLogger("mta.metrics")

OTHER = "_other"
STATES = ("queued", "deferred", "held")


@dataclass
class _Site:
    recipients: dict[str, int] = field(default_factory=dict)   # by state
    messages: dict[str, int] = field(default_factory=dict)
    oldest: float = 0.0                                        # created, over states other than held


@dataclass
class QueueCount:
    """One scan of the spool, grouped for export."""

    messages: int = 0
    sites: dict[str, _Site] = field(default_factory=dict)
    oldest: float = 0.0
    seconds: float = 0.0
    at: float = 0.0


def group_sites(rows: list[SiteBacklog], max_sites: int) -> tuple[dict[str, _Site], float]:
    """Per-site totals for the `max_sites` largest sites, the rest under OTHER; and the oldest
    creation time of a message that is not held (0: none)."""
    sites: dict[str, _Site] = {}
    for row in rows:
        site = sites.setdefault(row.site, _Site())
        site.recipients[row.state] = site.recipients.get(row.state, 0) + row.recipients
        site.messages[row.state] = site.messages.get(row.state, 0) + row.messages
        if row.state != "held" and row.oldest and (not site.oldest or row.oldest < site.oldest):
            site.oldest = row.oldest
    ranked = sorted(sites, key=lambda s: (-sum(sites[s].recipients.values()), s))
    out = {name: sites[name] for name in ranked[:max_sites]}
    for name in ranked[max_sites:]:
        rest, site = out.setdefault(OTHER, _Site()), sites[name]
        for state, n in site.recipients.items():
            rest.recipients[state] = rest.recipients.get(state, 0) + n
        for state, n in site.messages.items():
            rest.messages[state] = rest.messages.get(state, 0) + n
        if site.oldest and (not rest.oldest or site.oldest < rest.oldest):
            rest.oldest = site.oldest
    oldest = min((s.oldest for s in out.values() if s.oldest), default=0.0)
    return out, oldest


class SpoolGauges(Collector):
    def __init__(self, spool_dir: str, clock: Callable[[], float] = time.time, max_sites: int = 50) -> None:
        self.spool_dir = spool_dir
        self.clock = clock
        self.max_sites = max_sites
        self.count: QueueCount | None = None
        self._store: SpoolStore | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-gauges")
        self._task: asyncio.Task[None] | None = None

    # ---- counting (on the executor's thread)
    def refresh(self) -> QueueCount:
        if self._store is None:
            self._store = SpoolStore(self.spool_dir, readonly=True)
        started = time.perf_counter()
        rows = self._store.site_backlog()
        messages = self._store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        sites, oldest = group_sites(rows, self.max_sites)
        self.count = QueueCount(messages, sites, oldest, time.perf_counter() - started, self.clock())
        return self.count

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # ---- lifecycle (event loop)
    def start(self, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def refresh_now(self) -> QueueCount:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.refresh)

    async def _run(self, interval: float) -> None:
        while True:
            try:
                await self.refresh_now()
            except Exception:   # a failed count must not end the loop; the next one may work
                log.exception("counting the spool for metrics failed")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_store)
        self._executor.shutdown(wait=False)

    # ---- scrape
    def collect(self) -> Iterator[Metric]:
        yield from self._filesystem()
        count = self.count
        if count is None:
            return
        now = self.clock()
        total = GaugeMetricFamily("mta_spool_messages", "Messages in the spool (on disk, every state)")
        total.add_metric([], count.messages)
        yield total
        recipients = GaugeMetricFamily("mta_spool_site_recipients",
                                       "Recipients on disk by site and state (queued: never attempted)",
                                       labels=["site", "state"])
        messages = GaugeMetricFamily("mta_spool_site_messages", "Messages with recipients on disk by site and state",
                                     labels=["site", "state"])
        ages = GaugeMetricFamily("mta_spool_site_oldest_age_seconds",
                                 "Age of the oldest message waiting for the site (held ones aside)", labels=["site"])
        for name, site in count.sites.items():
            for state in STATES:
                recipients.add_metric([name, state], site.recipients.get(state, 0))
                messages.add_metric([name, state], site.messages.get(state, 0))
            if site.oldest:
                ages.add_metric([name], max(0.0, now - site.oldest))
        oldest = GaugeMetricFamily("mta_spool_oldest_age_seconds",
                                   "Age of the oldest message waiting in the spool (held ones aside; 0: none)")
        oldest.add_metric([], max(0.0, now - count.oldest) if count.oldest else 0.0)
        scan = GaugeMetricFamily("mta_spool_scan_seconds", "Duration of the last count of the on-disk queue")
        scan.add_metric([], count.seconds)
        scanned = GaugeMetricFamily("mta_spool_scan_timestamp_seconds", "When the on-disk queue was last counted")
        scanned.add_metric([], count.at)
        yield from (recipients, messages, ages, oldest, scan, scanned)

    def _filesystem(self) -> Iterator[Metric]:
        try:
            st = os.statvfs(self.spool_dir)
        except OSError:
            return
        avail = GaugeMetricFamily("mta_spool_filesystem_avail_bytes",
                                  "Bytes free for the MTA on the spool's file system")
        avail.add_metric([], st.f_bavail * st.f_frsize)
        size = GaugeMetricFamily("mta_spool_filesystem_size_bytes", "Size of the spool's file system")
        size.add_metric([], st.f_blocks * st.f_frsize)
        yield avail
        yield size
