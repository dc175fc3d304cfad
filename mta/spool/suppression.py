"""The suppression list: addresses we must not send to, per tenant or for everyone.

Reasons: hard_bounce, complaint, unsubscribe, manual (permanent unless given an expiry) and
soft_bounce (always with a time to live). Entries live in the spool database (table
`suppressions`), so the CLI, the inbound listener and the delivery path share them.

Delivery checks every recipient. To keep that off the disk for the common case (not
suppressed), the daemon holds a set of 64-bit hashes of suppressed addresses and asks the
database only on a hit; the set follows the table by polling new rows, so entries added by the
CLI while the daemon runs are seen within seconds.

An erased address (`mta erase`, GDPR) keeps its suppression, but only as a hash ("sha256:<hex>"
of the normalised address): lookups try both forms, and the in-memory set is keyed by the same
hash, so a hashed entry still stops mail to the address without the list naming it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

REASONS = ("hard_bounce", "complaint", "unsubscribe", "manual", "soft_bounce")
GLOBAL = ""


@dataclass(frozen=True, slots=True)
class Suppression:
    tenant: str
    address: str
    reason: str
    created: float
    expires: float = 0.0
    source: str = ""
    detail: str = ""


def normalize(address: str) -> str:
    return address.strip().strip("<>").lower()


HASHED = "sha256:"


def hashed_address(address: str) -> str:
    """The form an erased address keeps in the list."""
    return HASHED + hashlib.sha256(normalize(address).encode()).hexdigest()


def address_hash(address: str) -> int:
    """The in-memory filter's key: the first 64 bits of the address's SHA-256, so an entry stored
    hashed (hashed_address) has the same key as the address it stands for."""
    return int.from_bytes(hashlib.sha256(normalize(address).encode()).digest()[:8], "big")


def stored_hash(stored: str) -> int:
    """address_hash of the address a row stands for, whether it is stored plain or hashed."""
    if stored.startswith(HASHED):
        return int(stored[len(HASHED):len(HASHED) + 16], 16)
    return address_hash(stored)


def _forms(address: str) -> tuple[str, str]:
    return normalize(address), hashed_address(address)


def add(db: sqlite3.Connection, entry: Suppression) -> None:
    """Adds or replaces an entry; a permanent reason is never downgraded to a soft bounce."""
    if entry.reason not in REASONS:
        raise ValueError(f"unknown suppression reason {entry.reason!r} (one of {', '.join(REASONS)})")
    address = normalize(entry.address)
    if entry.reason == "soft_bounce":
        current = db.execute("SELECT reason, expires FROM suppressions WHERE tenant = ? AND address = ?",
                             (entry.tenant, address)).fetchone()
        if current and (current[0] != "soft_bounce" or current[1] == 0 or current[1] >= entry.expires):
            return
    # Delete + insert (not upsert): a new row id lets the daemon's poller see the change.
    db.execute("DELETE FROM suppressions WHERE tenant = ? AND address = ?", (entry.tenant, address))
    db.execute("INSERT INTO suppressions (tenant, address, reason, created, expires, source, detail)"
               " VALUES (?,?,?,?,?,?,?)", (entry.tenant, address, entry.reason, entry.created, entry.expires,
                                          entry.source, entry.detail[:500]))


def remove(db: sqlite3.Connection, address: str, tenant: str | None = None) -> int:
    if tenant is None:
        return db.execute("DELETE FROM suppressions WHERE address IN (?, ?)", _forms(address)).rowcount
    return db.execute("DELETE FROM suppressions WHERE tenant = ? AND address IN (?, ?)",
                      (tenant, *_forms(address))).rowcount


def lookup(db: sqlite3.Connection, address: str, tenant: str, now: float) -> Suppression | None:
    """The entry that stops `address` for `tenant` (its own or a global one), if any is in force."""
    row = db.execute("SELECT tenant, address, reason, created, expires, source, detail FROM suppressions"
                     " WHERE address IN (?, ?) AND tenant IN (?, '') AND (expires = 0 OR expires > ?)"
                     " ORDER BY tenant = '' LIMIT 1", (*_forms(address), tenant, now)).fetchone()
    return Suppression(*row) if row else None


def listing(db: sqlite3.Connection, tenant: str | None = None, reason: str | None = None,
            limit: int = 0, address: str | None = None) -> list[Suppression]:
    where, params = [], []
    if address is not None:
        where.append("address IN (?, ?)")
        params.extend(_forms(address))
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    if reason:
        where.append("reason = ?")
        params.append(reason)
    sql = ("SELECT tenant, address, reason, created, expires, source, detail FROM suppressions"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY tenant, address")
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [Suppression(*r) for r in db.execute(sql, params)]


def hash_entries(db: sqlite3.Connection, address: str) -> int:
    """Erasure: the address's entries keep only its hash (and lose a detail that names it)."""
    plain, hashed = _forms(address)
    rows = db.execute("SELECT id, tenant, detail FROM suppressions WHERE address = ?", (plain,)).fetchall()
    for rid, tenant, detail in rows:
        if db.execute("SELECT 1 FROM suppressions WHERE tenant = ? AND address = ?", (tenant, hashed)).fetchone():
            db.execute("DELETE FROM suppressions WHERE id = ?", (rid,))
        else:
            db.execute("UPDATE suppressions SET address = ?, detail = ? WHERE id = ?",
                       (hashed, "" if plain in detail.lower() else detail, rid))
    return len(rows)


