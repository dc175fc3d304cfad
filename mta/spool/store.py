"""The durable queue: one SQLite database in WAL mode with synchronous=FULL.

Every method here is synchronous and runs on the spool's writer thread (or in a CLI process).
The store is the single source of truth: the daemon's in-memory queues can be rebuilt from it at
any time, which is what `recover()` does at start-up.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mta.model import ATTEMPTING, CLAIMED, HELD, WAITING, Deferral, MessageInfo, NewMessage, Recipient
from mta.spool.heldwrites import (
    DELIVERY_COLUMNS,
    MESSAGE_COLUMNS,
    RECIPIENT_COLUMNS,
    HeldWrites,
    concatenated_ids,
    id_chunks,
    insert_bodies,
    insert_rows,
)
from mta.spool.securedelete import fast

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    stream TEXT NOT NULL,
    priority INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    pool TEXT NOT NULL,
    sending_domain TEXT NOT NULL,
    header_message_id TEXT NOT NULL,
    smtputf8 INTEGER NOT NULL,
    client TEXT NOT NULL,
    auth_user TEXT NOT NULL,
    warned INTEGER NOT NULL DEFAULT 0,
    campaign TEXT NOT NULL DEFAULT '',
    send_at REAL NOT NULL DEFAULT 0    -- a scheduled send: not due before (0 = at once)
);
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY,            -- = messages.id
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS recipients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message INTEGER NOT NULL,
    address TEXT NOT NULL,
    domain TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_code INTEGER NOT NULL DEFAULT 0,
    last_text TEXT NOT NULL DEFAULT '',
    last_site TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS recipients_by_message ON recipients(message);
CREATE INDEX IF NOT EXISTS recipients_due ON recipients(domain, priority, next_attempt) WHERE state = 0;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Addresses not to send to: per tenant, or for everyone with tenant ''.
CREATE TABLE IF NOT EXISTS suppressions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,          -- hard_bounce | complaint | unsubscribe | manual | soft_bounce
    created REAL NOT NULL,
    expires REAL NOT NULL,         -- 0 = never
    source TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant, address)
);
-- What went where, so a later bounce or complaint can be attributed to its source IP and ISP.
CREATE TABLE IF NOT EXISTS deliveries (
    queue_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    site TEXT NOT NULL,
    mx_hosts TEXT NOT NULL,
    sending_domain TEXT NOT NULL,
    tenant TEXT NOT NULL,
    stream TEXT NOT NULL,
    header_message_id TEXT NOT NULL,
    sender TEXT NOT NULL DEFAULT '',  -- envelope sender: the mailbox a complaint counts against
    campaign TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deliveries_by_message ON deliveries(queue_id, recipient);
CREATE INDEX IF NOT EXISTS deliveries_by_header_id ON deliveries(header_message_id);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries(time);
"""

# Columns added after a spool was first created: (table, column, declaration). A spool written by
# an older version gets them at the first read-write open (ALTER TABLE ADD COLUMN only writes the
# schema, whatever the table's size); a read-only open of such a spool reads '' in their place.
ADDED_COLUMNS = (
    ("deliveries", "sender", "TEXT NOT NULL DEFAULT ''"),
    ("messages", "campaign", "TEXT NOT NULL DEFAULT ''"),
    ("deliveries", "campaign", "TEXT NOT NULL DEFAULT ''"),
    ("messages", "send_at", "REAL NOT NULL DEFAULT 0"),
    ("messages", "variant", "TEXT NOT NULL DEFAULT ''"),
    ("deliveries", "variant", "TEXT NOT NULL DEFAULT ''"),
    # 1: cancelled through the API while an attempt ran; what that attempt leaves goes at start-up
    ("messages", "cancelled", "INTEGER NOT NULL DEFAULT 0"),
)

_MESSAGE_COLUMNS = ("m.id, m.queue_id, m.sender, m.created, m.size, m.stream, m.priority, m.tenant, m.pool, "
                    "m.sending_domain, m.header_message_id, m.smtputf8, m.warned, {campaign}, {variant}")


