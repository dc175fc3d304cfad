"""The API's event history: every event the daemon emits, numbered in emit order (the number is
the `/v1/events` cursor) and kept per message for `GET /v1/messages/{id}`, for a configurable
retention.

EventLog subscribers run synchronously on the event loop, so `on_event` only queues the event;
a writer thread stores whatever has queued in one transaction (group commit). The index is a
view of the event log, not a source of truth: it runs with synchronous=NORMAL and a crash may
lose its last few events (the spool and events.jsonl have them). `barrier()` lets a reader wait
until everything emitted before it is readable, so a client sees its own message's events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mta.events import Event
from mta.spool.securedelete import at_least_fast

log = logging.getLogger("mta.api")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    tenant TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_tenant ON events(tenant, seq);
CREATE INDEX IF NOT EXISTS events_by_message ON events(queue_id, seq);
CREATE INDEX IF NOT EXISTS events_by_time ON events(time);
-- What the API knows of the messages it accepted that events do not carry.
CREATE TABLE IF NOT EXISTS api_messages (
    queue_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created REAL NOT NULL,
    send_at REAL NOT NULL,
    tags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_messages_by_time ON api_messages(created);
"""

# Columns added later (an older events.db gets them at open): the campaign report's keys.
ADDED_COLUMNS = (("campaign", "TEXT NOT NULL DEFAULT ''"), ("variant", "TEXT NOT NULL DEFAULT ''"))
CAMPAIGN_INDEX = "CREATE INDEX IF NOT EXISTS events_by_campaign ON events(campaign, tenant) WHERE campaign <> ''"

BATCH = 2000


@dataclass(frozen=True, slots=True)
class MessageMeta:
    queue_id: str
    tenant: str
    send_at: float
    tags: list[str]
    created: float = 0.0


class _Barrier:
    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future

    def done(self) -> None:
        self.loop.call_soon_threadsafe(lambda: self.future.done() or self.future.set_result(None))


