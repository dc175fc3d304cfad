"""The daemon's side of the journal's syncer process (mta.spool.syncer).

`covering(seq)` returns a future that is done once note `seq` is durable: the sync in flight if
it started after that note was written, else the next one, which starts when the one in flight
ends (every request meanwhile shares it: a group commit). Each sync is of the file that is
active when it starts (`prepare` writes the queued notes and says which file and how far): an
older file's attempt notes were synced when the journal left it. If the process cannot be
started or goes away, `alive` turns False and whatever waited is synced by `fallback` in the
daemon's own loop; the caller syncs in its loop from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from collections.abc import Callable

log = logging.getLogger("mta.spool")


class SyncClient:
    def __init__(self, paths: list[str], prepare: Callable[[], tuple[int, int]], on_synced: Callable[[int], None],
                 fallback: Callable[[], None]) -> None:
        """`prepare()` writes the notes still queued and returns (the last note's sequence
        number, the index in `paths` of the file they went to); `on_synced(seq)` is told each
        sync that ended; `fallback()` syncs every file in the daemon's loop."""
        self._prepare = prepare
        self._on_synced = on_synced
        self._fallback = fallback
        self._flying: tuple[int, asyncio.Future[None]] | None = None     # (seq covered, waiters)
        self._next: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.alive = False
        mine, theirs = socket.socketpair()
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "mta.spool.syncer", *paths], stdin=theirs, stdout=subprocess.DEVNULL,
                close_fds=True)
        except OSError as exc:
            log.warning("delivery journal: no syncer process (%s); the event loop syncs the journal itself", exc)
            self._proc = None
            mine.close()
            return
        finally:
            theirs.close()
        mine.setblocking(False)
        self._sock = mine
        self.alive = True

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def covering(self, seq: int) -> asyncio.Future[None]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
        if self._flying is None:
            return self._send(self._loop.create_future())
        if self._flying[0] >= seq:
            return self._flying[1]
        if self._next is None:
            self._next = self._loop.create_future()
        return self._next

    def _send(self, future: asyncio.Future[None]) -> asyncio.Future[None]:
        seq, index = self._prepare()
        self._flying = (seq, future)
        try:
            self._sock.send(bytes((index,)))
        except OSError as exc:
            self._lost(f"cannot write to it: {exc}")
        return future

    def _on_readable(self) -> None:
        try:
            answer = self._sock.recv(256)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(str(exc))
            return
        if not answer:
            self._lost("it exited")
            return
        flying, self._flying = self._flying, None       # one request at a time: this is its answer
        if flying is None:
            return
        seq, future = flying
        self._on_synced(seq)
        if not future.done():
            future.set_result(None)
        waiting, self._next = self._next, None
        if waiting is not None and self.alive:
            self._send(waiting)

    def _lost(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        log.warning("delivery journal syncer process lost (%s); the event loop syncs the journal itself", why)
        self._detach()
        waiting = [f for f in (self._flying[1] if self._flying else None, self._next) if f is not None]
        self._flying = self._next = None
        if waiting:
            self._fallback()
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def _detach(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
            self._loop = None
        self._sock.close()

    def close(self) -> None:
        """Ends the process (it exits when its channel closes); call after a last sync of your own."""
        if self.alive:
            self.alive = False
            self._detach()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
