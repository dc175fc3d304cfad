"""The delivery journal: the quickest durable notes of what happens around a remote server's 250.

A crash between a remote server's 250 and the durable record of it sends that message again. The
spool records outcomes on its writer thread, behind other commits and the GIL (several
milliseconds under load: at a thousand deliveries a second, several duplicates per crash). This
journal closes most of that window: the event loop itself writes notes into a preallocated file
(the file never grows, so a sync has no metadata to write, and it keeps working on a full disk).
Three kinds of note:

- *attempt*: these recipients' DATA is about to be sent (written, and synced, before DATA);
- *delivered*: the remote server took them (written the moment the reply is read);
- *settled*: the spool now holds their outcome (or the attempt never reached DATA).

Only attempt notes are synced (fdatasync), and only when a message is about to go: the
transaction awaits its attempt's `Durable` after the server's 354, and one sync then covers
every note written so far, so the attempts of all the sessions whose MAIL, RCPT and DATA were
travelling share it. The sync is a small process's (mta.spool.syncer), so the event loop goes on
meanwhile; attempts that come while one runs share the next.

A delivered or settled note needs no sync: once written it is in the kernel's page cache,
which a crash of this process cannot lose, and a power cut that loses it leaves the synced
attempt note, which counts the recipient as a possible duplicate. Syncing every loop turn's
notes cost about one fdatasync per message under load.

At start-up (`recorded`), each recipient's last note counts (notes carry a sequence number, as a
recipient may be attempted, deferred and attempted again): delivered recipients are finished
before anything is re-queued, and recipients whose last note is an attempt are the possible
duplicates: a true upper bound, because nothing reaches DATA before its attempt note is durable.

Two segments take turns. The active one takes new notes; when it is three quarters full and the
other one is empty, they swap, and the old one is wiped once every attempt noted in it is settled.
Recipient ids are never reused (AUTOINCREMENT), so finishing a journaled id twice is harmless. A
note is 24 bytes: the id, the sequence number, a CRC-32 of both and the kind, and the kind's
marker, so a torn write is recognised and skipped, never misread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from mta.spool.syncclient import SyncClient

log = logging.getLogger("mta.spool")

SEGMENT_BYTES = 1 << 20         # two of them: 2 MB preallocated in the spool directory
_NOTE = struct.Struct("<qqII")        # recipient id, sequence, crc32, marker
ATTEMPT, DELIVERED, SETTLED = 0x54544A41, 0x4C4E524A, 0x4C54534A     # "AJTT", "JRNL", "JSTL"
_KINDS = (ATTEMPT, DELIVERED, SETTLED)
_ZEROS = bytes(SEGMENT_BYTES)


def _crc(recipient_id: int, seq: int, kind: int) -> int:
    return zlib.crc32(struct.pack("<qqI", recipient_id, seq, kind))


def encode(recipient_id: int, seq: int, kind: int) -> bytes:
    return _NOTE.pack(recipient_id, seq, _crc(recipient_id, seq, kind), kind)


@dataclass
class Recorded:
    """What the journal held at start-up: each recipient's last note."""

    last: dict[int, tuple[int, int]] = field(default_factory=dict)     # id -> (sequence, kind)

    def _ids(self, kind: int) -> set[int]:
        return {r for r, (_seq, k) in self.last.items() if k == kind}

    @property
    def delivered(self) -> set[int]:
        return self._ids(DELIVERED)

    @property
    def in_doubt(self) -> set[int]:
        """Attempts whose outcome nobody recorded: the remote server may have the message."""
        return self._ids(ATTEMPT)

    def add(self, data: bytes) -> None:
        for offset in range(0, len(data) - _NOTE.size + 1, _NOTE.size):
            recipient_id, seq, crc, kind = _NOTE.unpack_from(data, offset)
            if kind in _KINDS and recipient_id > 0 and crc == _crc(recipient_id, seq, kind):
                known = self.last.get(recipient_id)
                if known is None or known[0] < seq:
                    self.last[recipient_id] = (seq, kind)


