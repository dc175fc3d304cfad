"""The webhook outbox: an SQLite file in the spool directory (`webhooks.db`), one row per event
per endpoint, kept until the endpoint answered 2xx for it or it expired.

All access runs on one thread of its own (`Outbox.call`), so neither the event loop nor the
spool's writer waits for it; inserts come in groups (one transaction, one fsync per group).

A batch is fixed when first sent: its rows are stamped with its webhook id, and the same rows go
out again under the same id after a failure or a restart, so a receiver can drop a repeat by its
`webhook-id`. A row that never went out has no batch.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from mta.spool.securedelete import at_least_fast

__all__ = ["Batch", "Outbox", "OutboxStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    created REAL NOT NULL,
    event TEXT NOT NULL,
    batch TEXT
);
CREATE INDEX IF NOT EXISTS outbox_endpoint ON outbox (endpoint, id);
CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (endpoint, batch) WHERE batch IS NOT NULL;
"""

EXPIRE_CHUNK = 10_000       # rows deleted per transaction: inserts get the thread in between


@dataclass(frozen=True)
class Batch:
    id: str                     # the webhook-id of every try of it
    events: list[str]           # event JSON, oldest first
    oldest: float               # creation time of its oldest event


def new_batch_id() -> str:
    # Random, so ids of several MTA nodes (or of a re-created outbox) never meet; no '.' (spec).
    return "msg_" + secrets.token_hex(12)


class OutboxStore:
    """The SQLite side; every method runs on the outbox thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")      # a committed row survives a power cut
        at_least_fast(self.db)                          # see mta.spool.securedelete
        self.db.executescript(_SCHEMA)

    def insert(self, rows: Iterable[tuple[str, float, str]]) -> None:
        """(endpoint, created, event JSON) rows, in one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO outbox (endpoint, created, event) VALUES (?, ?, ?)", rows)

    def next_batch(self, endpoint: str, limit: int) -> Batch | None:
        """The batch to send next: the one already under way, else up to `limit` oldest rows,
        stamped now with a new id."""
        head = self.db.execute("SELECT batch FROM outbox WHERE endpoint = ? ORDER BY id LIMIT 1",
                               (endpoint,)).fetchone()
        if head is None:
            return None
        if head[0] is not None:
            rows = self.db.execute("SELECT created, event FROM outbox WHERE endpoint = ? AND batch = ? ORDER BY id",
                                   (endpoint, head[0])).fetchall()
            return Batch(head[0], [r[1] for r in rows], min(r[0] for r in rows))
        batch_id = new_batch_id()
        with self.db:
            self.db.execute("BEGIN")
            rows = self.db.execute("SELECT id, created, event FROM outbox WHERE endpoint = ? AND batch IS NULL "
                                   "ORDER BY id LIMIT ?", (endpoint, limit)).fetchall()
            self.db.execute("UPDATE outbox SET batch = ? WHERE endpoint = ? AND batch IS NULL AND id BETWEEN ? AND ?",
                            (batch_id, endpoint, rows[0][0], rows[-1][0]))
        return Batch(batch_id, [r[2] for r in rows], min(r[1] for r in rows))

    def unstamp(self, endpoint: str, batch_id: str) -> None:
        """Dissolves a batch its receiver refused: its rows go out again in smaller batches, each
        under a new id (a new body must not reuse the old webhook-id)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE outbox SET batch = NULL WHERE endpoint = ? AND batch = ?", (endpoint, batch_id))

    def delete_batch(self, endpoint: str, batch_id: str) -> int:
        with self.db:
            self.db.execute("BEGIN")
            return self.db.execute("DELETE FROM outbox WHERE endpoint = ? AND batch = ?",
                                   (endpoint, batch_id)).rowcount

    def expire(self, endpoint: str, before: float, limit: int = EXPIRE_CHUNK) -> int:
        """Deletes up to `limit` of the endpoint's rows created before `before` (oldest first);
        call again while it returns `limit`.

        Only the head batch of an endpoint ever has an id, and expiry starts when the head's oldest
        row is too old, so the head batch loses rows: it loses its id too, and what is left of it
        goes out under a new one (its body is no longer the same)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE outbox SET batch = NULL WHERE endpoint = ? AND batch IS NOT NULL", (endpoint,))
            return self.db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE endpoint = ? "
                                   "AND created < ? ORDER BY id LIMIT ?)", (endpoint, before, limit)).rowcount

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT endpoint, COUNT(*) FROM outbox GROUP BY endpoint").fetchall())

    def delete_endpoint(self, endpoint: str) -> int:
        with self.db:
            self.db.execute("BEGIN")
            return self.db.execute("DELETE FROM outbox WHERE endpoint = ?", (endpoint,)).rowcount

    def close(self) -> None:
        self.db.close()


class Outbox:
    """The outbox seen from the event loop: `call` runs a store method on the outbox's own thread."""

    def __init__(self, path: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-outbox")
        self._store: OutboxStore | None = None
        self.path = path

    async def open(self) -> None:
        self._store = await self._run(OutboxStore, self.path)

    @property
    def ready(self) -> bool:
        return self._store is not None

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        store = self._store
        assert store is not None, "outbox not open"
        return await self._run(fn, store, *args)

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await self._run(store.close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
