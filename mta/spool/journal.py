"""The delivered-recipients journal: the quickest durable note that a remote server took a message.

A crash between a remote server's 250 and the durable record of it sends that message again. The
spool records outcomes on its writer thread, behind other commits and the GIL (several
milliseconds under load, which at a thousand deliveries a second is several duplicates per
crash). This journal closes most of that window: the event loop itself writes the ids of the
recipients delivered in one loop iteration into a preallocated file and fdatasyncs it (about a
tenth of a millisecond; no file growth, so no metadata to sync). At start-up the recipients it
names are finished before anything is re-queued.

Two segments take turns. The active one takes new records; when it is three quarters full and the
other one is empty, they swap, and the old one is wiped as soon as the spool holds the outcome of
every recipient it names (`settle`). Recipient ids are never reused (AUTOINCREMENT), so finishing a
journaled id twice is harmless. A record is 16 bytes: the id, its CRC-32 and a marker, so a torn
write is recognised and skipped, never misread as another recipient.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Iterable

log = logging.getLogger("mta.spool")

SEGMENT_BYTES = 1 << 20
_RECORD = struct.Struct("<qII")       # recipient id, crc32 of the id's bytes, marker
_MARKER = 0x4C4E524A                  # "JRNL"
_ZEROS = bytes(SEGMENT_BYTES)


def _encode(recipient_id: int) -> bytes:
    raw = struct.pack("<q", recipient_id)
    return _RECORD.pack(recipient_id, zlib.crc32(raw), _MARKER)


def read_segment(data: bytes) -> list[int]:
    """The recipient ids recorded in one segment's bytes (torn or empty records skipped)."""
    ids = []
    for offset in range(0, len(data) - _RECORD.size + 1, _RECORD.size):
        recipient_id, crc, marker = _RECORD.unpack_from(data, offset)
        if marker == _MARKER and recipient_id > 0 and crc == zlib.crc32(struct.pack("<q", recipient_id)):
            ids.append(recipient_id)
    return ids


class _Segment:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.used = 0             # bytes written since the last wipe
        self.unsettled = 0        # ids written whose outcome the spool does not hold yet
        self.draining = False     # retired, wiped once unsettled reaches 0

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


class DeliveryJournal:
    def __init__(self, spool_dir: str) -> None:
        self.spool_dir = spool_dir
        self._segments = [_Segment(os.path.join(spool_dir, f"delivered.{i}")) for i in (0, 1)]
        self._active = 0
        self._pending = bytearray()
        self._pending_ids = 0
        self._flush_scheduled = False
        self._failing = False
        self.skipped = 0          # ids not journaled (segment full or write failed): only the spool has them

    # ------------------------------------------------------------------ start-up
    def recorded(self) -> list[int]:
        """Every id in the journal as the last process left it (call before `open`)."""
        ids: list[int] = []
        for segment in self._segments:
            try:
                with open(segment.path, "rb") as f:
                    ids.extend(read_segment(f.read()))
            except FileNotFoundError:
                continue
        return ids

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

    def close(self) -> None:
        self.flush()
        for segment in self._segments:
            segment.close()

    # ------------------------------------------------------------------ running
    def note(self, recipient_ids: Iterable[int]) -> int:
        """Journals ids (durable by the end of this loop iteration); returns the token for `settle`,
        or -1 when they could not be journaled."""
        segment = self._segments[self._active]
        records = b"".join(_encode(r) for r in recipient_ids)
        count = len(records) // _RECORD.size
        if not count:
            return -1
        if segment.used + len(self._pending) + len(records) > SEGMENT_BYTES:
            self.skipped += count
            log.warning("delivery journal full (the spool is slow to record outcomes); %d ids not journaled", count)
            return -1
        self._pending += records
        self._pending_ids += count
        segment.unsettled += count
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return self._active

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        segment = self._segments[self._active]
        data, self._pending = bytes(self._pending), bytearray()
        try:
            os.pwrite(segment.fd, data, segment.used)
            os.fdatasync(segment.fd)
        except OSError as exc:
            if not self._failing:
                log.warning("delivery journal write failed (outcomes are still recorded in the spool): %s", exc)
            self._failing = True
            self.skipped += self._pending_ids
        else:
            self._failing = False
        segment.used += len(data)
        self._pending_ids = 0
        self._maybe_swap()

    def settle(self, token: int, count: int) -> None:
        """The spool now holds the outcome of `count` ids journaled under `token`."""
        if token < 0:
            return
        segment = self._segments[token]
        segment.unsettled -= count
        if segment.draining and segment.unsettled <= 0:
            self._wipe(segment)

    def _maybe_swap(self) -> None:
        active = self._segments[self._active]
        other = self._segments[1 - self._active]
        if active.used < SEGMENT_BYTES * 3 // 4 or other.used or other.draining:
            return
        self._active = 1 - self._active
        active.draining = True
        if active.unsettled <= 0:
            self._wipe(active)

    def _wipe(self, segment: _Segment) -> None:
        try:
            segment.wipe()
        except OSError as exc:
            log.warning("could not wipe delivery journal segment %s: %s", segment.path, exc)