class _Segment:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.used = 0             # bytes written since the last wipe
        self.open_attempts = 0    # attempts noted here and not settled yet
        self.draining = False     # retired, wiped once open_attempts reaches 0

    def open(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size != SEGMENT_BYTES:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, _ZEROS, 0)
            os.fsync(self.fd)

    def wipe(self) -> None:
        if self.used:
            os.pwrite(self.fd, _ZEROS[:self.used], 0)
            os.fdatasync(self.fd)
        self.used = 0
        self.draining = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Durable:
    """Awaited before a message goes: returns once its attempt note is durable, at once if a
    sync has covered it already, else when the syncer process has synced it (or the loop itself,
    without one)."""

    __slots__ = ("_journal", "_seq")

    def __init__(self, journal: DeliveryJournal, seq: int) -> None:
        self._journal = journal
        self._seq = seq

    def done(self) -> bool:
        return self._journal._synced_seq >= self._seq

    def __await__(self) -> Generator[Any, None, None]:
        if self.done():
            return
        waiting = self._journal.sync_soon(self._seq)
        if waiting is not None:
            yield from waiting.__await__()


class DeliveryJournal:
    def __init__(self, spool_dir: str, syncer: bool = True) -> None:
        """With `syncer`, attempt notes are synced by a process of their own (mta.spool.syncer)."""
        self.spool_dir = spool_dir
        self._use_syncer = syncer
        self._syncer: SyncClient | None = None
        self._segments = [_Segment(os.path.join(spool_dir, f"delivered.{i}")) for i in (0, 1)]
        self._active = 0
        self._pending = bytearray()
        self._flush_scheduled = False
        self._failing = False
        self._seq = 0                 # of the last note written (or queued)
        self._synced_seq = 0          # every attempt note up to this one is durable
        self._attempt_seq = 0         # of the last attempt note
        self.skipped = 0              # notes not written (segment full or write failed)
        self.syncs = 0                # fdatasyncs of notes (for tests and the curious)

    # ------------------------------------------------------------------ start-up
    def recorded(self) -> Recorded:
        """Every note in the journal as the last process left it (call before `open`)."""
        found = Recorded()
        for segment in self._segments:
            try:
                with open(segment.path, "rb") as f:
                    found.add(f.read())
            except FileNotFoundError:
                continue
        return found

    def open(self) -> None:
        """Starts empty: call once the spool has committed what `recorded` returned."""
        for segment in self._segments:
            segment.open()
            segment.used = SEGMENT_BYTES      # unknown content: wipe it all
            segment.wipe()
        fd = os.open(self.spool_dir, os.O_RDONLY)
        try:
            os.fsync(fd)                      # the segments' names are durable too
        finally:
            os.close(fd)
        if self._use_syncer:
            self._syncer = SyncClient([segment.path for segment in self._segments], self._prepare_sync,
                                      self._synced_by_syncer, lambda: self.sync_through(self._seq))

    def close(self) -> None:
        self.sync_through(self._seq)
        if self._syncer is not None:
            self._syncer.close()
            self._syncer = None
        for segment in self._segments:
            segment.close()

    # ------------------------------------------------------------------ running
    def attempting(self, recipient_ids: Iterable[int]) -> tuple[int, Durable]:
        """Notes an attempt; returns its token (for `settle`) and what to await before the
        message goes: the note is synced then, if no sync has covered it yet."""
        ids = list(recipient_ids)
        token = self._write(ids, ATTEMPT)
        if token < 0:                        # nothing to wait for: the note could not be written
            return token, Durable(self, 0)
        self._segments[token].open_attempts += len(ids)
        self._attempt_seq = self._seq
        return token, Durable(self, self._seq)

    def sync_soon(self, seq: int) -> asyncio.Future[None] | None:
        """A future done once note `seq` is durable, synced by the syncer process; None if it
        was synced here and now (no syncer)."""
        if self._syncer is None or not self._syncer.alive:
            self.sync_through(seq)
            return None
        return self._syncer.covering(seq)

    def _prepare_sync(self) -> tuple[int, int]:
        """Before the syncer starts a sync: every queued note written (which may retire the
        active file, syncing its attempts here), and the file that holds the notes since."""
        self._write_pending()
        return self._seq, self._active

    def _synced_by_syncer(self, seq: int) -> None:
        self.syncs += 1
        self._synced_seq = max(self._synced_seq, seq)

    @property
    def syncer_pid(self) -> int | None:
        """The syncer process's pid while it serves (None without one)."""
        return self._syncer.pid if self._syncer is not None and self._syncer.alive else None

    def sync_through(self, seq: int) -> None:
        """Makes every note up to `seq` durable (with every other note written so far), here."""
        if self._synced_seq >= seq:
            return
        self._write_pending()
        segment = self._segments[self._active]
        try:
            os.fdatasync(segment.fd)
        except OSError as exc:
            self._write_failed(exc, 0)
        self.syncs += 1
        self._synced_seq = self._seq

    def delivered(self, recipient_ids: Iterable[int]) -> None:
        """Notes what the remote server took (written by the end of this loop iteration)."""
        self._write(list(recipient_ids), DELIVERED)

    def delivered_now(self, recipient_ids: Iterable[int]) -> None:
        """Notes what the remote server took, written to the file at once. Called as the 250
        arrives (the connection's read callback): once written, the note is in the kernel's page
        cache, so a crash of this process (SIGKILL, OOM) can no longer lose it. Waiting for the
        turn's flush left it in memory for several milliseconds under load, the window in which
        a crash sends a message twice."""
        if self._write(list(recipient_ids), DELIVERED) >= 0:
            self._write_pending()

    def settle(self, token: int, recipient_ids: Iterable[int]) -> None:
        """The spool holds the outcome of these attempted recipients now (or their attempt ended
        before DATA). Were the note lost, they would only be counted as possible duplicates."""
        if token < 0:                       # no attempt note was written: nothing to settle
            return
        ids = list(recipient_ids)
        self._write(ids, SETTLED)
        segment = self._segments[token]
        segment.open_attempts -= len(ids)
        if segment.draining and segment.open_attempts <= 0:
            self._wipe(segment)

    def _write(self, ids: list[int], kind: int) -> int:
        if not ids:
            return -1
        segment = self._segments[self._active]
        notes_seq = self._seq + 1
        notes = b"".join(encode(r, notes_seq, kind) for r in ids)
        if segment.used + len(self._pending) + len(notes) > SEGMENT_BYTES:
            self.skipped += len(ids)
            if kind != SETTLED:
                log.warning("delivery journal full (the spool is slow to record outcomes); %d notes not written",
                            len(ids))
            return -1
        self._seq = notes_seq
        self._pending += notes
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return self._active

    def flush(self) -> None:
        """Writes the queued notes to the file (no sync: see the module's docstring)."""
        self._flush_scheduled = False
        self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        segment = self._segments[self._active]
        data, self._pending = bytes(self._pending), bytearray()
        try:
            os.pwrite(segment.fd, data, segment.used)
        except OSError as exc:
            self._write_failed(exc, len(data) // _NOTE.size)
        else:
            self._failing = False
        segment.used += len(data)
        self._maybe_swap()

    def _write_failed(self, exc: OSError, notes: int) -> None:
        if not self._failing:
            log.warning("delivery journal write failed (outcomes are still recorded in the spool): %s", exc)
        self._failing = True
        self.skipped += notes

    def _maybe_swap(self) -> None:
        active = self._segments[self._active]
        other = self._segments[1 - self._active]
        if active.used < SEGMENT_BYTES * 3 // 4 or other.used or other.draining:
            return
        if self._synced_seq < self._attempt_seq:     # the syncs that follow are the other file's
            self.sync_through(self._attempt_seq)
        self._active = 1 - self._active
        active.draining = True
        if active.open_attempts <= 0:
            self._wipe(active)

    def _wipe(self, segment: _Segment) -> None:
        try:
            segment.wipe()
        except OSError as exc:
            log.warning("could not wipe delivery journal segment %s: %s", segment.path, exc)
