"""The MTA's side of the policy protocol: an `mta.limits.Limiter` that asks policyd over a socket.

`PolicyClient` sends grant batches and aggregated feedback over one multiplexed connection,
reconnects on its own, and never holds its caller longer than its timeouts. While policyd cannot
be reached (or cannot reach its state), requests get no leases (count 0 with a retry time), except
for the transactional stream, which keeps a small per-site floor; feedback is kept, aggregated and
bounded, and sent once policyd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mta.limits import GrantRequest, Lease, Outcome
from policy import protocol
from policy.config import parse_listen
from policy.engine.bucket import UNLIMITED, BucketSpec, BucketState, available, refill
from policy.engine.model import FeedbackItem, GrantAsk

if TYPE_CHECKING:
    from mta.config import Config as MtaConfig

log = logging.getLogger("policy.client")

_FeedbackKey = tuple[str, tuple[str, ...], str, str, str, str, str, str, int, str, str]


def _feedback_key(o: Outcome | FeedbackItem) -> _FeedbackKey:
    """Outcomes that agree on all of this are sent as one, with their counts summed."""
    return (o.site, tuple(o.mx_hosts), o.source, o.sending_domain, o.tenant, o.stream, o.outcome, o.reason,
            o.code, o.status, o.mailbox)


class PolicyUnavailable(ConnectionError):
    """policyd cannot be reached now, or answered that it cannot serve."""


class _Connection:
    """One stream to policyd; replies are matched to requests by id, so calls may overlap."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[protocol.Reply]] = {}
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._read_replies())

    async def call(self, build: Callable[[int], bytes]) -> protocol.Reply:
        if self.closed:
            raise PolicyUnavailable("connection closed")
        msg_id = next(self._ids)
        future: asyncio.Future[protocol.Reply] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        try:
            self._writer.write(build(msg_id))
            await self._writer.drain()
            return await future
        finally:
            self._waiting.pop(msg_id, None)

    async def _read_replies(self) -> None:
        error: Exception = PolicyUnavailable("policyd closed the connection")
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                reply = protocol.decode_reply(line)
                future = self._waiting.get(reply.msg_id) if isinstance(reply.msg_id, int) else None
                if future is not None and not future.done():
                    future.set_result(reply)
                elif not reply.ok:
                    log.warning("policyd: %s: %s", reply.error_code, reply.error_message)
        except (OSError, ValueError, protocol.ProtocolError) as exc:
            error = PolicyUnavailable(f"policyd connection failed: {exc}")
        finally:
            self.closed = True
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(error)
            self._writer.close()

    async def close(self) -> None:
        self.closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class PolicyClient:
    """A `mta.limits.Limiter` backed by policyd.

    address: "host:port" or "unix:/path" (the MTA's `[policy] address`).
    transactional_floor: messages per minute per site the transactional stream may still send
        while policyd is unreachable (the MTA's `[policy] transactional_floor`); 0 = none.
    clock: the MTA's clock for `valid_until` and `retry_after` (policyd sends relative times).
    """

    def __init__(self, address: str, *, transactional_floor: float = 0.0, clock: Callable[[], float] = time.time,
                 connect_timeout: float = 1.0, request_timeout: float = 2.0, retry_interval: float = 1.0,
                 floor_lease_seconds: float = 10.0, floor_max_connections: int = 1,
                 transactional_stream: str = "transactional", max_pending_feedback: int = 50000,
                 client_name: str = "warmup-mta") -> None:
        self.address = address
        self._where = parse_listen(address, "policy.address")
        self.transactional_floor = transactional_floor
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.retry_interval = retry_interval
        self.floor_lease_seconds = floor_lease_seconds
        self.floor_max_connections = floor_max_connections
        self.transactional_stream = transactional_stream
        self.max_pending_feedback = max_pending_feedback
        self.client_name = client_name
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._next_attempt = 0.0           # time.monotonic(): no connection attempt before this
        self._down_since: float | None = None
        self._pending: dict[_FeedbackKey, int] = {}
        self.dropped_feedback = 0          # outcomes given up because the buffer was full
        self._flush_task: asyncio.Task[None] | None = None
        self._floor: dict[str, BucketState] = {}

    @classmethod
    def from_mta_config(cls, cfg: MtaConfig, clock: Callable[[], float] = time.time) -> PolicyClient:
        """The client the MTA's `[policy]` section describes (address, transactional_floor)."""
        return cls(cfg.policy.address, transactional_floor=float(cfg.policy.transactional_floor), clock=clock)

    @property
    def available(self) -> bool:
        """Whether the last exchange with policyd succeeded."""
        return self._conn is not None and not self._conn.closed and self._down_since is None

    # ---- Limiter
    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        if not requests:
            return []
        asks = [GrantAsk(r.site, tuple(r.mx_hosts), r.pool, tuple(r.sources), r.stream, r.sending_domain, r.tenant,
                         r.wanted, r.mailbox) for r in requests]
        try:
            reply = await self._call(lambda i: protocol.grant_message(i, asks))
            grants = protocol.decode_grants(reply, len(asks))
        except (PolicyUnavailable, protocol.ProtocolError) as exc:
            self._went_down(exc)
            return self._fallback(requests)
        now = self.clock()
        leases = []
        for index, (req, per_ask) in enumerate(zip(requests, grants, strict=True)):
            for g in per_ask:
                leases.append(Lease(req.site, g.source, g.count, g.max_connections, g.messages_per_connection,
                                    now + g.ttl, req.stream, req.sending_domain, req.tenant,
                                    retry_after=now + g.retry_in if g.count == 0 else 0.0, request=index))
        self._schedule_flush()
        return leases

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        """Aggregates outcomes and sends them in the background; returns at once."""
        for o in outcomes:
            self._add_pending(_feedback_key(o), o.count)
        self._schedule_flush()

    # ---- life cycle
    async def flush(self) -> bool:
        """Sends pending feedback now; True when nothing is left pending."""
        self._schedule_flush()
        if self._flush_task is not None:
            await asyncio.shield(self._flush_task)
        return not self._pending

    async def close(self, flush_timeout: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), flush_timeout)
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ---- connection
    async def _connection(self) -> _Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            if time.monotonic() < self._next_attempt:
                raise PolicyUnavailable(f"policyd at {self.address} unreachable; next attempt later")
            self._next_attempt = time.monotonic() + self.retry_interval
            try:
                if isinstance(self._where, str):
                    opening = asyncio.open_unix_connection(self._where)
                else:
                    opening = asyncio.open_connection(*self._where)
                reader, writer = await asyncio.wait_for(opening, self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise PolicyUnavailable(f"cannot connect to policyd at {self.address}: {exc}") from None
            conn = _Connection(reader, writer)
            try:
                hello = await asyncio.wait_for(conn.call(lambda i: protocol.hello_message(i, self.client_name)),
                                               self.request_timeout)
            except (PolicyUnavailable, TimeoutError) as exc:
                await conn.close()
                raise PolicyUnavailable(f"policyd at {self.address} did not greet: {exc}") from None
            if not hello.ok:
                await conn.close()
                raise PolicyUnavailable(f"policyd at {self.address} refused: {hello.error_message}")
            self._conn = conn
            return conn

    async def _call(self, build: Callable[[int], bytes]) -> protocol.Reply:
        conn = await self._connection()
        try:
            reply = await asyncio.wait_for(conn.call(build), self.request_timeout)
        except TimeoutError:
            await conn.close()    # a hung daemon: start afresh next time
            raise PolicyUnavailable(f"policyd at {self.address} did not answer in {self.request_timeout}s") from None
        if not reply.ok:
            raise PolicyUnavailable(f"policyd: {reply.error_code}: {reply.error_message}")
        if self._down_since is not None:
            log.info("policyd at %s is back after %.1fs", self.address, time.monotonic() - self._down_since)
            self._down_since = None
        return reply

    def _went_down(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("policyd unavailable, sending only the transactional floor: %s", exc)

    # ---- what to do without policyd
    def _fallback(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        now = self.clock()
        leases = []
        for index, req in enumerate(requests):
            granted = 0
            if req.stream == self.transactional_stream and self.transactional_floor > 0 and req.sources:
                granted = self._take_floor(req.site, req.wanted, now)
            source = req.sources[0] if req.sources else ""
            if granted:
                leases.append(Lease(req.site, source, granted, self.floor_max_connections, granted,
                                    now + self.floor_lease_seconds, req.stream, req.sending_domain, req.tenant,
                                    request=index))
            else:
                leases.append(Lease(req.site, source, 0, self.floor_max_connections, 1, now, req.stream,
                                    req.sending_domain, req.tenant, retry_after=now + self.retry_interval,
                                    request=index))
        return leases

    def _take_floor(self, site: str, wanted: int, now: float) -> int:
        """A token bucket per site: `transactional_floor` per minute, bursts of ten seconds' worth."""
        rate = self.transactional_floor / 60.0
        spec = BucketSpec(site, rate, max(1.0, rate * 10.0), UNLIMITED)
        bucket = refill(self._floor.get(site), spec, now, 0)
        granted = int(min(wanted, available(bucket, spec)))
        bucket.tokens -= granted
        self._floor[site] = bucket
        return granted

    # ---- feedback buffer
    def _add_pending(self, key: _FeedbackKey, count: int) -> None:
        if key in self._pending:
            self._pending[key] += count
        elif len(self._pending) < self.max_pending_feedback:
            self._pending[key] = count
        else:
            self.dropped_feedback += count

    def _schedule_flush(self) -> None:
        if self._pending and (self._flush_task is None or self._flush_task.done()):
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_pending())

    async def _flush_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            items = [FeedbackItem(site, mx, source, domain, tenant, stream, outcome, reason, code, status, count,
                                  mailbox)
                     for (site, mx, source, domain, tenant, stream, outcome, reason, code, status, mailbox), count
                     in batch.items()]
            sent = 0
            try:
                while sent < len(items):
                    chunk = items[sent:sent + protocol.MAX_ITEMS]
                    await self._call(lambda n, c=chunk: protocol.feedback_message(n, c))
                    sent += len(chunk)
            except (PolicyUnavailable, protocol.ProtocolError) as exc:
                self._went_down(exc)
                for item in items[sent:]:      # keep what was not sent for when policyd is back
                    self._add_pending(_feedback_key(item), item.count)
                return
