"""API keys: made and revoked by `mta api-key`, checked by the API on every request.

Only a SHA-256 hash of each key is stored (in `api.db` in the spool directory): a key is 32
random bytes, so a fast hash is as good as a slow one and costs microseconds per request. The
daemon keeps the keys in memory and reloads them when another process (the CLI) changed the
database: the file's status (size, time, inode; a rollback journal, so every commit writes the
file) tells at the cost of a stat, and SQLite's `data_version` is asked at least once a second
in case two changes fell into one tick of the file system's clock.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

KEY_PREFIX = "mta_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    operator INTEGER NOT NULL,
    created REAL NOT NULL,
    key_hash TEXT NOT NULL UNIQUE
);
"""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    tenant: str
    operator: bool
    created: float


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class KeyStore:
    def __init__(self, spool_dir: str) -> None:
        os.makedirs(spool_dir, mode=0o750, exist_ok=True)
        self.path = os.path.join(spool_dir, "api.db")
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = DELETE")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(SCHEMA)
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._version = -1
        self._file_state: tuple[int, int, int] = (0, 0, 0)
        self._checked = 0.0
        self._by_hash: dict[str, ApiKey] = {}

    def close(self) -> None:
        self.db.close()

    def create(self, name: str, tenant: str, operator: bool, now: float) -> tuple[ApiKey, str]:
        """A new key: the record and the key itself, which is shown once and never stored."""
        key = new_key()
        record = ApiKey(secrets.token_hex(4), name or f"key-{secrets.token_hex(3)}", tenant, operator, now)
        with self._lock:
            try:
                self.db.execute("INSERT INTO api_keys (id, name, tenant, operator, created, key_hash)"
                                " VALUES (?,?,?,?,?,?)", (record.id, record.name, tenant, int(operator), now,
                                                          hash_key(key)))
            except sqlite3.IntegrityError:
                raise ValueError(f"an API key named {record.name!r} exists already") from None
            self._version = -1       # data_version does not count this connection's own writes
        return record, key

    def listing(self) -> list[ApiKey]:
        with self._lock:
            rows = self.db.execute("SELECT id, name, tenant, operator, created FROM api_keys ORDER BY created")
            return [ApiKey(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def revoke(self, name_or_id: str) -> int:
        with self._lock:
            self._version = -1
            return self.db.execute("DELETE FROM api_keys WHERE name = ? OR id = ?",
                                   (name_or_id, name_or_id)).rowcount

    def check(self, key: str) -> ApiKey | None:
        """The key's record if `key` is a live key (revocations by the CLI take effect at once)."""
        # Looked up by hash: the time taken says nothing about the key.
        return self.check_hash(hash_key(key))

    def check_hash(self, key_hash: str) -> ApiKey | None:
        """As `check`, for a key known by its hash (a console session keeps only that)."""
        with self._lock:
            self._refresh()
            return self._by_hash.get(key_hash)


    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            state = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            state = (0, 0, 0)
        now = time.monotonic()
        if state == self._file_state and now - self._checked < 1.0 and self._version >= 0:
            return
        self._file_state, self._checked = state, now
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._version = version
            self._by_hash = {r[5]: ApiKey(r[0], r[1], r[2], bool(r[3]), r[4]) for r in self.db.execute(
                "SELECT id, name, tenant, operator, created, key_hash FROM api_keys")}


def bearer_key(authorization: str) -> str:
    scheme, _sp, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
