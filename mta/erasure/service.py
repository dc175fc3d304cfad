"""An erasure from start to end: every store that may name the address, and the report of what
was removed. `erase_offline` works on the files when no daemon runs; `DaemonEraser` does the same
inside the running daemon (the control socket's `erase`, `POST /v1/erasure`), where the live
event log, the in-memory queue and the stores' own connections must take part.

What stays: a suppression, hashed; a message that still has other recipients (its body, which
may name the address in a header, is signed and cannot be edited); an attempt already under way
(reported as in_flight: its outcome is logged after the erasure). Events of the address emitted
after the erasure are logged as usual.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mta.config import Config
from mta.erasure.files import FileErasure, erase_event_log, erase_reports
from mta.erasure.match import AddressMatcher
from mta.erasure.stores import (
    SpoolErasure,
    erase_rows,
    erase_spool,
    erase_sqlite_file,
    scrub_free_pages,
    truncate_wal,
)
from mta.spool.store import SpoolStore

if TYPE_CHECKING:
    from mta.daemon.serve import MtaDaemon

log = logging.getLogger("mta.erasure")

EVENT_INDEX = ("events.db", "events", "seq", "data", "recipient")
WEBHOOK_OUTBOX = ("webhooks.db", "outbox", "id", "event", "")


@dataclass(slots=True)
class ErasureReport:
    address: str
    removed: dict[str, int] = field(default_factory=dict)
    suppressions_hashed: int = 0
    in_flight: int = 0
    wal_kept: list[str] = field(default_factory=list)       # WAL files readers kept from being emptied
    skipped: list[str] = field(default_factory=list)        # files not searched (unknown compression)

    def add_spool(self, s: SpoolErasure) -> None:
        self.removed.update(queued_recipients=s.recipients, queued_messages=len(s.messages), held_recipients=s.held,
                            deliveries=s.deliveries, idempotency_records=s.idempotency)
        self.suppressions_hashed = s.suppressions
        self.in_flight = s.in_flight

    def add_files(self, log_files: FileErasure, reports: FileErasure) -> None:
        self.removed.update(event_log_lines=log_files.lines, inbound_reports=len(reports.files))
        self.skipped += log_files.skipped

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "removed": self.removed, "suppressions_hashed": self.suppressions_hashed,
                "in_flight": self.in_flight, "wal_kept": self.wal_kept, "skipped": self.skipped}

    def text(self) -> str:
        lines = [f"erased {self.address}"]
        lines += [f"  {name.replace('_', ' '):22} {n}" for name, n in self.removed.items()]
        lines.append(f"  {'suppressions hashed':22} {self.suppressions_hashed}")
        if self.in_flight:
            lines.append(f"  {self.in_flight} delivery attempt(s) were under way and may still complete")
        for path in self.wal_kept:
            lines.append(f"  note: {path}-wal could not be emptied now (busy readers); it is at its next checkpoint")
        for path in self.skipped:
            lines.append(f"  warning: {path} not searched (compression not supported): erase it by hand")
        return "\n".join(lines)


def _note_wal(report: ErasureReport, path: str, emptied: bool) -> None:
    if not emptied:
        report.wal_kept.append(path)


def _scrub_file(path: str) -> bool:
    import sqlite3
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 60000")
        scrub_free_pages(db)
    finally:
        db.close()
    return truncate_wal(path)


def _erase_engagement_offline(cfg: Config, address: str, report: ErasureReport) -> None:
    from mta.engagement.open import open_engagement_store
    if not cfg.engagement.redis and not os.path.exists(cfg.engagement_path):
        report.removed["engagement"] = 0
        return
    store = open_engagement_store(cfg)
    try:
        report.removed["engagement"] = store.erase(address)
    finally:
        store.close()
    _note_wal(report, cfg.engagement_path, _scrub_file(cfg.engagement_path))


def _erase_side_stores(spool_dir: str, matcher: AddressMatcher, report: ErasureReport,
                       outbox_done: bool = False) -> None:
    stores = [(EVENT_INDEX, "event_index")] + ([] if outbox_done else [(WEBHOOK_OUTBOX, "webhook_outbox")])
    for (name, table, key, text, rcpt), label in stores:
        path = os.path.join(spool_dir, name)
        if not os.path.exists(path):
            report.removed[label] = 0
            continue
        n, emptied = erase_sqlite_file(path, table, key, text, matcher, rcpt)
        report.removed[label] = n
        _note_wal(report, path, emptied)


def erase_offline(cfg: Config, address: str) -> ErasureReport:
    """With no daemon running: straight on the files."""
    matcher = AddressMatcher(address)
    report = ErasureReport(matcher.address)
    spool_dir = cfg.mta.spool_dir
    if os.path.exists(os.path.join(spool_dir, "queue.db")):
        store = SpoolStore(spool_dir)
        try:
            store.begin()
            result = erase_spool(store, matcher)
            store.commit()
        finally:
            store.rollback()
            store.close()
        report.add_spool(result)
        _note_wal(report, os.path.join(spool_dir, "queue.db"), truncate_wal(os.path.join(spool_dir, "queue.db")))
    _erase_engagement_offline(cfg, address, report)
    _erase_side_stores(spool_dir, matcher, report)
    report.add_files(erase_event_log(cfg.events_path, matcher),
                     erase_reports(os.path.join(spool_dir, "inbound"), matcher))
    return report


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
        _note_wal(report, queue_db, await asyncio.to_thread(truncate_wal, queue_db))
        engagement = d.engagement
        if engagement.recorder is not None:
            engagement.recorder.forget(matcher.address)
            await engagement.recorder.flush()
        if engagement.store is not None:
            store = engagement.store
            report.removed["engagement"] = await asyncio.to_thread(store.erase, matcher.address)
            path = d.cfg.engagement_path          # the SQLite store, or Redis's local mirror
            if os.path.exists(path):
                _note_wal(report, path, await asyncio.to_thread(_scrub_file, path))
        else:
            await asyncio.to_thread(_erase_engagement_offline, d.cfg, matcher.address, report)
        if d.event_index is not None and d.api is not None:
            await d.event_index.barrier()       # events emitted so far are in it, to be found
        if d.webhooks is not None and d.webhooks.outbox.ready:
            # On the outbox's own thread, so it comes after any write of events already handed over.
            d.webhooks.forget(matcher.in_text)
            report.removed["webhook_outbox"] = await d.webhooks.outbox.call(
                lambda store: erase_rows(store.db, *WEBHOOK_OUTBOX[1:], matcher=matcher))
            outbox = os.path.join(spool_dir, WEBHOOK_OUTBOX[0])
            _note_wal(report, outbox, await asyncio.to_thread(truncate_wal, outbox))
        await asyncio.to_thread(_erase_side_stores, spool_dir, matcher, report, "webhook_outbox" in report.removed)
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
