"""One task per endpoint: takes the head batch from the outbox, signs and POSTs it, deletes it on
2xx, backs off on anything else. One request at a time per endpoint, so a dead endpoint costs one
request per back-off step and events reach a live one in order. A batch refused for what it holds
(400, 413, 415, 422) is split until the refused event is alone, and that event is dropped after
a few refusals (logged, counted): the events behind it go on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from mta.webhooks.config import WebhookEndpoint
from mta.webhooks.metrics import WebhookMetrics
from mta.webhooks.outbox import EXPIRE_CHUNK, Batch, Outbox, OutboxStore
from mta.webhooks.retry import (
    PAYLOAD_REFUSED,
    REFUSALS_TO_DROP,
    Backoff,
    RetryPolicy,
    batch_body,
    next_batch_size,
    parse_retry_after,
    result_label,
)
from mta.webhooks.signing import parse_secret, signed_headers

log = logging.getLogger("mta.webhooks")

USER_AGENT = "warmup-mta-webhooks/1"
_IDLE_CHECK = 5.0       # an idle sender looks at the outbox this often even without a wake-up
_TICK = 1.0             # a back-off wait re-reads the clock this often (an injected clock may jump)
_MAX_ANSWER = 64 * 1024  # of a receiver's answer body, read and thrown away (keeps the connection usable)


@dataclass(frozen=True)
class Answer:
    """How one POST ended: an HTTP status, or no answer (error: timeout or connect_error)."""

    status: int | None
    error: str = ""
    detail: str = ""
    retry_after: float | None = None


class Backlog:
    """Events waiting per endpoint (in the outbox or about to be written): the gauge and the
    max_backlog check read it, so neither counts rows on disk."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def remove(self, name: str, n: int) -> None:
        self.counts[name] = max(0, self.counts.get(name, 0) - n)

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)


