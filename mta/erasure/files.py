"""Erasure in files: the event log (the live file and its rotated siblings, plain or gzip) and
the inbound reports (bounces, complaints) kept after processing.

A file is rewritten to a temporary file beside it, synced, and renamed over the original, so a
crash leaves either the old or the new file, never half of one. The live event log is written by
a running daemon: it must be held (EventLog.hold) while its file is rewritten."""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from mta.erasure.match import AddressMatcher

_COMPRESSED_UNSUPPORTED = (".bz2", ".xz", ".zst", ".lz4", ".z")


@dataclass(slots=True)
class FileErasure:
    lines: int = 0                          # event log lines removed
    files: list[str] = field(default_factory=list)      # files changed or deleted
    skipped: list[str] = field(default_factory=list)    # files that could not be read (compression)


def event_log_files(path: str) -> list[str]:
    """The live log and its rotated siblings (`events.jsonl.1`, `events.jsonl.2.gz`,
    `events.jsonl-20261201.gz`...) in its directory."""
    directory, base = os.path.split(path)
    directory = directory or "."
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if n == base or (n.startswith((base + ".", base + "-")) and not n.endswith(".erasing")))


def _lines(path: str) -> Iterator[bytes]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        yield from f


def rewrite_without(path: str, matcher: AddressMatcher) -> int:
    """Removes the lines that name the address; returns how many (0: the file is untouched)."""
    if not any(matcher.in_bytes(line) for line in _lines(path)):
        return 0
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".erasing", dir=directory)
    removed = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            out = gzip.GzipFile(fileobj=raw, mode="wb") if path.endswith(".gz") else raw
            try:
                for line in _lines(path):
                    if matcher.in_bytes(line):
                        removed += 1
                    else:
                        out.write(line)
            finally:
                if out is not raw:
                    out.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return removed


def erase_event_log(path: str, matcher: AddressMatcher) -> FileErasure:
    result = FileErasure()
    for name in event_log_files(path):
        if name.endswith(_COMPRESSED_UNSUPPORTED):
            result.skipped.append(name)
            continue
        n = rewrite_without(name, matcher)
        if n:
            result.lines += n
            result.files.append(name)
    return result


def erase_reports(inbound_dir: str, matcher: AddressMatcher) -> FileErasure:
    """Deletes processed and quarantined inbound reports (raw DSNs and ARF messages) that name the
    address; new ones are left to be processed (they may add a suppression, which is then hashed
    by the next erasure)."""
    result = FileErasure()
    for sub in ("cur", "quarantine"):
        directory = os.path.join(inbound_dir, sub)
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as f:
                    if not matcher.in_bytes(f.read()):
                        continue
                os.unlink(path)
            except OSError:
                continue
            result.files.append(path)
    return result


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
