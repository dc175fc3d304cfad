"""The embedded default store: one SQLite file in WAL mode.

Each take batch and each record update is one `BEGIN IMMEDIATE` transaction, so a CLI command
and the daemon can share the file safely. Statements are short and run on the event loop's thread:
a thread hop would cost more than the few hundred microseconds they take. synchronous=NORMAL in
WAL mode survives a crash of the process (not of the machine); losing the last second of bucket
tokens after a power cut is harmless, as the buckets refill anyway.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from policy.engine.bucket import BucketState, TakePlan, TakeResult, take
from policy.engine.model import Action
from policy.store.base import KeyedMutation, Record, Store, StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL, stamp REAL, day INTEGER, used REAL);
CREATE TABLE IF NOT EXISTS records (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS actions (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value TEXT);
CREATE INDEX IF NOT EXISTS actions_key ON actions (key);
"""


class SqliteStore(Store):
    def __init__(self, path: str, history_limit: int = 100000) -> None:
        self.path = path
        self.history_limit = history_limit
        try:
            if os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            self._set_up()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite state {path}: {exc}") from None

    def _set_up(self, patience: float = 10.0) -> None:
        """WAL mode and the schema. Switching a fresh file to WAL answers "database is locked" at
        once, busy timeout or not, while another process opening it does the same (several policyd
        processes may share one file): try again for a while before giving up."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite state {self.path}: {exc}") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _load_buckets(self, db: sqlite3.Connection, keys: Sequence[str]) -> dict[str, BucketState]:
        found: dict[str, BucketState] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            rows = db.execute(f"SELECT key, tokens, stamp, day, used FROM buckets WHERE key IN "
                              f"({','.join('?' * len(chunk))})", chunk)
            found.update({k: BucketState(t, s, d, u) for k, t, s, d, u in rows})
        return found

    async def take(self, plans: Sequence[TakePlan], now: float) -> list[TakeResult]:
        results = []
        with self._transaction() as db:
            states: dict[str, BucketState | None] = dict(
                self._load_buckets(db, [s.key for p in plans for s in p.specs()]))
            changed: dict[str, BucketState] = {}
            for plan in plans:
                result, new = take(plan, states, now)
                states.update(new)
                changed.update(new)
                results.append(result)
            db.executemany("INSERT OR REPLACE INTO buckets (key, tokens, stamp, day, used) VALUES (?,?,?,?,?)",
                           [(k, s.tokens, s.stamp, s.day, s.used) for k, s in changed.items()])
        return results

    async def buckets(self, keys: Sequence[str]) -> dict[str, BucketState]:
        return self._load_buckets(self._db, keys)

    async def get(self, kind: str, keys: Sequence[str]) -> dict[str, Record]:
        found: dict[str, Record] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            rows = self._db.execute(f"SELECT key, value FROM records WHERE kind = ? AND key IN "
                                    f"({','.join('?' * len(chunk))})", [kind, *chunk])
            found.update({k: json.loads(v) for k, v in rows})
        return found

    async def update_many(self, kind: str, keys: Sequence[str], mutate: KeyedMutation) -> dict[str, Record | None]:
        stored: dict[str, Record | None] = {}
        with self._transaction() as db:
            for key in dict.fromkeys(keys):
                row = db.execute("SELECT value FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
                new = mutate(key, json.loads(row[0]) if row else None)
                if new is None:
                    stored[key] = json.loads(row[0]) if row else None
                    continue
                db.execute("INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
                           (kind, key, json.dumps(new, separators=(",", ":"))))
                stored[key] = new
        return stored

    async def keys(self, kind: str) -> list[str]:
        return [k for (k,) in self._db.execute("SELECT key FROM records WHERE kind = ? ORDER BY key", (kind,))]

    async def add_actions(self, actions: Sequence[Action]) -> None:
        if not actions:
            return
        with self._transaction() as db:
            db.executemany("INSERT INTO actions (key, value) VALUES (?, ?)",
                           [(a.key, json.dumps(a.to_dict())) for a in actions])
            db.execute("DELETE FROM actions WHERE id <= (SELECT MAX(id) FROM actions) - ?", (self.history_limit,))

    async def actions(self, key_prefix: str = "", limit: int = 100) -> list[Action]:
        rows = self._db.execute("SELECT value FROM actions WHERE substr(key, 1, ?) = ? ORDER BY id DESC LIMIT ?",
                                (len(key_prefix), key_prefix, limit if limit > 0 else -1)).fetchall()
        return [Action.from_dict(json.loads(v)) for (v,) in reversed(rows)]

    async def close(self) -> None:
        self._db.close()
