"""Webhooks as an event-log subscriber: matching events go to the outbox, senders post them.

`on_event` runs in the event loop for every event, synchronously: it only filters, encodes and
appends to a bounded list. A flusher task hands that list to the outbox thread in groups (one
transaction each) and wakes the senders of the endpoints that got rows. Memory is bounded by
`max_pending` (events not yet on disk) and the disk by each endpoint's `max_backlog`; past either,
events for that endpoint are dropped and counted, and mail flows on regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

import aiohttp

from mta.events import Event
from mta.metrics import Metrics
from mta.webhooks.config import WebhookEndpoint
from mta.webhooks.metrics import WebhookMetrics
from mta.webhooks.outbox import Outbox, OutboxStore
from mta.webhooks.retry import matches
from mta.webhooks.sender import Backlog, EndpointSender

log = logging.getLogger("mta.webhooks")

OUTBOX_FILE = "webhooks.db"


class Webhooks:
    def __init__(self, endpoints: list[WebhookEndpoint], spool_dir: str, metrics: Metrics,
                 clock: Callable[[], float] = time.time, max_pending: int = 50_000,
                 group_delay: float = 0.02) -> None:
        self.endpoints = endpoints
        self._filters = [(ep.name, ep.tenant, frozenset(ep.events), ep.max_backlog) for ep in endpoints]
        self.outbox = Outbox(os.path.join(spool_dir, OUTBOX_FILE))
        self.backlog = Backlog()
        self.metrics = WebhookMetrics(metrics, lambda: {ep.name: float(self.backlog.get(ep.name))
                                                        for ep in self.endpoints})
        self.clock = clock
        self.max_pending = max_pending
        self.group_delay = group_delay
        self.senders: dict[str, EndpointSender] = {}
        self._pending: list[tuple[str, float, str]] = []
        self._flush_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[bool] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._open = False
        self._overloaded = False
        self._write_failing = False

    async def start(self) -> None:
        await self.outbox.open()
        configured = {ep.name for ep in self.endpoints}
        for name, count in (await self.outbox.call(OutboxStore.counts)).items():
            if name in configured:
                self.backlog.add(name, count)
                log.info("webhook %s: %d events waiting in the outbox from before the start", name, count)
            else:
                await self.outbox.call(OutboxStore.delete_endpoint, name)
                log.warning("webhook outbox: dropped %d events queued for %r, which is no longer configured "
                            "(give [[webhooks]] a `name` to keep a backlog across a URL change)", count, name)
        # One session (connection pool) for all endpoints; no cookies: webhooks keep no state.
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        for ep in self.endpoints:
            sender = EndpointSender(ep, self.outbox, self._session, self.metrics, self.backlog, self.clock)
            self.senders[ep.name] = sender
            self.metrics.failures.labels(ep.name).set(0)
            sender.start()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="webhook outbox writer")
        self._open = True

    def on_event(self, event: Event) -> None:
        """EventLog subscriber: cheap and non-blocking, whatever the endpoints are doing."""
        if not self._open:
            return
        encoded = ""
        for name, tenant, events, max_backlog in self._filters:
            if not matches(tenant, events, event):
                continue
            if self.backlog.get(name) >= max_backlog:
                self.metrics.dropped.labels(name, "backlog_full").inc()
                continue
            if len(self._pending) >= self.max_pending:
                self.metrics.dropped.labels(name, "overload").inc()
                if not self._overloaded:
                    self._overloaded = True
                    log.error("webhook outbox writer is %d events behind: dropping events until it catches up",
                              len(self._pending))
                continue
            encoded = encoded or event.to_json()
            self._pending.append((name, event.time, encoded))
            self.backlog.add(name)
        if self._pending and not self._flush_wanted.is_set():
            self._flush_wanted.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(self.group_delay)       # let a group gather: one transaction for many events
            self._flush_wanted.clear()
            # Shielded: `stop` cancels this loop, and a write cut off in the middle would lose the
            # rows it took (neither pending nor surely written); `stop` waits for it instead.
            self._writing = asyncio.ensure_future(self._write_pending())
            written = await asyncio.shield(self._writing)
            self._writing = None
            if not written:
                await asyncio.sleep(1.0)
                self._flush_wanted.set()

    def forget(self, unwanted: Callable[[str], bool]) -> int:
        """Erasure: events not yet in the outbox for which `unwanted` (their JSON) is true go."""
        kept = [row for row in self._pending if not unwanted(row[2])]
        dropped, self._pending = len(self._pending) - len(kept), kept
        return dropped

    async def _write_pending(self) -> bool:
        rows, self._pending = self._pending, []
        if not rows:
            return True
        try:
            await self.outbox.call(OutboxStore.insert, rows)
        except Exception as exc:    # sqlite3.Error, OSError (disk full): keep the rows, try again
            self._pending = rows + self._pending
            if not self._write_failing:
                self._write_failing = True
                log.error("cannot write the webhook outbox %s: %s (retrying; events are held in memory up to "
                          "%d, then dropped)", self.outbox.path, exc, self.max_pending)
            return False
        if self._write_failing:
            self._write_failing = False
            log.warning("webhook outbox %s is written again", self.outbox.path)
        if self._overloaded and len(self._pending) < self.max_pending // 2:
            self._overloaded = False
            log.warning("webhook outbox writer caught up")
        for name in {row[0] for row in rows}:
            self.senders[name].wake()
        return True

    async def stop(self) -> None:
        """Stops the senders, writes what is pending, closes the outbox. Call after the last event."""
        if not self._open:
            return
        self._open = False
        for sender in self.senders.values():
            await sender.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._writing is not None:       # a write the flusher had begun ends first
            await self._writing
            self._writing = None
        if self._pending and not await self._write_pending():
            log.error("webhook outbox: %d events not written at shutdown", len(self._pending))
        if self._session is not None:
            await self._session.close()
        await self.outbox.close()
