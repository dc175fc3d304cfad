"""The daemon's side of the journal's syncer process (mta.spool.syncer).

`covering(index, seq)` returns a future that is done once file `index` has been synced by a
sync that started after note `seq` was written: the one in flight if it started late enough,
else the next one, which starts when the one in flight ends (requests meanwhile share it: a
group commit). If the process cannot be started or goes away, `alive` turns False and whatever
waited is synced by `fallback` in the daemon's own loop; the caller syncs in its loop from then on.
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
    def __init__(self, paths: list[str], prepare: Callable[[], int], on_synced: Callable[[int], None],
                 fallback: Callable[[], None]) -> None:
        """`prepare()` writes the notes still queued and returns the last note's sequence number
        (called before each request); `on_synced(seq)` is told each sync that ended;
        `fallback()` syncs every file in the daemon's loop."""
        self._prepare = prepare
        self._on_synced = on_synced
        self._fallback = fallback
        self._flying: list[tuple[int, asyncio.Future[None]] | None] = [None] * len(paths)
        self._next: list[asyncio.Future[None] | None] = [None] * len(paths)
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

    def covering(self, index: int, seq: int) -> asyncio.Future[None]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
        flying = self._flying[index]
        if flying is None:
            return self._send(index)
        if flying[0] >= seq:
            return flying[1]
        if self._next[index] is None:
            self._next[index] = self._loop.create_future()
        return self._next[index]        # type: ignore[return-value]

    def _send(self, index: int, future: asyncio.Future[None] | None = None) -> asyncio.Future[None]:
        assert self._loop is not None
        if future is None:
            future = self._loop.create_future()
        seq = self._prepare()
        self._flying[index] = (seq, future)
        try:
            self._sock.send(bytes((index,)))
        except OSError as exc:
            self._lost(f"cannot write to it: {exc}")
        return future

    def _on_readable(self) -> None:
        try:
            answers = self._sock.recv(256)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(str(exc))
            return
        if not answers:
            self._lost("it exited")
            return
        for index in answers:
            flying = self._flying[index]
            if flying is None:
                continue
            self._flying[index] = None
            seq, future = flying
            self._on_synced(seq)
            if not future.done():
                future.set_result(None)
            waiting, self._next[index] = self._next[index], None
            if waiting is not None and self.alive:
                self._send(index, waiting)

    def _lost(self, why: str) -> None:
        if not self.alive:
            return
        self.alive = False
        log.warning("delivery journal syncer process lost (%s); the event loop syncs the journal itself", why)
        self._detach()
        waiting = [f[1] for f in self._flying if f is not None] + [f for f in self._next if f is not None]
        self._flying = [None] * len(self._flying)
        self._next = [None] * len(self._next)
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