@dataclass(slots=True)
class DomainBacklog:
    domain: str
    waiting: int
    next_due: float


@dataclass(slots=True)
class SiteBacklog:
    site: str           # site of the last attempt, else the recipient domain (as `mta queue stats` groups)
    state: str          # queued (never attempted), deferred (attempted before), held
    recipients: int
    messages: int
    oldest: float       # creation time of the oldest message


@dataclass(slots=True)
class CancelledMessage:
    id: int
    queue_id: str
    sender: str
    tenant: str
    cancelled: list[str]        # recipients removed
    in_flight: list[str]        # recipients an attempt has started for: they may leave still


@dataclass(slots=True)
class RecoveryReport:
    recovered_recipients: int       # rows that were owned by the previous process
    possible_duplicates: int        # rows whose attempt had started: the MX may have them already
    domains: list[DomainBacklog]
    journaled: int = 0              # delivered recipients known only from the delivery journal
    # recipients of messages cancelled while an attempt ran, removed now instead of re-queued
    cancelled: list[CancelledMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EngagementRanking:
    """How `claim` orders recipients of ranked priorities: engaged (an anchored score at or above
    `engaged_from`) most engaged first, then unknown ones, then those mailed since before
    `inactive_before` without engaging. Anchored scores order like current ones (see
    mta.engagement.score), so no decay is computed per row."""

    priorities: frozenset[int]
    engaged_from: float
    inactive_before: float


class SpoolStore:
    def __init__(self, spool_dir: str, readonly: bool = False) -> None:
        self.spool_dir = spool_dir
        self.path = os.path.join(spool_dir, "queue.db")
        self._engagement = False        # attach_engagement() was called
        self._held: HeldWrites | None = None         # see mta.spool.heldwrites
        self._next_message_id: int | None = None      # assigned ids in this transaction
        self._next_recipient_id = 0
        if readonly:
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"no spool at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30,
                                      check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA query_only = ON")
            self._columns()
            return
        os.makedirs(spool_dir, mode=0o750, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        # Bodies are written once and read at most a few times: a modest page cache suffices.
        self.db.execute("PRAGMA cache_size = -16384")
        self.db.execute("PRAGMA busy_timeout = 30000")
        fast(self.db)       # deleted cells zeroed; freed body pages are not (see mta.spool.securedelete)
        self.db.executescript(SCHEMA)
        self._migrate()
        self._columns()
        _fsync_dir(spool_dir)

    def _missing_columns(self) -> list[tuple[str, str, str]]:
        have: dict[str, set[str]] = {}
        for table, _column, _decl in ADDED_COLUMNS:
            if table not in have:
                have[table] = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
        return [(t, c, d) for t, c, d in ADDED_COLUMNS if c not in have[t]]

    def _migrate(self) -> None:
        """Adds the columns an older spool lacks, in one transaction (another process opening
        the spool at the same time finds them there once it has the lock)."""
        if not self._missing_columns():
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, decl in self._missing_columns():
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _columns(self) -> None:
        missing = {(t, c) for t, c, _d in self._missing_columns()}
        self.has_campaign = ("messages", "campaign") not in missing
        self.has_send_at = ("messages", "send_at") not in missing
        self.has_variant = ("messages", "variant") not in missing
        campaign = "m.campaign" if self.has_campaign else "''"
        variant = "m.variant" if self.has_variant else "''"
        self.message_columns = _MESSAGE_COLUMNS.format(campaign=campaign, variant=variant)

    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, with the writes held back in this transaction done first, so whatever
        runs SQL on it (here or in an operation's own code) sees them."""
        if self._held is not None:
            self.flush()
        return self._db

    # ------------------------------------------------------------------ transactions
    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self._next_message_id = None    # another process may have written since: ask again

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        self._held = None
        self._next_message_id = None
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def drop_held(self) -> None:
        """Forgets the held-back writes unwritten: their operation failed, and goes back to its
        savepoint (written, a bad one would fail again there and sink the whole group)."""
        self._held = None

    def _hold(self) -> HeldWrites | None:
        """Where to hold a write back: inside a transaction (a writer group) only; outside one,
        a write is its own transaction and is done at once."""
        if not self._db.in_transaction:
            return None
        if self._held is None:
            self._held = HeldWrites()
        return self._held

    def flush(self) -> None:
        """Does the held-back writes, one statement per table (or per few hundred rows)."""
        held, self._held = self._held, None     # first: a failed flush must not run again
        if held is None:
            return
        db = self._db
        insert_rows(db, "messages", MESSAGE_COLUMNS, held.messages)
        insert_bodies(db, held.bodies)
        insert_rows(db, "recipients", RECIPIENT_COLUMNS, held.recipients)
        self._mark_attempting_now(held.attempting)
        if held.finished:
            self._finish_now(held.finished)
        insert_rows(db, "deliveries", DELIVERY_COLUMNS, held.deliveries)

    def _take_ids(self, recipients: int) -> tuple[int, int]:
        """A new message id and the first of `recipients` new recipient ids. The tables are
        AUTOINCREMENT: an id is above every id the table ever had (sqlite_sequence), and an
        explicit id moves that mark like a generated one. Read once per transaction, under its
        write lock, so no other writer can take the same ids."""
        if self._next_message_id is None:
            row = self._db.execute(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),"
                " coalesce((SELECT max(id) FROM messages), 0)),"
                " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'recipients'), 0),"
                " coalesce((SELECT max(id) FROM recipients), 0))").fetchone()
            self._next_message_id, self._next_recipient_id = row[0] + 1, row[1] + 1
        mid, rid = self._next_message_id, self._next_recipient_id
        self._next_message_id += 1
        self._next_recipient_id += recipients
        return mid, rid

    # ------------------------------------------------------------------ writes
    def insert(self, msg: NewMessage, now: float) -> tuple[int, list[Recipient]]:
        held = self._hold()
        if held is None:
            return self._autocommitted(lambda: self.insert(msg, now))
        mid, rid = self._take_ids(len(msg.recipients))
        held.messages.append((mid, msg.queue_id, msg.sender, msg.created, len(msg.body), msg.stream, msg.priority,
                              msg.tenant, msg.pool, msg.sending_domain, msg.header_message_id, int(msg.smtputf8),
                              msg.client, msg.auth_user, msg.campaign, msg.not_before, msg.variant))
        held.bodies.append((mid, msg.body))
        rcpts = []
        due = max(now, msg.not_before)
        for address in msg.recipients:
            domain = address.rpartition("@")[2].lower()
            state = CLAIMED if domain in msg.claimed_domains else WAITING
            held.recipients.append((rid, mid, address, domain, msg.priority, state, due))
            rcpts.append(Recipient(rid, address, domain))
            rid += 1
        return mid, rcpts

    def _autocommitted(self, write: Callable[[], _T]) -> _T:
        """A write outside a writer group (a CLI, a test) in a transaction of its own."""
        self.begin()
        try:
            result = write()
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return result

    def mark_attempting(self, recipient_ids: Sequence[int]) -> None:
        """Only rows in memory: the mark is a regular write, so the attempt's outcome (an urgent
        one) may be committed first, and a deferred (or held) row must not be marked after it,
        where no claim would ever find it again."""
        held = self._hold()
        if held is not None:
            held.attempting += recipient_ids
        else:
            self._mark_attempting_now(list(recipient_ids))

    def _mark_attempting_now(self, recipient_ids: Sequence[int]) -> None:
        for chunk, marks in id_chunks(recipient_ids):
            self._db.execute(f"UPDATE recipients SET state = ? WHERE id IN ({marks}) AND state IN (?, ?)",
                             (ATTEMPTING, *chunk, CLAIMED, ATTEMPTING))

    def finish(self, recipient_ids: Sequence[int]) -> list[int]:
        """Removes recipients that reached a final state; returns ids of messages now complete."""
        self.flush()
        return self._finish_now(recipient_ids)

    def finish_later(self, recipient_ids: Sequence[int]) -> None:
        """finish() for a caller that needs no answer: in a writer group, held back to go with
        the group's other removals."""
        held = self._hold()
        if held is not None:
            held.finished += recipient_ids
        else:
            self._finish_now(recipient_ids)

    def _finish_now(self, recipient_ids: Sequence[int]) -> list[int]:
        if not recipient_ids:
            return []
        db = self._db
        # A fixed handful of steps whatever the count: each step gives up the GIL (see heldwrites).
        ids = sorted(set(recipient_ids))
        messages = sorted(set(concatenated_ids(
            db, "SELECT group_concat(message) FROM recipients WHERE id IN ({})", ids)))
        for chunk, marks in id_chunks(ids):
            db.execute(f"DELETE FROM recipients WHERE id IN ({marks})", chunk)
        done = concatenated_ids(
            db, "SELECT group_concat(id) FROM messages WHERE id IN ({}) AND NOT EXISTS"
                " (SELECT 1 FROM recipients r WHERE r.message = messages.id)", messages)
        for chunk, marks in id_chunks(done):
            db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
            db.execute(f"DELETE FROM bodies WHERE id IN ({marks})", chunk)
        return sorted(done)

    def defer(self, deferrals: Iterable[Deferral]) -> None:
        self.db.executemany(
            "UPDATE recipients SET state = ?, attempts = ?, next_attempt = ?, last_code = ?, last_text = ?,"
            " last_site = ? WHERE id = ?",
            [(WAITING, d.attempts, d.next_attempt, d.code, d.text[:1000], d.site, d.recipient_id)
             for d in deferrals])

    def release(self, recipient_ids: Sequence[int]) -> None:
        """Gives claimed rows back to the on-disk queue without counting an attempt."""
        self.db.executemany("UPDATE recipients SET state = ? WHERE id = ? AND state <> ?",
                            [(WAITING, r, HELD) for r in recipient_ids])

    def record_deliveries(self, rows: Sequence[tuple]) -> None:
        """(queue_id, recipient, time, source, site, mx_hosts, sending_domain, tenant, stream, message_id,
        sender, campaign[, variant])."""
        if rows and len(rows[0]) == 12:
            rows = [(*r, "") for r in rows]
        held = self._hold()
        if held is not None:
            held.deliveries += rows
        else:
            insert_rows(self.db, "deliveries", DELIVERY_COLUMNS, rows)

    def prune_deliveries(self, before: float, limit: int = 10000) -> int:
        return self.db.execute("DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries"
                               " WHERE time < ? LIMIT ?)", (before, limit)).rowcount

    def set_warned(self, message_id: int) -> None:
        self.db.execute("UPDATE messages SET warned = 1 WHERE id = ?", (message_id,))

    def attach_engagement(self, path: str) -> None:
        """Makes the engagement store readable to `claim` (as schema `eng`); before any transaction."""
        self.db.execute("ATTACH DATABASE ? AS eng", (path,))
        self._engagement = True

    def claim(self, domain: str, now: float, limit: int,
              ranking: EngagementRanking | None = None) -> list[tuple[MessageInfo, Recipient]]:
        """Takes up to `limit` due recipients of `domain` (highest priority first) into memory.
        With `ranking`, recipients of its priorities come most engaged first (see EngagementRanking)."""
        out: list[tuple[MessageInfo, Recipient]] = []
        priorities = [r[0] for r in self.db.execute(
            "SELECT DISTINCT priority FROM recipients WHERE domain = ? AND state = 0 ORDER BY priority",
            (domain,))]
        for prio in priorities:
            if len(out) >= limit:
                break
            if ranking is not None and prio in ranking.priorities and self._engagement:
                rows = self.db.execute(
                    f"SELECT r.id, r.address, r.domain, r.attempts, {self.message_columns}"
                    " FROM recipients r INDEXED BY recipients_due JOIN messages m ON m.id = r.message"
                    " LEFT JOIN eng.engagement e ON e.recipient = lower(r.address)"
                    " WHERE r.domain = ? AND r.priority = ? AND r.state = 0 AND r.next_attempt <= ?"
                    " ORDER BY CASE WHEN e.anchored_score >= ? THEN 0"
                    "  WHEN e.first_delivered > 0 AND max(e.first_delivered, e.last_open, e.last_click) <= ? THEN 2"
                    "  ELSE 1 END, e.anchored_score DESC, r.next_attempt LIMIT ?",
                    (domain, prio, now, ranking.engaged_from, ranking.inactive_before, limit - len(out))).fetchall()
            else:
                rows = self.db.execute(
                    f"SELECT r.id, r.address, r.domain, r.attempts, {self.message_columns}"
                    " FROM recipients r INDEXED BY recipients_due JOIN messages m ON m.id = r.message"
                    " WHERE r.domain = ? AND r.priority = ? AND r.state = 0 AND r.next_attempt <= ?"
                    " ORDER BY r.next_attempt LIMIT ?", (domain, prio, now, limit - len(out))).fetchall()
            for row in rows:
                out.append((_message_from_row(row[4:]), Recipient(row[0], row[1], row[2], row[3])))
        if out:
            self.db.executemany("UPDATE recipients SET state = ? WHERE id = ?",
                                [(CLAIMED, r.id) for _m, r in out])
        return out

    def next_due(self, domain: str) -> float | None:
        row = self.db.execute("SELECT MIN(next_attempt) FROM recipients WHERE domain = ? AND state = 0",
                              (domain,)).fetchone()
        return row[0] if row else None

    def recover(self, delivered: Sequence[int] = (), in_doubt: Sequence[int] = (),
                noted: Collection[int] = ()) -> RecoveryReport:
        """Start-up: recipients the delivery journal says were delivered are finished; everything
        else the previous process owned goes back to WAITING. Possible duplicates: what the
        journal says was attempted with no outcome (`in_doubt`), and attempts marked in the spool
        that the journal has no note of (it was full or failing)."""
        journaled = 0
        if delivered:
            journaled = len(self._select_in("SELECT id FROM recipients WHERE id IN ({})", sorted(set(delivered))))
            self.finish(sorted(set(delivered)))
        # Before counting doubtful rows: a cancelled message's are removed, not sent again.
        cancelled = self._remove_cancelled()
        doubtful = {row[0] for row in self._select_in("SELECT id FROM recipients WHERE id IN ({})",
                                                      sorted(set(in_doubt)))}
        doubtful |= {row[0] for row in self.db.execute("SELECT id FROM recipients WHERE state = ?", (ATTEMPTING,))
                     if row[0] not in noted}
        duplicates = len(doubtful)
        recovered = self.db.execute("UPDATE recipients SET state = ? WHERE state IN (?, ?)",
                                    (WAITING, CLAIMED, ATTEMPTING)).rowcount
        if duplicates:
            total = int(self.get_meta("possible_duplicates") or 0) + duplicates
            self.set_meta("possible_duplicates", str(total))
        return RecoveryReport(recovered, duplicates, self.domain_backlog(), journaled, cancelled)

    def _remove_cancelled(self) -> list[CancelledMessage]:
        """The recipients left of messages cancelled while an attempt ran (start-up: nothing runs
        now), with the messages themselves."""
        found = self.db.execute("SELECT id, queue_id, sender, tenant FROM messages WHERE cancelled = 1").fetchall()
        out = []
        for mid, queue_id, sender, tenant in found:
            rows = self.db.execute("SELECT id, address FROM recipients WHERE message = ?", (mid,)).fetchall()
            self.db.execute("DELETE FROM recipients WHERE message = ?", (mid,))
            self.db.execute("DELETE FROM messages WHERE id = ?", (mid,))
            self.db.execute("DELETE FROM bodies WHERE id = ?", (mid,))
            out.append(CancelledMessage(mid, queue_id, sender, tenant, [a for _r, a in rows], []))
        return out

    def retry_all(self, now: float) -> int:
        """Makes every waiting recipient due now, but those of scheduled sends whose time has not
        come (a flush retries; it does not send early); returns how many."""
        if not self.has_send_at:
            return self.db.execute("UPDATE recipients SET next_attempt = ? WHERE state = ? AND next_attempt > ?",
                                   (now, WAITING, now)).rowcount
        return self.db.execute(
            "UPDATE recipients SET next_attempt = ? WHERE state = ? AND next_attempt > ? AND NOT EXISTS"
            " (SELECT 1 FROM messages m WHERE m.id = recipients.message AND m.send_at > ?)",
            (now, WAITING, now, now)).rowcount

    def domain_backlog(self) -> list[DomainBacklog]:
        return [DomainBacklog(d, n, due) for d, n, due in self.db.execute(
            "SELECT domain, COUNT(*), MIN(next_attempt) FROM recipients WHERE state = 0 GROUP BY domain")]

    def site_backlog(self) -> list[SiteBacklog]:
        """Everything on disk by site and state, for the queue gauges: one scan of the recipients
        (about 0.7 s per million rows; run it off the event loop), then the oldest messages' times."""
        rows = self.db.execute(
            "SELECT CASE WHEN last_site <> '' THEN last_site ELSE domain END,"
            " CASE WHEN state = ? THEN 'held' WHEN attempts > 0 THEN 'deferred' ELSE 'queued' END,"
            " COUNT(*), COUNT(DISTINCT message), MIN(message) FROM recipients GROUP BY 1, 2", (HELD,)).fetchall()
        created = dict(self._select_in("SELECT id, created FROM messages WHERE id IN ({})",
                                       sorted({row[4] for row in rows})))
        return [SiteBacklog(site, state, n, m, created.get(first, 0.0)) for site, state, n, m, first in rows]

    # ------------------------------------------------------------------ operator actions
    def message_ids(self, queue_ids: Sequence[str]) -> list[int]:
        """The spool ids of these queue ids (unknown ones are left out)."""
        return self._message_ids(queue_ids)

    def _message_ids(self, queue_ids: Sequence[str]) -> list[int]:
        return [row[0] for row in self._select_in("SELECT id FROM messages WHERE queue_id IN ({})",
                                                  [q.upper() for q in queue_ids])]  # type: ignore[list-item]

    def delete_messages(self, queue_ids: Sequence[str]) -> list[tuple[int, str, str, list[str]]]:
        """Removes messages whatever their state: (id, queue id, sender, recipients) of each."""
        out = []
        for mid in self._message_ids(queue_ids):
            qid, sender = self.db.execute("SELECT queue_id, sender FROM messages WHERE id = ?", (mid,)).fetchone()
            rcpts = [r[0] for r in self.db.execute("SELECT address FROM recipients WHERE message = ?", (mid,))]
            self.db.execute("DELETE FROM recipients WHERE message = ?", (mid,))
            self.db.execute("DELETE FROM messages WHERE id = ?", (mid,))
            self.db.execute("DELETE FROM bodies WHERE id = ?", (mid,))
            out.append((mid, qid, sender, rcpts))
        return out

    def retry_messages(self, queue_ids: Sequence[str], now: float) -> list[str]:
        """Makes the waiting recipients of these messages due now (scheduled sends stay scheduled);
        returns their domains."""
        domains: set[str] = set()
        for mid in self._message_ids(queue_ids):
            if self._send_at(mid) > now:
                continue
            domains.update(r[0] for r in self.db.execute(
                "SELECT DISTINCT domain FROM recipients WHERE message = ? AND state = ?", (mid, WAITING)))
            self.db.execute("UPDATE recipients SET next_attempt = ? WHERE message = ? AND state = ?",
                            (now, mid, WAITING))
        return sorted(domains)

    def _send_at(self, mid: int) -> float:
        if not self.has_send_at:
            return 0.0
        row = self.db.execute("SELECT send_at FROM messages WHERE id = ?", (mid,)).fetchone()
        return float(row[0]) if row else 0.0

    def cancel_message(self, queue_id: str, tenant: str | None) -> CancelledMessage | None:
        """Removes the recipients of a message that no attempt has started for (waiting, scheduled,
        claimed into memory, held); the message goes when none is left. None if there is no such
        message (or it belongs to another tenant, when `tenant` is given)."""
        row = self.db.execute("SELECT id, tenant, sender FROM messages WHERE queue_id = ?",
                              (queue_id.upper(),)).fetchone()
        if row is None or (tenant is not None and row[1] != tenant):
            return None
        mid, msg_tenant, sender = row
        rows = self.db.execute("SELECT id, address, state FROM recipients WHERE message = ?", (mid,)).fetchall()
        cancelled = [(rid, address) for rid, address, state in rows if state != ATTEMPTING]
        in_flight = [address for _rid, address, state in rows if state == ATTEMPTING]
        self.db.executemany("DELETE FROM recipients WHERE id = ?", [(rid,) for rid, _a in cancelled])
        if not in_flight:
            self.db.execute("DELETE FROM messages WHERE id = ?", (mid,))
            self.db.execute("DELETE FROM bodies WHERE id = ?", (mid,))
        else:
            # Should the attempt end deferred and this process stop before the daemon drops its
            # rows (Scheduler.cancelled is memory), the next start removes them (recover).
            self.db.execute("UPDATE messages SET cancelled = 1 WHERE id = ?", (mid,))
        return CancelledMessage(mid, queue_id.upper(), sender, msg_tenant, [a for _r, a in cancelled], in_flight)

    def cancel_rows(self, recipient_ids: Sequence[int]) -> list[int]:
        """Removes these recipients (of a cancelled message met again in memory); returns the ids
        that were still there."""
        there = [row[0] for row in self._select_in("SELECT id FROM recipients WHERE id IN ({})", recipient_ids)]
        self.finish(there)
        return there

    def hold(self, queue_ids: Sequence[str]) -> int:
        """Holds the recipients waiting on disk or in the daemon's memory (CLAIMED: the daemon
        takes those jobs out of memory first, see mta.queue.siteops.hold_messages; offline they
        are stale claims). Recipients in a transaction finish it."""
        n = 0
        for mid in self._message_ids(queue_ids):
            n += self.db.execute("UPDATE recipients SET state = ? WHERE message = ? AND state IN (?, ?)",
                                 (HELD, mid, WAITING, CLAIMED)).rowcount
        return n

    def release_held(self, queue_ids: Sequence[str], now: float) -> list[str]:
        domains: set[str] = set()
        for mid in self._message_ids(queue_ids):
            domains.update(r[0] for r in self.db.execute(
                "SELECT DISTINCT domain FROM recipients WHERE message = ? AND state = ?", (mid, HELD)))
            self.db.execute("UPDATE recipients SET state = ?, next_attempt = ? WHERE message = ? AND state = ?",
                            (WAITING, now, mid, HELD))
        return sorted(domains)

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                        " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # ------------------------------------------------------------------ reads
    def body(self, message_id: int) -> bytes | None:
        row = self.db.execute("SELECT data FROM bodies WHERE id = ?", (message_id,)).fetchone()
        return bytes(row[0]) if row else None

    def message(self, message_id: int) -> MessageInfo | None:
        row = self.db.execute(f"SELECT {self.message_columns} FROM messages m WHERE m.id = ?",
                              (message_id,)).fetchone()
        return _message_from_row(row) if row else None

    def _select_in(self, sql: str, ids: Sequence[int]) -> list[tuple]:
        out: list[tuple] = []
        for chunk, marks in id_chunks(ids):
            out += self.db.execute(sql.format(marks), chunk).fetchall()
        return out


def _message_from_row(row: Sequence) -> MessageInfo:
    return MessageInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
                       row[10], bool(row[11]), bool(row[12]), row[13], row[14])


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["HELD", "DomainBacklog", "RecoveryReport", "SpoolStore"]
