"""Erasure in the SQLite stores: the spool (queued recipients, messages left with none, the
delivery log, API idempotency answers that list the address, the suppression list), the API's
event index and the webhook outbox.

SQLite keeps deleted bytes until their page is reused: in the free space of a page, on the free
list, and in old WAL frames. So the stores run with secure_delete at least FAST (see
mta.spool.securedelete), the erasure's own deletes with `secure_delete = ON`,
then `scrub_free_pages` overwrites every page on the free list with zeros (it fills them with a
zero blob and frees it: I/O in proportion to the free space, inside the caller's transaction, so
the spool's writer thread can do it), and `truncate_wal` empties the WAL after the commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

from mta.erasure.match import AddressMatcher
from mta.http.api.holdback import erase_address as erase_holdback
from mta.model import ATTEMPTING, CLAIMED
from mta.spool.securedelete import MODES, mode
from mta.spool.store import SpoolStore
from mta.spool.suppression import hash_entries

SCRUB_CHUNK = 64 << 20      # bytes per zero blob (SQLite's default limit is 1e9)


@contextlib.contextmanager
def secure_delete(db: sqlite3.Connection) -> Iterator[None]:
    before = mode(db)
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.execute(f"PRAGMA secure_delete = {MODES[before]}")


def scrub_free_pages(db: sqlite3.Connection) -> int:
    """Overwrites the free list with zeros; returns the pages scrubbed. In the caller's
    transaction (or its own, if none is open)."""
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if not free:
        return 0
    page = db.execute("PRAGMA page_size").fetchone()[0]
    own = not db.in_transaction
    if own:
        db.execute("BEGIN IMMEDIATE")
    try:
        with secure_delete(db):
            db.execute("CREATE TABLE IF NOT EXISTS erasure_scrub (b BLOB)")
            left = (free + 2) * page         # a little more: the free list's trunk pages too
            while left > 0 and db.execute("PRAGMA freelist_count").fetchone()[0] > 0:
                db.execute("INSERT INTO erasure_scrub VALUES (zeroblob(?))", (min(left, SCRUB_CHUNK),))
                left -= SCRUB_CHUNK
            db.execute("DROP TABLE erasure_scrub")
        if own:
            db.execute("COMMIT")
    except BaseException:
        if own and db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return int(free)


def truncate_wal(path: str, busy_ms: int = 5000) -> bool:
    """Checkpoints and empties the WAL (old frames hold deleted rows); False if readers kept it."""
    db = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {busy_ms}")
        busy, _log, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    except sqlite3.Error:
        return False
    finally:
        db.close()


@dataclass(slots=True)
class SpoolErasure:
    recipients: int = 0                 # queued recipient rows removed
    messages: list[int] = field(default_factory=list)    # spool ids of messages removed (no recipient left)
    in_memory: list[int] = field(default_factory=list)   # removed recipient ids a daemon holds as jobs
    in_flight: int = 0                  # of those, attempts already under way (they may still leave)
    deliveries: int = 0
    idempotency: int = 0
    suppressions: int = 0               # entries now kept hashed
    held: int = 0                       # recipients of A/B batches held back for the winner
    scrubbed_pages: int = 0


def erase_spool(store: SpoolStore, matcher: AddressMatcher) -> SpoolErasure:
    """In the caller's transaction (the spool writer's group, or the CLI's own)."""
    db = store.db
    address = matcher.address
    out = SpoolErasure()
    with secure_delete(db):
        rows = db.execute("SELECT id, message, state FROM recipients WHERE lower(address) = ?",
                          (address,)).fetchall()
        db.executemany("DELETE FROM recipients WHERE id = ?", [(r[0],) for r in rows])
        out.recipients = len(rows)
        out.in_memory = [rid for rid, _m, state in rows if state in (CLAIMED, ATTEMPTING)]
        out.in_flight = sum(1 for _r, _m, state in rows if state == ATTEMPTING)
        for mid in sorted({m for _r, m, _s in rows}):
            if db.execute("SELECT 1 FROM recipients WHERE message = ? LIMIT 1", (mid,)).fetchone() is None:
                db.execute("DELETE FROM messages WHERE id = ?", (mid,))
                db.execute("DELETE FROM bodies WHERE id = ?", (mid,))
                out.messages.append(mid)
        out.deliveries = db.execute("DELETE FROM deliveries WHERE lower(recipient) = ?", (address,)).rowcount
        out.idempotency = _erase_matching(db, "api_idempotency", "rowid", "response", matcher)
        out.suppressions = hash_entries(db, address)
        out.held = erase_holdback(db, address)
    out.scrubbed_pages = scrub_free_pages(db)
    return out


def _table_exists(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _erase_matching(db: sqlite3.Connection, table: str, key: str, text: str, matcher: AddressMatcher) -> int:
    """Deletes the rows whose `text` column names the address (found with instr, confirmed with
    the matcher, which does not take "joann@" for "ann@")."""
    if not _table_exists(db, table):
        return 0
    rows = db.execute(f"SELECT {key}, {text} FROM {table} WHERE instr(lower({text}), ?) > 0",
                      (matcher.address,)).fetchall()
    doomed = [(k,) for k, value in rows if matcher.in_text(value if isinstance(value, str) else "")]
    db.executemany(f"DELETE FROM {table} WHERE {key} = ?", doomed)
    return len(doomed)


def erase_sqlite_file(path: str, table: str, key: str, text: str, matcher: AddressMatcher,
                      recipient_column: str = "") -> tuple[int, bool]:
    """Rows of `table` in the database at `path` that name the address, deleted securely, the free
    list scrubbed and the WAL emptied: (rows removed, WAL emptied). Its own connection: safe beside
    a running daemon's (WAL mode, a busy timeout)."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 60000")
        n = erase_rows(db, table, key, text, matcher, recipient_column)
    finally:
        db.close()
    return n, truncate_wal(path)


def erase_rows(db: sqlite3.Connection, table: str, key: str, text: str, matcher: AddressMatcher,
               recipient_column: str = "") -> int:
    """erase_sqlite_file's work on an open connection (autocommit mode), in its own transaction."""
    if not _table_exists(db, table):
        return 0
    db.execute("BEGIN IMMEDIATE")
    try:
        with secure_delete(db):
            n = 0
            if recipient_column:
                n = db.execute(f"DELETE FROM {table} WHERE lower({recipient_column}) = ?",
                               (matcher.address,)).rowcount
            n += _erase_matching(db, table, key, text, matcher)
        scrub_free_pages(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return n