def prune(db: sqlite3.Connection, now: float) -> int:
    return db.execute("DELETE FROM suppressions WHERE expires <> 0 AND expires <= ?", (now,)).rowcount


CSV_FIELDS = ("address", "tenant", "reason", "created", "expires", "source", "detail")


def export_csv(entries: Iterable[Suppression]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_FIELDS)
    for e in entries:
        w.writerow([e.address, e.tenant, e.reason, f"{e.created:.0f}", f"{e.expires:.0f}", e.source, e.detail])
    return out.getvalue()


def parse_csv(text: str, default_reason: str, default_tenant: str, now: float) -> list[Suppression]:
    """Rows with at least an address column; a header row naming the columns is optional."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    has_header = "address" in header
    if has_header:
        body = rows[1:]
    else:
        header, body = ["address"], rows
    out = []
    for lineno, row in enumerate(body, 2 if has_header else 1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        rec = dict(zip(header, (c.strip() for c in row), strict=False))
        address = rec.get("address", "")
        if "@" not in address:
            raise ValueError(f"line {lineno}: not an address: {address!r}")
        reason = rec.get("reason") or default_reason
        if reason not in REASONS:
            raise ValueError(f"line {lineno}: unknown reason {reason!r}")
        out.append(Suppression(rec.get("tenant", default_tenant), address, reason,
                               float(rec.get("created") or now), float(rec.get("expires") or 0),
                               rec.get("source", "import"), rec.get("detail", "")))
    return out


class SuppressionFilter:
    """In-memory hashes of suppressed addresses: `may_contain` is exact for misses."""

    def __init__(self) -> None:
        self._hashes: set[int] = set()
        self._last_id = 0

    def __len__(self) -> int:
        return len(self._hashes)

    def may_contain(self, address: str) -> bool:
        return bool(self._hashes) and address_hash(address) in self._hashes

    def note(self, address: str) -> None:
        self._hashes.add(address_hash(address))

    def sync(self, db: sqlite3.Connection) -> int:
        """Adds the hashes of rows added since the last call; returns how many."""
        rows = db.execute("SELECT id, address FROM suppressions WHERE id > ? ORDER BY id",
                          (self._last_id,)).fetchall()
        for rid, address in rows:
            self._hashes.add(stored_hash(address))
            self._last_id = rid
        return len(rows)
