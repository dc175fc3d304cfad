"""Where engagement lives: one row per recipient in SQLite (`<spool_dir>/engagement.db`).

Scores are kept anchored (see `score.anchored`), so every update is a single upsert that adds,
whatever order the events arrive in and however many writers there are. Writes are batched by the
caller (`EngagementRecorder`); reads come in batches too (ranking a site's queue).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mta.engagement.score import (
    CLICKED,
    OPENED,
    EngagementRecord,
    EngagementRules,
    activity_weight,
    anchored,
    from_anchored,
)
from mta.spool.securedelete import MODES, at_least_fast, mode

__all__ = ["Activity", "EngagementStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS engagement (
    recipient TEXT PRIMARY KEY,
    anchored_score REAL NOT NULL DEFAULT 0,
    last_open REAL NOT NULL DEFAULT 0,
    last_click REAL NOT NULL DEFAULT 0,
    first_delivered REAL NOT NULL DEFAULT 0,
    last_delivered REAL NOT NULL DEFAULT 0,
    opens INTEGER NOT NULL DEFAULT 0,
    clicks INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO engagement (recipient, anchored_score, last_open, last_click, first_delivered, last_delivered, opens,
                        clicks)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (recipient) DO UPDATE SET
    anchored_score = anchored_score + excluded.anchored_score,
    last_open = max(last_open, excluded.last_open),
    last_click = max(last_click, excluded.last_click),
    first_delivered = CASE WHEN first_delivered = 0 THEN excluded.first_delivered
                           WHEN excluded.first_delivered = 0 THEN first_delivered
                           ELSE min(first_delivered, excluded.first_delivered) END,
    last_delivered = max(last_delivered, excluded.last_delivered),
    opens = opens + excluded.opens,
    clicks = clicks + excluded.clicks
"""


@dataclass(frozen=True, slots=True)
class Activity:
    """One fact about a recipient: `kind` is opened, clicked or delivered."""

    recipient: str
    kind: str
    at: float


def _key(address: str) -> str:
    return address.strip().strip("<>").lower()


class EngagementStore:
    def __init__(self, path: str, rules: EngagementRules | None = None) -> None:
        self.path = path
        self.rules = rules or EngagementRules()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()       # one connection, used from the writer thread and readers
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")   # engagement is statistics, not mail
            at_least_fast(self._db)                         # see mta.spool.securedelete
            self._db.executescript(_SCHEMA)

    def record(self, activities: Iterable[Activity]) -> int:
        rows = []
        for a in activities:
            opened, clicked = a.kind == OPENED, a.kind == CLICKED
            delivered = a.kind == "delivered"
            if not (opened or clicked or delivered):
                continue
            weight = anchored(activity_weight(a.kind, self.rules), a.at, self.rules) if not delivered else 0.0
            rows.append((_key(a.recipient), weight, a.at if opened else 0.0, a.at if clicked else 0.0,
                         a.at if delivered else 0.0, a.at if delivered else 0.0, int(opened), int(clicked)))
        if rows:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany(_UPSERT, rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        return len(rows)

    def get(self, address: str, now: float) -> EngagementRecord | None:
        return self.get_many([address], now).get(_key(address))

    def get_many(self, addresses: Sequence[str], now: float) -> dict[str, EngagementRecord]:
        keys = list({_key(a) for a in addresses})
        found: dict[str, EngagementRecord] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                        "SELECT recipient, anchored_score, last_open, last_click, first_delivered, last_delivered,"
                        f" opens, clicks FROM engagement WHERE recipient IN ({marks})", chunk):
                    recipient, total, *rest = row
                    found[recipient] = EngagementRecord(recipient, from_anchored(total, now, self.rules), now, *rest)
        return found

    def erase(self, address: str) -> int:
        """Removes the address's row, its bytes zeroed (secure_delete); see mta.erasure."""
        with self._lock:
            before = mode(self._db)
            self._db.execute("PRAGMA secure_delete=ON")
            try:
                return self._db.execute("DELETE FROM engagement WHERE recipient = ?", (_key(address),)).rowcount
            finally:
                self._db.execute(f"PRAGMA secure_delete={MODES[before]}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
