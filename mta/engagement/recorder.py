"""Feeds the engagement store from the event log, in batches off the event loop.

Subscribed to the EventLog: `delivered` events, and human `opened` / `clicked` ones (machine
activity is recorded in the event log but is no engagement). Also remembers recent deliveries
(bounded), so the tracking listener can tell a click seconds after delivery (a link scanner)
from a person's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from mta.engagement.store import Activity, EngagementStore
from mta.events import Event

__all__ = ["EngagementRecorder"]

log = logging.getLogger("mta.engagement")

_KINDS = ("delivered", "opened", "clicked")


class EngagementRecorder:
    def __init__(self, store: EngagementStore, *, flush_every: float = 1.0, batch: int = 2000,
                 max_pending: int = 200_000, recent_deliveries: int = 200_000) -> None:
        self.store = store
        self.flush_every = flush_every
        self.batch = batch
        self.max_pending = max_pending
        self._pending: list[Activity] = []
        self._dropped = 0
        self._recent: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._recent_cap = recent_deliveries
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ event log subscriber
    def on_event(self, event: Event) -> None:
        if event.event not in _KINDS or event.machine:
            return
        if event.event == "delivered":
            key = (event.queue_id, event.recipient.lower())
            self._recent.pop(key, None)
            self._recent[key] = event.time
            if len(self._recent) > self._recent_cap:
                self._recent.popitem(last=False)
        if len(self._pending) >= self.max_pending:
            # The store is far behind (a stuck disk): engagement is statistics, mail is not held for it.
            self._dropped += 1
            if self._dropped == 1:
                log.warning("engagement store is behind: dropping activity until it catches up")
            return
        self._pending.append(Activity(event.recipient, event.event, event.time))
        if len(self._pending) >= self.batch:
            self._wake.set()

    def forget(self, address: str) -> None:
        """Erasure: the address's activity not yet written, and its recent deliveries, go."""
        key = address.strip().strip("<>").lower()
        self._pending = [a for a in self._pending if a.recipient.lower() != key]
        for k in [k for k in self._recent if k[1] == key]:
            del self._recent[k]

    def delivered_at(self, queue_id: str, recipient: str) -> float | None:
        return self._recent.get((queue_id, recipient.lower()))

    # ------------------------------------------------------------------ writer
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="engagement-recorder")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_every)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:self.batch], self._pending[self.batch:]
            try:
                await asyncio.to_thread(self.store.record, chunk)
            except Exception:
                log.exception("engagement store: could not record %d activities", len(chunk))
                return
        if self._dropped:
            log.warning("engagement store caught up; %d activities were dropped meanwhile", self._dropped)
            self._dropped = 0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        await asyncio.to_thread(self.store.close)
