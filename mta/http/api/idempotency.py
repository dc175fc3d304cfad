"""`Idempotency-Key`: the first answer to a key is kept for a day and given again to a repeat,
which queues nothing. The record is written in the same spool transaction as the message (the
`also` of Scheduler.accept), so a crash can never leave a queued message without its record, or a
record without its message: a client's retry after a lost answer is always safe.

A batch queues its messages one transaction each, so each message also gets a record of its own
("KEY#7" for the eighth), written with it, and the held-back share one ("KEY#held"). A repeat of a
batch that a crash cut short finds them (`partial`) and queues only what is missing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_idempotency (
    scope TEXT NOT NULL,          -- the API key's id (keys of different apps never collide)
    idem_key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX IF NOT EXISTS api_idempotency_by_time ON api_idempotency(created);
"""

MAX_KEY = 255


@dataclass(frozen=True, slots=True)
class Stored:
    body_hash: str
    status: int
    response: dict[str, Any]


def body_hash(path: str, body: bytes) -> str:
    return hashlib.sha256(path.encode() + b"\0" + body).hexdigest()


def ensure_table(db: sqlite3.Connection) -> None:
    # Statement by statement: executescript would commit the spool writer's open transaction.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def lookup(db: sqlite3.Connection, scope: str, key: str, not_before: float) -> Stored | None:
    row = db.execute("SELECT body_hash, status, response FROM api_idempotency WHERE scope = ? AND idem_key = ?"
                     " AND created >= ?", (scope, key, not_before)).fetchone()
    return Stored(row[0], row[1], json.loads(row[2])) if row else None


def record(db: sqlite3.Connection, scope: str, key: str, digest: str, status: int, response: dict[str, Any],
           now: float) -> None:
    db.execute("INSERT OR REPLACE INTO api_idempotency (scope, idem_key, body_hash, status, response, created)"
               " VALUES (?,?,?,?,?,?)", (scope, key, digest, status, json.dumps(response), now))


def part_key(key: str, part: str) -> str:
    return f"{key}#{part}"


def parts(db: sqlite3.Connection, scope: str, key: str, not_before: float) -> dict[str, Stored]:
    """The records of a batch's parts ("7", "held", ...) under `key`."""
    # Every "KEY#..." sorts between "KEY#" and "KEY$" ('$' follows '#'): an index range, no LIKE
    # (a key may hold LIKE's wildcards).
    rows = db.execute("SELECT idem_key, body_hash, status, response FROM api_idempotency WHERE scope = ?"
                      " AND idem_key >= ? AND idem_key < ? AND created >= ?",
                      (scope, key + "#", key + "$", not_before)).fetchall()
    return {row[0][len(key) + 1:]: Stored(row[1], row[2], json.loads(row[3])) for row in rows}


def drop_parts(db: sqlite3.Connection, scope: str, key: str) -> None:
    """The batch's own record now answers for all of it."""
    db.execute("DELETE FROM api_idempotency WHERE scope = ? AND idem_key >= ? AND idem_key < ?",
               (scope, key + "#", key + "$"))


def prune(db: sqlite3.Connection, before: float) -> int:
    return db.execute("DELETE FROM api_idempotency WHERE created < ?", (before,)).rowcount