class EndpointSender:
    def __init__(self, endpoint: WebhookEndpoint, outbox: Outbox, session: aiohttp.ClientSession,
                 metrics: WebhookMetrics, backlog: Backlog, clock: Callable[[], float],
                 rand: Callable[[], float] = random.random) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.key = parse_secret(endpoint.secret)
        self.outbox = outbox
        self.session = session
        self.metrics = metrics
        self.backlog = backlog
        self.clock = clock
        policy = RetryPolicy(endpoint.retry_base, endpoint.retry_max, endpoint.max_age)
        self.backoff = Backoff(policy, clock, rand)
        self.batch_size = endpoint.batch_size     # smaller while the receiver refuses batches
        self.refusals = 0                         # of the head batch, in a row
        # Events delivered since a batch was last refused; under a whole batch's worth, the sender
        # is still halving batches to find what the receiver refuses (`searching`).
        self.since_refusal = endpoint.batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def searching(self) -> bool:
        return self.since_refusal < self.endpoint.batch_size

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"webhook {self.name}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Cancels a POST in flight: its batch stays in the outbox and goes out again, under the
        same webhook-id, after the restart."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:       # an outbox error (disk): keep the task, try again later
                log.exception("webhook %s: sender step failed", self.name)
                await asyncio.sleep(_IDLE_CHECK)

    async def _step(self) -> None:
        wait = self.backoff.wait()
        if wait > 0:
            await asyncio.sleep(min(wait, _TICK))
            return
        self._wake.clear()          # before the read: rows written meanwhile wake us again
        batch = await self.outbox.call(OutboxStore.next_batch, self.name, self.batch_size)
        if batch is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _IDLE_CHECK)
            return
        cutoff = self.backoff.expiry_cutoff()
        if batch.oldest < cutoff:
            await self._expire(cutoff)
            return
        answer = await self._post(batch)
        self.metrics.posts.labels(self.name, result_label(answer.status, answer.error)).inc()
        if answer.status is not None and 200 <= answer.status < 300:
            await self._delivered(batch)
        elif answer.status in PAYLOAD_REFUSED:
            await self._refused(batch, answer.status)
        else:
            self._failed(batch, answer)

    async def _post(self, batch: Batch) -> Answer:
        body = batch_body(batch.events)
        now = self.clock()
        headers = signed_headers(self.key, batch.id, int(now), body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        timeout = aiohttp.ClientTimeout(total=self.endpoint.timeout)
        try:
            async with self.session.post(self.endpoint.url, data=body, headers=headers, timeout=timeout,
                                         allow_redirects=False) as resp:
                await resp.content.read(_MAX_ANSWER)
                return Answer(resp.status, retry_after=parse_retry_after(resp.headers.get("Retry-After"), now))
        except TimeoutError:
            return Answer(None, "timeout", f"no answer within {self.endpoint.timeout:g}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Answer(None, "connect_error", f"{type(exc).__name__}: {exc}")

    async def _delivered(self, batch: Batch) -> None:
        deleted = await self.outbox.call(OutboxStore.delete_batch, self.name, batch.id)
        self.backlog.remove(self.name, deleted)
        self.metrics.delivered.labels(self.name).inc(deleted)
        if self.backoff.failures:
            log.warning("webhook %s: delivering again after %d failed tries over %.0fs", self.name,
                        self.backoff.failures, self.clock() - self.backoff.failing_since)
        self.backoff.succeeded()
        self.metrics.failures.labels(self.name).set(0)
        self.refusals = 0
        self.since_refusal += deleted
        # While searching, a delivered half means the refused event is in the other half: keep the
        # size. Past a whole batch's worth of events, what was refused is behind us: grow again.
        if not self.searching:
            self.batch_size = next_batch_size(self.batch_size, self.endpoint.batch_size, refused=False)

    async def _refused(self, batch: Batch, status: int) -> None:
        if len(batch.events) > 1:
            # Which event does it refuse? Halve until it is alone; the others go through meanwhile.
            self.batch_size = next_batch_size(min(self.batch_size, len(batch.events)), self.endpoint.batch_size,
                                              refused=True)
            self.since_refusal = 0
            await self.outbox.call(OutboxStore.unstamp, self.name, batch.id)
            log.warning("webhook %s: batch %s (%d events) refused with HTTP %d; sending %d at a time to find "
                        "what it refuses", self.name, batch.id, len(batch.events), status, self.batch_size)
            return
        self.refusals += 1
        if self.refusals < REFUSALS_TO_DROP:
            self._failed(batch, Answer(status))
            return
        deleted = await self.outbox.call(OutboxStore.delete_batch, self.name, batch.id)
        self.backlog.remove(self.name, deleted)
        self.metrics.dropped.labels(self.name, "refused").inc(deleted)
        log.error("webhook %s: dropped an event refused %d times in a row with HTTP %d (it stays in the event "
                  "log): %.300s", self.name, self.refusals, status, batch.events[0])
        self.refusals, self.since_refusal = 0, self.endpoint.batch_size
        self.backoff.succeeded()           # the receiver answers: the events behind go now
        self.metrics.failures.labels(self.name).set(0)

    def _failed(self, batch: Batch, answer: Answer) -> None:
        delay = self.backoff.failed(answer.retry_after)
        self.metrics.failures.labels(self.name).set(self.backoff.failures)
        what = f"HTTP {answer.status}" if answer.status is not None else answer.detail
        # One warning when an outage starts (and one when it ends, above); the tries between at debug.
        level = logging.WARNING if self.backoff.failures == 1 else logging.DEBUG
        log.log(level, "webhook %s: batch %s (%d events) failed: %s; try %d, next in %.1fs, %d events waiting",
                self.name, batch.id, len(batch.events), what, self.backoff.failures, delay,
                self.backlog.get(self.name))

    async def _expire(self, cutoff: float) -> None:
        dropped = 0
        while True:
            n = await self.outbox.call(OutboxStore.expire, self.name, cutoff, EXPIRE_CHUNK)
            dropped += n
            if n < EXPIRE_CHUNK:
                break
        if dropped:
            self.backlog.remove(self.name, dropped)
            self.metrics.dropped.labels(self.name, "expired").inc(dropped)
            log.error("webhook %s: dropped %d events older than max_age (%.0fs) after %d failed tries",
                      self.name, dropped, self.endpoint.max_age, self.backoff.failures)
