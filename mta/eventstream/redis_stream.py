"""Appends every event to a Redis Stream, so consumers on any node read them with consumer groups.

Each entry has the fields `event` (its name), `tenant` and `json` (the event log's JSON object),
added with `XADD <stream> MAXLEN ~ <redis_maxlen> * ...`. The event-log subscriber only appends to
a bounded in-memory buffer; one task drains it with pipelined XADDs (up to `_BATCH` per round
trip). While Redis is unreachable the buffer holds up to `redis_buffer` events, then drops new
ones (counted); the task reconnects by itself. Delivery is at least once: a pipeline cut off
half-way is sent again whole, so an outage can repeat a few entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mta.events import Event
from mta.eventstream.buffer import Outage, StreamBuffer
from mta.metrics import Metrics

log = logging.getLogger("mta.eventstream")

_BATCH = 500                # XADDs per pipeline
_RETRY_FIRST = 0.2          # seconds before the first reconnect; doubled up to _RETRY_MAX
_RETRY_MAX = 5.0


def redacted(url: str) -> str:
    """The URL without its password, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class StreamMetrics:
    def __init__(self, metrics: Metrics, buffered: Callable[[], int]) -> None:
        r = metrics.registry
        self.written = Counter("mta_event_stream_written", "Events appended to the Redis Stream", registry=r)
        self.dropped = Counter("mta_event_stream_dropped", "Events not appended to the Redis Stream: buffer full "
                               "while Redis was unreachable or slow", registry=r)
        self.connected = Gauge("mta_event_stream_connected", "1 while the last write to the Redis Stream "
                               "succeeded, else 0", registry=r)
        self.buffered = Gauge("mta_event_stream_buffered", "Events waiting in memory for the Redis Stream",
                              registry=r)
        self.buffered.set_function(lambda: float(buffered()))


class RedisEventStream:
    def __init__(self, url: str, stream: str, maxlen: int, buffer_size: int, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.buffer = StreamBuffer(buffer_size)
        self.outage = Outage()
        self.metrics = StreamMetrics(metrics, lambda: len(self.buffer))
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # No retries inside the client: this task has its own back-off, and a call must fail fast.
        self._redis = aioredis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0,
                                              retry=Retry(NoBackoff(), 0), health_check_interval=30)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="redis event stream")

    def on_event(self, event: Event) -> None:
        """EventLog subscriber: appends to the buffer, never waits."""
        if not self.buffer.add((event.event, event.tenant, event.to_json())):
            self.metrics.dropped.inc()
            if self.outage.dropped_one():
                log.error("redis event stream: %d events buffered, the most it holds; dropping events until "
                          "%s takes them again", len(self.buffer), redacted(self.url))
        elif not self._wake.is_set():
            self._wake.set()

    async def _run(self) -> None:
        delay = _RETRY_FIRST
        while True:
            if not len(self.buffer):
                self.outage.drained()
                self._wake.clear()
                await self._wake.wait()
            items = self.buffer.peek(_BATCH)
            try:
                await self._write(items)
            except (RedisError, OSError) as exc:
                self.metrics.connected.set(0)
                if self.outage.failed(self.clock()):
                    log.error("redis event stream %s unreachable: %s; buffering up to %d events, reconnecting",
                              redacted(self.url), exc, self.buffer.capacity)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            self.buffer.consume(len(items))
            self.metrics.written.inc(len(items))
            self.metrics.connected.set(1)
            delay = _RETRY_FIRST
            report = self.outage.recovered(self.clock())
            if report is not None:
                log.warning("redis event stream %s reachable again after %.1fs; %d events dropped meanwhile",
                            redacted(self.url), report.seconds, report.dropped)

    async def _write(self, items: list[tuple[str, ...]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, tenant, encoded in items:
                pipe.xadd(self.stream, {"event": name, "tenant": tenant, "json": encoded},
                          maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Gives the buffer a moment to reach Redis (not more: Redis may be down), then closes."""
        deadline = self.clock() + drain_seconds
        while len(self.buffer) and not self.outage.down and self.clock() < deadline:
            await asyncio.sleep(0.02)
        if len(self.buffer):
            log.warning("redis event stream: %d events not written at shutdown", len(self.buffer))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
