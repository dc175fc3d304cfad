"""Erasure inside the running daemon (the control socket's `erase`, `POST /v1/erasure`): the
same stores as mta.erasure.service.erase_offline, through the daemon's own handles, so the live
event log, the in-memory queue, pending engagement and webhook events take part."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from mta.erasure.files import erase_event_log, erase_reports
from mta.erasure.match import AddressMatcher
from mta.erasure.service import (
    WEBHOOK_OUTBOX,
    ErasureReport,
    erase_engagement_offline,
    erase_side_stores,
    note_wal,
    scrub_file,
)
from mta.erasure.stores import erase_rows, erase_spool, truncate_wal

if TYPE_CHECKING:
    from mta.daemon.serve import MtaDaemon

log = logging.getLogger("mta.erasure")


class DaemonEraser:
    """Erasure inside the running daemon; one at a time."""

    def __init__(self, daemon: MtaDaemon) -> None:
        self.daemon = daemon
        self._lock = asyncio.Lock()

    async def erase(self, address: str) -> ErasureReport:
        async with self._lock:
            return await self._erase(address)

    async def _erase(self, address: str) -> ErasureReport:
        d = self.daemon
        matcher = AddressMatcher(address)
        report = ErasureReport(matcher.address)
        spool_dir = d.cfg.mta.spool_dir
        assert d.spool is not None and d.scheduler is not None
        # The queue first, so nothing new is sent to the address while the rest goes.
        result = await d.spool.call(lambda s: erase_spool(s, matcher), urgent=True)
        d.scheduler.cancelled.update(result.messages)
        d.scheduler.gate.erased.update(result.in_memory)
        report.add_spool(result)
        queue_db = os.path.join(spool_dir, "queue.db")
        note_wal(report, queue_db, await asyncio.to_thread(truncate_wal, queue_db))
        engagement = d.engagement
        if engagement.recorder is not None:
            engagement.recorder.forget(matcher.address)
            await engagement.recorder.flush()
        if engagement.store is not None:
            store = engagement.store
            report.removed["engagement"] = await asyncio.to_thread(store.erase, matcher.address)
            path = d.cfg.engagement_path          # the SQLite store, or Redis's local mirror
            if os.path.exists(path):
                note_wal(report, path, await asyncio.to_thread(scrub_file, path))
        else:
            await asyncio.to_thread(erase_engagement_offline, d.cfg, matcher.address, report)
        if d.event_index is not None and d.api is not None:
            await d.event_index.barrier()       # events emitted so far are in it, to be found
        if d.webhooks is not None and d.webhooks.outbox.ready:
            # On the outbox's own thread, so it comes after any write of events already handed over.
            d.webhooks.forget(matcher.in_text)
            report.removed["webhook_outbox"] = await d.webhooks.outbox.call(
                lambda store: erase_rows(store.db, *WEBHOOK_OUTBOX[1:], matcher=matcher))
            outbox = os.path.join(spool_dir, WEBHOOK_OUTBOX[0])
            note_wal(report, outbox, await asyncio.to_thread(truncate_wal, outbox))
        await asyncio.to_thread(erase_side_stores, spool_dir, matcher, report, "webhook_outbox" in report.removed)
        events = d.events
        events.drop_buffered(matcher.in_text)
        events.hold()
        try:
            log_files = await asyncio.to_thread(erase_event_log, d.cfg.events_path, matcher)
        finally:
            events.drop_buffered(matcher.in_text)
            events.release()
        reports = await asyncio.to_thread(erase_reports, os.path.join(spool_dir, "inbound"), matcher)
        report.add_files(log_files, reports)
        log.info("erasure done: %s", ", ".join(f"{k}={v}" for k, v in report.removed.items()))
        return report
