"""Free space on the spool's file system: a watermark below which new mail is refused, and what
happens when the disk fills anyway (issue 17, item 3).

- `[mta] min_free_space` ("500M", "2%", or both as a list: the larger wins) is the reserve new
  mail may not eat into: MAIL FROM with a SIZE that would cross it, and a message at the end of
  DATA that would, get `452 4.3.1 Insufficient system storage` (RFC 3463) before SQLite fails.
- A disk that fills anyway (another process, a quota) makes the spool's writes fail with
  SQLITE_FULL / ENOSPC. The spool writer retries what must not be lost (delivery outcomes,
  recovery at start-up), and tells the guard, which refuses new mail until space returns.
- The *ballast* (`[mta] spool_ballast`, a file of that size in the spool directory, made when
  there is room) is given back to the file system the first time a write fails for lack of
  space, so that a daemon on a full disk can still record deliveries (which shrink the queue),
  and is made again once the reserve is back.

One warning when an episode starts, one line when it ends; refusals are counted by the caller
(`mta_smtp_refusals{reason="insufficient_storage"}`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from warmup_base.configload import ConfigError, parse_size

log = logging.getLogger("mta.disk")

INSUFFICIENT_STORAGE = "452 4.3.1 Insufficient system storage, try again later"
BALLAST_NAME = "ballast"
# Real file-system room kept besides free pages inside the database (or the reserve, if less): after a
# checkpoint the WAL starts over inside its own file, so this only covers its first growth and the
# event log. A queue that filled the disk itself gives space back only as free pages (no VACUUM).
WAL_ROOM = 1 << 20
SQLITE_FULL = 13
SQLITE_IOERR = 10
_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


@dataclass(frozen=True)
class FreeSpaceReserve:
    """The reserve as configured: bytes and/or a share of the file system (the larger wins)."""

    min_bytes: int = 0
    min_percent: float = 0.0

    def bytes_for(self, total: int) -> int:
        return max(self.min_bytes, int(total * self.min_percent / 100.0))

    @classmethod
    def from_config(cls, value: Any, key: str) -> FreeSpaceReserve:
        return parse_reserve(value, key)


def parse_reserve(value: Any, key: str) -> FreeSpaceReserve:
    """`"500M"`, `524288000`, `"2%"` or a list of such (both must hold): a FreeSpaceReserve."""
    items = value if isinstance(value, list) else [value]
    min_bytes, min_percent = 0, 0.0
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        if isinstance(item, str) and (m := _PERCENT.fullmatch(item)):
            pct = float(m.group(1))
            if not 0 <= pct < 100:
                raise ConfigError(f"{where}: a percentage must be from 0 to under 100, got {item!r}")
            min_percent = max(min_percent, pct)
        else:
            try:
                min_bytes = max(min_bytes, parse_size(item, where))
            except ConfigError:
                raise ConfigError(f"{where}: expected a size such as 500M or a percentage such as 2%, "
                                  f"got {item!r}") from None
    return FreeSpaceReserve(min_bytes, min_percent)


def declared_size(mail_options: list[str]) -> int:
    """The SIZE= a client declared at MAIL FROM (RFC 1870), else 0."""
    for opt in mail_options:
        key, _, value = opt.partition("=")
        if key.upper() == "SIZE" and value.isdigit() and len(value) < 20:
            return int(value)
    return 0


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL, ENOSPC or EDQUOT (also when wrapped as a cause or context)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        if isinstance(cur, sqlite3.Error):
            code = getattr(cur, "sqlite_errorcode", None)
            if (code is not None and code & 0xFF == SQLITE_FULL) or "disk is full" in str(cur):
                return True
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def is_storage_error(exc: BaseException) -> bool:
    """A write the storage could not take now (full disk, I/O error): worth retrying."""
    if is_disk_full(exc):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF == SQLITE_IOERR


def sqlite_free_pages(path: str) -> Callable[[], int]:
    """Bytes in SQLite's free pages of the database at `path` (read on a connection of its own)."""
    conn: list[sqlite3.Connection] = []

    def count() -> int:
        if not conn:
            conn.append(sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                        isolation_level=None))
        db = conn[0]
        # fetchall: a statement left un-finished would hold its read snapshot, and a WAL reader
        # that never lets go keeps checkpoints from ever resetting the WAL.
        free = db.execute("PRAGMA freelist_count").fetchall()[0][0]
        page = db.execute("PRAGMA page_size").fetchall()[0][0]
        return int(free) * int(page)
    return count


