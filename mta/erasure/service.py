"""An erasure from start to end: every store that may name the address, and the report of what
was removed. `erase_offline` works on the files when no daemon runs; mta.daemon.erasure does the
same inside the running daemon (the control socket's `erase`, `POST /v1/erasure`), where the live
event log, the in-memory queue and the stores' own connections must take part.

What stays: a suppression, hashed; a message that still has other recipients (its body, which
may name the address in a header, is signed and cannot be edited); an attempt already under way
(reported as in_flight: its outcome is logged after the erasure). Events of the address emitted
after the erasure are logged as usual.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from mta.config import Config
from mta.erasure.files import FileErasure, erase_event_log, erase_reports
from mta.erasure.match import AddressMatcher
from mta.erasure.stores import (
    SpoolErasure,
    erase_spool,
    erase_sqlite_file,
    scrub_free_pages,
    truncate_wal,
)
from mta.spool.store import SpoolStore

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


def note_wal(report: ErasureReport, path: str, emptied: bool) -> None:
    if not emptied:
        report.wal_kept.append(path)


def scrub_file(path: str) -> bool:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 60000")
        scrub_free_pages(db)
    finally:
        db.close()
    return truncate_wal(path)


def erase_engagement_offline(cfg: Config, address: str, report: ErasureReport) -> None:
    from mta.engagement.open import open_engagement_store
    if not cfg.engagement.redis and not os.path.exists(cfg.engagement_path):
        report.removed["engagement"] = 0
        return
    store = open_engagement_store(cfg)
    try:
        report.removed["engagement"] = store.erase(address)
    finally:
        store.close()
    note_wal(report, cfg.engagement_path, scrub_file(cfg.engagement_path))


def erase_side_stores(spool_dir: str, matcher: AddressMatcher, report: ErasureReport,
                       outbox_done: bool = False) -> None:
    stores = [(EVENT_INDEX, "event_index")] + ([] if outbox_done else [(WEBHOOK_OUTBOX, "webhook_outbox")])
    for (name, table, key, text, rcpt), label in stores:
        path = os.path.join(spool_dir, name)
        if not os.path.exists(path):
            report.removed[label] = 0
            continue
        n, emptied = erase_sqlite_file(path, table, key, text, matcher, rcpt)
        report.removed[label] = n
        note_wal(report, path, emptied)


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
        note_wal(report, os.path.join(spool_dir, "queue.db"), truncate_wal(os.path.join(spool_dir, "queue.db")))
    erase_engagement_offline(cfg, address, report)
    erase_side_stores(spool_dir, matcher, report)
    report.add_files(erase_event_log(cfg.events_path, matcher),
                     erase_reports(os.path.join(spool_dir, "inbound"), matcher))
    return report
