"""Writes of one spool transaction held back so that each table gets one statement per group.

The spool's writer thread gives up the GIL for every SQLite step and must win it back from the
busy event loop (a futex round trip, and often a wait). Executed one by one, a relayed message
cost about ten steps: the message, its body and each recipient inserted, the attempt marked, the
recipients, message and body deleted (with a step per returned row), the delivery recorded. Held
back until the group commits, the same work takes a handful of multi-row statements per group.

Nothing here changes what is durable: the writes run inside the group's transaction, before its
COMMIT (SpoolStore.flush). Ids are assigned here rather than by SQLite (see SpoolStore._take_ids)
so that an insert can answer at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

MESSAGE_COLUMNS = ("id", "queue_id", "sender", "created", "size", "stream", "priority", "tenant", "pool",
                   "sending_domain", "header_message_id", "smtputf8", "client", "auth_user", "campaign",
                   "send_at", "variant")
BODY_COLUMNS = ("id", "data")
RECIPIENT_COLUMNS = ("id", "message", "address", "domain", "priority", "state", "next_attempt")
DELIVERY_COLUMNS = ("queue_id", "recipient", "time", "source", "site", "mx_hosts", "sending_domain", "tenant",
                    "stream", "header_message_id", "sender", "campaign", "variant")

IDS_PER_STATEMENT = 500
# SQLite copies every bound blob until the statement is done: bodies go in statements of at most
# this many bytes, so a group of large messages costs no more memory than one of them at a time.
BODY_BYTES_PER_STATEMENT = 4 << 20


@dataclass(slots=True)
class HeldWrites:
    """What the transaction has been asked to write and has not yet written. SpoolStore.flush
    writes them in this order: inserts, attempt marks, removals, delivery records. Any order of
    calls within a group gives the same rows: a mark or a removal only ever concerns rows already
    inserted, a mark's condition (CLAIMED or ATTEMPTING) fails on a removed row as on a missing
    one, and delivery records stand alone. Every other write flushes these first."""

    messages: list[tuple] = field(default_factory=list)
    bodies: list[tuple] = field(default_factory=list)
    recipients: list[tuple] = field(default_factory=list)
    attempting: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    deliveries: list[tuple] = field(default_factory=list)


def insert_rows(db: sqlite3.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """INSERTs with as many rows per statement as SQLite's variable limit allows."""
    if not rows:
        return
    per_statement = max(1, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns))
    one = "(" + ",".join("?" * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for i in range(0, len(rows), per_statement):
        chunk = rows[i:i + per_statement]
        db.execute(head + ",".join([one] * len(chunk)), [v for row in chunk for v in row])


def insert_bodies(db: sqlite3.Connection, rows: Sequence[tuple[int, bytes]]) -> None:
    """(id, data) rows into `bodies`, in statements of at most BODY_BYTES_PER_STATEMENT (or one body)."""
    start, size = 0, 0
    for i, (_id, data) in enumerate(rows):
        if i > start and size + len(data) > BODY_BYTES_PER_STATEMENT:
            insert_rows(db, "bodies", BODY_COLUMNS, rows[start:i])
            start, size = i, 0
        size += len(data)
    insert_rows(db, "bodies", BODY_COLUMNS, rows[start:])


def id_chunks(ids: Sequence[int]) -> list[tuple[Sequence[int], str]]:
    """(ids, "?,?,...") in pieces of at most IDS_PER_STATEMENT, for `IN (...)` clauses."""
    return [(chunk, ",".join("?" * len(chunk)))
            for chunk in (ids[i:i + IDS_PER_STATEMENT] for i in range(0, len(ids), IDS_PER_STATEMENT))]


def concatenated_ids(db: sqlite3.Connection, sql: str, ids: Sequence[int]) -> list[int]:
    """Runs a `SELECT group_concat(...) ... IN ({})` over `ids` in pieces: one row a piece, so
    one step, where returning a row per id would cost a step (and a GIL round trip) each."""
    out: list[int] = []
    for chunk, marks in id_chunks(ids):
        value = db.execute(sql.format(marks), chunk).fetchone()[0]
        if value:
            out += map(int, str(value).split(","))
    return out
