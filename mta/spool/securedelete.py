"""SQLite's secure_delete for the stores that may hold a recipient's address.

SQLite keeps deleted bytes until their page is reused unless secure_delete is on. Debian builds
SQLite with it on by default (SQLITE_SECURE_DELETE): deleted rows and freed pages are zeroed. A
build where it is off gets at least FAST (deleted cells zeroed inside their page, at no extra
I/O); the erasure (mta.erasure.stores) then scrubs the free pages itself. A store never lowers
what the build gives."""

from __future__ import annotations

import sqlite3

MODES = {0: "OFF", 1: "ON", 2: "FAST"}


def mode(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA secure_delete").fetchone()[0])


def at_least_fast(db: sqlite3.Connection) -> None:
    if mode(db) == 0:
        db.execute("PRAGMA secure_delete = FAST")