class DiskGuard:
    """Decides whether new mail fits on the spool's file system; thread-safe (the spool writer
    reports failures from its own thread)."""

    def __init__(self, path: str, reserve: FreeSpaceReserve, *, ballast: int = 0,
                 statvfs: Callable[[str], Any] = os.statvfs, clock: Callable[[], float] = time.monotonic,
                 on_low: Callable[[bool], None] | None = None, recheck: float = 0.25,
                 full_hold: float = 10.0, reusable: Callable[[], int] | None = None) -> None:
        self.path = path
        self.reserve = reserve
        self.ballast_size = ballast
        self.ballast_path = os.path.join(path, BALLAST_NAME)
        self.statvfs = statvfs
        self.clock = clock
        self.on_low = on_low
        self.recheck = recheck
        self.full_hold = full_hold          # after a write failed for space: refuse this long at least
        # Bytes inside the spool's files that new mail reuses before the files grow (SQLite's free
        # pages: a queue that filled the disk and drained gives its space back only there).
        self.reusable = reusable
        self._reusable = 0
        self.starting = False               # set while start-up recovery has not finished
        self._lock = threading.Lock()
        self._checked = -1e18
        self._free = 0
        self._fs_free = 0
        self._total = 0
        self._ballast_failed = False
        self._full_since_free: int | None = None   # free bytes when a write last failed for space
        self._full_until = 0.0
        self.low = False

    # ------------------------------------------------------------------ measuring
    def _refresh(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._checked < self.recheck:
            return
        try:
            st = self.statvfs(self.path)
        except OSError as exc:
            log.warning("cannot measure free space on %s: %s", self.path, exc)
            return
        # Space that belongs to a ballast we gave back is not space for new mail.
        missing = self.ballast_size if self.ballast_size and not os.path.exists(self.ballast_path) else 0
        self._fs_free = st.f_bavail * st.f_frsize - missing      # room for the files to grow (the WAL)
        self._free = self._fs_free + self._reusable
        self._total = st.f_blocks * st.f_frsize
        self._checked = now

    @property
    def free(self) -> int:
        """Bytes free for new mail (the file system's free bytes less a ballast given back)."""
        self._refresh()
        return self._free

    def reserve_bytes(self) -> int:
        self._refresh()
        return self.reserve.bytes_for(self._total)

    # ------------------------------------------------------------------ decisions
    def room_for(self, size: int = 0) -> bool:
        """True if a message of `size` bytes may be accepted now."""
        with self._lock:
            self._refresh()
            self._update_state()
            if self.low:
                return False
            # A spool write costs about twice the body (the WAL, then the database file).
            return self._free - 2 * size >= self.reserve.bytes_for(self._total)

    def note_full(self, exc: BaseException | None = None) -> None:
        """A write failed for lack of space: refuse new mail until space returns; give the
        ballast back so that deliveries can still be recorded."""
        with self._lock:
            self._refresh(force=True)
            self._full_since_free = self._free
            self._full_until = self.clock() + self.full_hold
            released = self._release_ballast()
            was_low = self.low
            self._update_state(cause=exc, released=released)
            if released and was_low:
                log.warning("spool file system %s: a spool write failed (%s); released the %s ballast",
                            self.path, exc, _mib(released))

    def note_written(self) -> None:
        """A write succeeded: a full-disk episode caused by a failed write may be over."""
        if self._full_since_free is None:
            return
        with self._lock:
            if self.clock() >= self._full_until:
                self._full_since_free = None
                self._update_state()

    def _update_state(self, cause: BaseException | None = None, released: int = 0) -> None:
        reserve = self.reserve.bytes_for(self._total)
        if self._full_since_free is not None and (
                self._free >= self._full_since_free + max(reserve, 1 << 20) or
                (self.clock() >= self._full_until and self._free >= reserve and self._free > self._full_since_free)):
            self._full_since_free = None     # space came back since the failure
        low = (self.starting or self._full_since_free is not None or self._free < reserve
               or self._fs_free < min(reserve, WAL_ROOM))
        if low == self.low:
            return
        self.low = low
        if low:
            why = f"a spool write failed ({cause})" if cause is not None else "below the reserve"
            log.warning("spool file system %s: %s free of %s, reserve %s: %s; refusing new mail with 452 4.3.1"
                        "%s", self.path, _mib(self._free), _mib(self._total), _mib(reserve), why,
                        f"; released the {_mib(released)} ballast" if released else "")
        else:
            log.warning("spool file system %s has room again: %s free (reserve %s): accepting mail",
                        self.path, _mib(self._free), _mib(reserve))
        if self.on_low is not None:
            self.on_low(low)

    def tick(self) -> None:
        """Periodic, off the event loop: notices space coming back without any mail arriving
        (the queue draining inside the database counts), re-makes the ballast."""
        if self.reusable is not None:
            try:
                self._reusable = self.reusable()
            except Exception as exc:       # measuring must never stop the watch
                log.debug("cannot count reusable spool space: %s", exc)
        with self._lock:
            self._refresh(force=True)
            self._update_state()
            if not self.low and self.ballast_size and not os.path.exists(self.ballast_path):
                self._make_ballast()

    # ------------------------------------------------------------------ ballast
    def ensure_ballast(self) -> None:
        with self._lock:
            self._refresh(force=True)
            if self.ballast_size and not os.path.exists(self.ballast_path) and \
                    self._fs_free >= self.reserve.bytes_for(self._total):
                self._make_ballast()

    def _make_ballast(self) -> None:
        tmp = self.ballast_path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.ballast_size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    chunk = b"\0" * (1 << 20)
                    left = self.ballast_size
                    while left > 0:
                        left -= os.write(fd, chunk[:left])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.ballast_path)
            self._ballast_failed = False
            log.info("spool ballast of %s made at %s", _mib(self.ballast_size), self.ballast_path)
        except OSError as exc:
            if not self._ballast_failed:
                self._ballast_failed = True
                log.warning("cannot make the spool ballast %s: %s", self.ballast_path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._refresh(force=True)

    def _release_ballast(self) -> int:
        try:
            size = os.stat(self.ballast_path).st_size
            os.unlink(self.ballast_path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("cannot remove the spool ballast %s: %s", self.ballast_path, exc)
            return 0
        self._refresh(force=True)
        return size


def _mib(n: int) -> str:
    return f"{max(n, 0) / (1 << 20):.1f} MiB"