class EventIndex:
    def __init__(self, spool_dir: str, retention: float, clock: Callable[[], float]) -> None:
        self.path = os.path.join(spool_dir, "events.db")
        self.retention = retention
        self.clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        for column, decl in ADDED_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE events ADD COLUMN {column} {decl}")
        self._db.execute(CAMPAIGN_INDEX)
        self._read = self._connect()
        self._read_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tenants: dict[str, str] = {}      # queue id -> tenant, for events that carry none
        self._pending: list[Any] = []           # events of this loop iteration, not handed over yet
        self.backlog = 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA busy_timeout = 30000")
        at_least_fast(db)       # see mta.spool.securedelete
        return db

    # ------------------------------------------------------------------ writing
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="api-event-index", daemon=True)
        self._thread.start()

    def on_event(self, event: Event) -> None:
        """EventLog subscriber: on the event loop, so it only collects; the events of one loop
        iteration go to the writer thread together (a hand-over per event costs a thread wake-up
        and GIL switch each)."""
        self.backlog += 1
        self._pending.append((event.time, event.tenant, event.queue_id, event.recipient, event.event,
                              event.to_json(), event.campaign, event.variant))
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._hand_over)
            except RuntimeError:      # no loop running (a tool emitting events): at once
                self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._queue.put(batch)

    def note_message(self, meta: MessageMeta) -> None:
        self._hand_over()       # keep the order: events emitted before come first
        self._queue.put([meta])

    async def barrier(self) -> None:
        """Returns once every event emitted before the call is readable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._hand_over()
        self._queue.put([_Barrier(loop, future)])
        await future

    async def close(self) -> None:
        self._hand_over()
        if self._thread is not None:
            self._queue.put([None])
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        self._db.close()
        self._read.close()

    def _run(self) -> None:
        last_prune = 0.0
        while True:
            items = list(self._queue.get())
            while len(items) < BATCH:
                try:
                    items += self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = any(item is None for item in items)
            try:
                self._write([i for i in items if i is not None and not isinstance(i, _Barrier)])
            except sqlite3.Error as exc:   # a full disk: these events are missing from the index only
                log.error("event index: %d events not stored: %s", len(items), exc)
            for item in items:
                if isinstance(item, _Barrier):
                    item.done()
            now = self.clock()
            if now - last_prune > 600:
                last_prune = now
                self._prune(now - self.retention)
            if stop:
                return

    def _write(self, items: list[Any]) -> None:
        if not items:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            for item in items:
                if isinstance(item, MessageMeta):
                    self._tenants[item.queue_id] = item.tenant
                    db.execute("INSERT OR REPLACE INTO api_messages (queue_id, tenant, created, send_at, tags)"
                               " VALUES (?,?,?,?,?)", (item.queue_id, item.tenant, item.created, item.send_at,
                                                       json.dumps(item.tags)))
                else:
                    when, tenant, qid, rcpt, name, data, campaign, variant = item
                    if name == "accepted":
                        self._tenants[qid] = tenant
                    elif not tenant:
                        tenant = self._tenant_of(qid)
                    db.execute("INSERT INTO events (time, tenant, queue_id, recipient, event, data, campaign, variant)"
                               " VALUES (?,?,?,?,?,?,?,?)", (when, tenant, qid, rcpt, name, data, campaign, variant))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            self.backlog = max(0, self.backlog - len(items))
        if len(self._tenants) > 200_000:
            self._tenants.clear()

    def _tenant_of(self, queue_id: str) -> str:
        tenant = self._tenants.get(queue_id)
        if tenant is None:
            row = self._db.execute("SELECT tenant FROM events WHERE queue_id = ? AND tenant <> '' LIMIT 1",
                                   (queue_id,)).fetchone()
            tenant = row[0] if row else ""
        return tenant

    def _prune(self, before: float) -> None:
        try:
            self._db.execute("DELETE FROM events WHERE time < ?", (before,))
            self._db.execute("DELETE FROM api_messages WHERE created < ?", (before,))
        except sqlite3.Error as exc:
            log.warning("event index: pruning failed: %s", exc)

    # ------------------------------------------------------------------ reading (in an executor)
    def after(self, cursor: int, limit: int, tenant: str | None) -> list[tuple[int, dict[str, Any]]]:
        """Events after `cursor`, oldest first; `tenant` None = every tenant's."""
        with self._read_lock:
            if tenant is None:
                rows = self._read.execute("SELECT seq, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                          (cursor, limit)).fetchall()
            else:
                rows = self._read.execute("SELECT seq, data FROM events WHERE tenant = ? AND seq > ?"
                                          " ORDER BY seq LIMIT ?", (tenant, cursor, limit)).fetchall()
        return [(seq, json.loads(data)) for seq, data in rows]

    def history(self, queue_id: str) -> tuple[MessageMeta | None, list[tuple[int, str, dict[str, Any]]]]:
        """The message's API facts (if it came through the API) and its events, oldest first."""
        with self._read_lock:
            row = self._read.execute("SELECT queue_id, tenant, send_at, tags FROM api_messages WHERE queue_id = ?",
                                     (queue_id,)).fetchone()
            rows = self._read.execute("SELECT seq, tenant, data FROM events WHERE queue_id = ? ORDER BY seq",
                                      (queue_id,)).fetchall()
        meta = MessageMeta(row[0], row[1], row[2], json.loads(row[3])) if row else None
        return meta, [(seq, tenant, json.loads(data)) for seq, tenant, data in rows]

    def campaign_counts(self, campaign: str, tenant: str | None) -> list[tuple[str, str, bool, int]]:
        """(variant, event, machine, distinct recipients) of a campaign's events; `tenant` None =
        every tenant's."""
        sql = ("SELECT variant, event, coalesce(json_extract(data, '$.machine'), 0), "
               "COUNT(DISTINCT queue_id || ' ' || lower(recipient)) FROM events WHERE campaign = ?")
        args: list[Any] = [campaign]
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        with self._read_lock:
            rows = self._read.execute(sql + " GROUP BY 1, 2, 3", args).fetchall()
        return [(v, e, bool(m), int(n)) for v, e, m, n in rows]

    def last_seq(self) -> int:
        with self._read_lock:
            row = self._read.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)
