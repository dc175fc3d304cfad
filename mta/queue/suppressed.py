"""Suppression at delivery: right before a job is sent, recipients on the suppression list
(mta.spool.suppression) are dropped with a `dropped` event and never sent.

The check stays off the disk for the common case (not suppressed): an in-memory filter of hashes
answers misses exactly, and only a hit asks the spool's table. The filter follows the table by
polling new rows (`sync`), so entries the CLI adds while the daemon runs are seen within
seconds; the daemon's own new entries are noted in it at once.
"""

from __future__ import annotations

from collections.abc import Callable

from mta.events import Event, EventLog
from mta.metrics import Metrics
from mta.model import Job
from mta.spool import Spool
from mta.spool.suppression import SuppressionFilter
from mta.spool.suppression import lookup as lookup_suppression


class SuppressionGate:
    def __init__(self, spool: Spool, events: EventLog, metrics: Metrics, clock: Callable[[], float]) -> None:
        self.spool = spool
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.filter = SuppressionFilter()
        # Recipient ids erased (mta.erasure) while their job was in memory: dropped without a trace.
        self.erased: set[int] = set()

    async def sync(self) -> None:
        """Takes in the rows added to the table since the last call."""
        await self.spool.read(lambda s: self.filter.sync(s.db))

    async def drop_suppressed(self, job: Job) -> int:
        """Removes suppressed recipients from the job (dropped, with an event); returns how many remain."""
        if self.erased:
            kept = [r for r in job.recipients if r.id not in self.erased]
            if len(kept) != len(job.recipients):
                self.erased.difference_update(r.id for r in job.recipients)
                job.recipients = kept
        candidates = [r for r in job.recipients if self.filter.may_contain(r.address)]
        if not candidates:
            return len(job.recipients)
        msg = job.message
        now = self.clock()
        hits = await self.spool.read(lambda s: [(r, lookup_suppression(s.db, r.address, msg.tenant, now))
                                                for r in candidates])
        dropped = [(r, entry) for r, entry in hits if entry is not None]
        if not dropped:
            return len(job.recipients)
        gone = {r.id for r, _e in dropped}
        job.recipients = [r for r in job.recipients if r.id not in gone]
        for r, entry in dropped:
            assert entry is not None
            self.metrics.suppressed.labels(entry.reason).inc()
            scope = f"tenant {entry.tenant}" if entry.tenant else "all tenants"
            self.events.emit(Event("dropped", msg.queue_id, r.address, msg.sender, now, msg.created,
                                   reason=entry.reason, text=f"suppressed: {entry.reason} ({scope})",
                                   stream=msg.stream, tenant=msg.tenant, sending_domain=msg.sending_domain,
                                   message_id=msg.header_message_id, campaign=msg.campaign,
                                   variant=msg.variant))
        ids = list(gone)
        self.spool.post(lambda s: s.finish_later(ids))
        return len(job.recipients)
