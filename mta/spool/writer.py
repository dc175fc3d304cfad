"""Group commit: one writer thread owns the spool's write connection.

Listeners and the scheduler hand it small operations (callables on the store). The thread runs
everything that is waiting in one transaction, each operation under its own savepoint so one
failing operation cannot undo the others, commits (one fsync of the WAL for the whole group),
then wakes the waiting coroutines in one call. A 250 reply is sent only after that commit.

A group that fails for lack of space (or an I/O error) loses nothing that must be kept: posted
operations (delivery outcomes, state changes nobody awaits) and calls made with `persist=True`
(start-up recovery) are retried, in order and ahead of newer work, with a capped back-off until
they are written; `on_full` hears of each failure (the disk guard refuses new mail and gives its
ballast back). Awaited calls fail with the error, and their callers answer for it (a 452).

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

from mta.spool.diskspace import is_disk_full, is_storage_error
from mta.spool.store import SpoolStore

log = logging.getLogger("mta.spool")
T = TypeVar("T")

_STOP = object()
MAX_GROUP = 128         # regular operations per commit; urgent ones get their turn in between
RETRY_FIRST = 0.2        # seconds before retrying writes that failed for lack of space
RETRY_MAX = 5.0


class SpoolClosed(RuntimeError):
    pass


class _Op:
    __slots__ = ("fn", "future", "persist", "urgent")

    def __init__(self, fn: Callable[[SpoolStore], Any], future: asyncio.Future | None, persist: bool = False,
                 urgent: bool = False) -> None:
        self.fn = fn
        self.future = future
        self.persist = persist or future is None     # retried on a storage error until written
        self.urgent = urgent


class Spool:
    """Async face of the spool: durable writes through the writer thread, reads on a reader."""

    def __init__(self, spool_dir: str, on_commit: Callable[[int, float], None] | None = None,
                 on_full: Callable[[BaseException], None] | None = None,
                 on_written: Callable[[], None] | None = None) -> None:
        self.spool_dir = spool_dir
        self.store = SpoolStore(spool_dir)
        self._reader_store = SpoolStore(spool_dir)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-read")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._on_commit = on_commit    # (ops in group, seconds) for metrics
        self._on_full = on_full        # a write failed for lack of space (called on the writer thread)
        self._on_written = on_written  # a group committed (after a failure: space may be back)
        self._retry: list[_Op] = []    # ops that failed for lack of space, oldest first
        self._failing = False
        self.retried_ops = 0           # for metrics and tests

    @property
    def writes_failing(self) -> bool:
        """True while writes fail for lack of space (and some wait for a retry)."""
        return self._failing or bool(self._retry)

    def set_disk_callbacks(self, on_full: Callable[[BaseException], None] | None,
                           on_written: Callable[[], None] | None) -> None:
        self._on_full, self._on_written = on_full, on_written

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[SpoolStore], T], urgent: bool = False, *, persist: bool = False) -> T:
        """Runs fn(store) in the next group; returns once its transaction is durable. With
        `persist`, a failure for lack of space is retried until it succeeds (fn must be
        idempotent or fail cleanly: it runs under its own savepoint)."""
        return await self.submit(fn, urgent, persist=persist)

    def submit(self, fn: Callable[[SpoolStore], T], urgent: bool = False, *,
               persist: bool = False) -> asyncio.Future[T]:
        """Queues fn(store) now; the future is done once its transaction is durable."""
        if self._closed:
            raise SpoolClosed("spool is closed")
        assert self._loop is not None
        future = self._loop.create_future()
        self._queue.put(_Op(fn, future, persist, urgent))
        return future

    def post(self, fn: Callable[[SpoolStore], Any], urgent: bool = False) -> None:
        """Runs fn(store) in the next group without waiting (ordering with other ops of the same
        urgency is kept); retried until written if the disk is full."""
        if self._closed:
            raise SpoolClosed("spool is closed")
        self._queue.put(_Op(fn, None, urgent=urgent))

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
        backoff = RETRY_FIRST
        while True:
            if self._retry:
                # Writes that failed for lack of space go first, after a pause (the disk will not
                # have changed in a microsecond); newer work waits behind them, in order.
                time.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                group, self._retry = self._retry, []
                if not self._commit(group):
                    return
                if stopping:       # shutting down: that was the last try; the next start recovers
                    self._fail_for_good()
                    return
                continue
            backoff = RETRY_FIRST
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
        """Runs and commits one group, then wakes its waiters (not those kept for a retry); False
        once the loop is gone."""
        t0 = time.perf_counter()
        results = self._run_group_retrying(group)
        if self._on_commit is not None:
            self._on_commit(len(group), time.perf_counter() - t0)
        waiting = [(op.future, res) for op, res in zip(group, results, strict=True)
                   if op.future is not None and res is not _RETRY]
        if waiting:
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_resolve, waiting)
            except RuntimeError:  # loop closed during shutdown
                return False
        return True

    def _run_group_retrying(self, group: list[_Op]) -> list[Any]:
        """Runs a group; ops that failed for lack of space and must persist are kept for a retry
        (their result is _RETRY)."""
        results: list[Any] = self._run_group(group)
        storage_error = next((res[1] for res in results if not res[0] and is_storage_error(res[1])), None)
        if storage_error is None:
            if self._failing:
                self._failing = False
                log.warning("spool writes succeed again")
            if self._on_written is not None:
                self._on_written()
            return results
        if not self._failing:
            self._failing = True
            log.warning("spool write failed (%s): retrying what must be kept until it is written", storage_error)
        # No commit, no automatic checkpoint: the WAL would only grow. A checkpoint now lets the next
        # write start the WAL over inside the file's existing space (no new blocks needed).
        try:
            self.store.db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:
            log.debug("checkpoint after a failed write: %s", exc)
        if self._on_full is not None and is_disk_full(storage_error):
            try:
                self._on_full(storage_error)
            except Exception:
                log.exception("disk-full handler failed")
        for i, (op, res) in enumerate(zip(group, results, strict=True)):
            if not res[0] and op.persist and is_storage_error(res[1]):
                self._retry.append(op)
                self.retried_ops += 1
                results[i] = _RETRY
        return results

    def _fail_for_good(self) -> None:
        if self._retry:
            log.error("spool: %d write(s) still failing at shutdown; the next start recovers their recipients",
                      len(self._retry))
            waiting = [(op.future, (False, SpoolClosed("spool closed before the write succeeded")))
                       for op in self._retry if op.future is not None]
            self._retry = []
            if waiting and self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(_resolve, waiting)

    def _run_group(self, group: list[_Op]) -> list[tuple[bool, Any]]:
        """Runs the group in one transaction. First without a savepoint per operation: every SQL
        statement here gives up the GIL and must win it back from a busy event loop, and
        savepoints were two of the three statements of a small operation. Should any operation
        raise, nothing of that try is kept and the group runs again, each operation under its
        own savepoint, so that one bad operation does not sink the others (operations only touch
        the database, so running them again is safe)."""
        store = self.store
        results: list[tuple[bool, Any]] = []
        try:
            store.begin()
            for op in group:
                results.append((True, op.fn(store)))
            store.commit()
            return results
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                store.rollback()
        return self._run_group_isolated(group)

    def _run_group_isolated(self, group: list[_Op]) -> list[tuple[bool, Any]]:
        store = self.store
        results: list[tuple[bool, Any]] = []
        try:
            store.begin()
            for op in group:
                store.db.execute("SAVEPOINT op")
                try:
                    result = op.fn(store)
                    store.db.execute("RELEASE op")      # with the op's held-back writes first
                except Exception as exc:  # one bad operation must not sink the group
                    store.drop_held()
                    store.db.execute("ROLLBACK TO op")
                    store.db.execute("RELEASE op")
                    if is_storage_error(exc):
                        log.debug("spool operation failed: %s", exc)
                    else:
                        log.exception("spool operation failed")
                    results.append((False, exc))
                else:
                    results.append((True, result))
            store.commit()
        except sqlite3.Error as exc:
            # The commit (or BEGIN, or a rollback SQLite already did itself on SQLITE_FULL) failed:
            # nothing in the group is durable. Report the cause, not "no such savepoint".
            cause = next((r[1] for r in results if not r[0] and is_storage_error(r[1])), None) or _root(exc)
            if not is_storage_error(cause):
                log.error("spool commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                store.rollback()
            return [(False, cause)] * len(group)
        return results


_RETRY = object()


def _root(exc: BaseException) -> BaseException:
    """The storage error behind `exc` ("no such savepoint" after SQLite rolled back on SQLITE_FULL)."""
    cur: BaseException | None = exc
    while cur is not None:
        if is_storage_error(cur) and not (cur.__context__ and is_storage_error(cur.__context__)):
            return cur
        cur = cur.__context__
    return exc


def _resolve(waiting: list[tuple[asyncio.Future, tuple[bool, Any]]]) -> None:
    for future, (ok, value) in waiting:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
