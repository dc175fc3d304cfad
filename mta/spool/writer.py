"""Group commit: one writer thread owns the spool's write connection.

Listeners and the scheduler hand it small operations (callables on the store). The thread runs
everything that is waiting in one transaction, each operation under its own savepoint so one
failing operation cannot undo the others, commits (one fsync of the WAL for the whole group),
then wakes the waiting coroutines in one call. A 250 reply is sent only after that commit.

*Urgent* operations (what a remote server has just taken, and the mark that an attempt is about
to start) are committed in a group of their own ahead of everything else waiting: a crash between
a remote 250 and its record duplicates the message, so that window is kept as short as a commit.
Other operations keep their order among themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mta.spool.store import SpoolStore

log = logging.getLogger("mta.spool")
T = TypeVar("T")

_STOP = object()
MAX_GROUP = 128         # regular operations per commit; urgent ones get their turn in between


class SpoolClosed(RuntimeError):
    pass


class _Op:
    __slots__ = ("fn", "future", "urgent")

    def __init__(self, fn: Callable[[SpoolStore], Any], future: asyncio.Future | None, urgent: bool = False) -> None:
        self.fn = fn
        self.future = future
        self.urgent = urgent


class Spool:
    """Async face of the spool: durable writes through the writer thread, reads on a reader."""

    def __init__(self, spool_dir: str, on_commit: Callable[[int, float], None] | None = None) -> None:
        self.spool_dir = spool_dir
        self.store = SpoolStore(spool_dir)
        self._reader_store = SpoolStore(spool_dir)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-read")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._on_commit = on_commit    # (ops in group, seconds) for metrics

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[SpoolStore], T], urgent: bool = False) -> T:
        """Runs fn(store) in the next group; returns once its transaction is durable."""
        return await self.submit(fn, urgent)

    def submit(self, fn: Callable[[SpoolStore], T], urgent: bool = False) -> asyncio.Future[T]:
        """Queues fn(store) now; the future is done once its transaction is durable."""
        if self._closed:
            raise SpoolClosed("spool is closed")
        assert self._loop is not None
        future = self._loop.create_future()
        self._queue.put(_Op(fn, future, urgent))
        return future

    def post(self, fn: Callable[[SpoolStore], Any], urgent: bool = False) -> None:
        """Runs fn(store) in the next group without waiting (ordering with other ops of the same
        urgency is kept)."""
        if self._closed:
            raise SpoolClosed("spool is closed")
        self._queue.put(_Op(fn, None, urgent))

    async def read(self, fn: Callable[[SpoolStore], T]) -> T:
        """Runs a read-only fn on the reader connection (sees everything committed)."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self._reader, fn, self._reader_store)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._reader.shutdown(wait=True)
        self._reader_store.close()
        self.store.close()

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        regular: deque[_Op] = deque()      # taken off the queue, waiting their turn, in order
        stopping = False
        while True:
            urgent: list[_Op] = []
            stopping = self._collect(urgent, regular, block=not regular and not stopping) or stopping
            if urgent:
                group = urgent
            elif regular:
                group = [regular.popleft() for _ in range(min(len(regular), MAX_GROUP))]
            elif stopping:
                return
            else:
                continue
            if not self._commit(group):
                return

    def _collect(self, urgent: list[_Op], regular: deque[_Op], block: bool) -> bool:
        """Moves what is queued into the two lists (waiting for one operation if `block`); True
        when the stop mark was among it."""
        stop = False
        try:
            item = self._queue.get() if block else self._queue.get_nowait()
            while True:
                if item is _STOP:
                    stop = True
                elif item.urgent:
                    urgent.append(item)
                else:
                    regular.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return stop

    def _commit(self, group: list[_Op]) -> bool:
        """Runs and commits one group, then wakes its waiters; False once the loop is gone."""
        t0 = time.perf_counter()
        results = self._run_group(group)
        if self._on_commit is not None:
            self._on_commit(len(group), time.perf_counter() - t0)
        waiting = [(op.future, res) for op, res in zip(group, results, strict=True) if op.future is not None]
        if waiting:
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_resolve, waiting)
            except RuntimeError:  # loop closed during shutdown
                return False
        return True

    def _run_group(self, group: list[_Op]) -> list[tuple[bool, Any]]:
        store = self.store
        results: list[tuple[bool, Any]] = []
        try:
            store.begin()
            for op in group:
                store.db.execute("SAVEPOINT op")
                try:
                    results.append((True, op.fn(store)))
                    store.db.execute("RELEASE op")
                except Exception as exc:  # one bad operation must not sink the group
                    store.db.execute("ROLLBACK TO op")
                    store.db.execute("RELEASE op")
                    log.exception("spool operation failed")
                    results.append((False, exc))
            store.commit()
        except sqlite3.Error as exc:
            # The commit (or BEGIN) itself failed, e.g. disk full: nothing in the group is durable.
            log.error("spool commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                store.rollback()
            return [(False, exc)] * len(group)
        return results


def _resolve(waiting: list[tuple[asyncio.Future, tuple[bool, Any]]]) -> None:
    for future, (ok, value) in waiting:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
