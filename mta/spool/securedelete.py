"""SQLite's secure_delete for the stores that may hold a recipient's address.

SQLite keeps deleted bytes until their page is reused unless secure_delete is on. Debian builds
SQLite with it on by default (SQLITE_SECURE_DELETE): deleted rows and freed pages are zeroed.
FAST zeroes deleted cells inside their page, at no extra I/O, and leaves freed pages as they
are; the erasure (mta.erasure.stores) scrubs the free pages itself, so it is complete either way.

The spool runs with FAST: with ON, every delivered message's body was written a second time as
zeros (its freed overflow pages), which doubled what a message cost the WAL and the writer
thread (finishing a 20 KB message took 34 us of CPU, 13 us with FAST). Delivered bodies then
stay in free pages until they are reused, as a deleted queue file's blocks do on a file system.
The other stores keep what the build gives, at least FAST."""

from __future__ import annotations

import sqlite3

MODES = {0: "OFF", 1: "ON", 2: "FAST"}


def mode(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA secure_delete").fetchone()[0])


def at_least_fast(db: sqlite3.Connection) -> None:
    if mode(db) == 0:
        db.execute("PRAGMA secure_delete = FAST")


def fast(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA secure_delete = FAST")
