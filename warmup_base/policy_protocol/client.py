"""The MTA's side of the policy protocol: a `Limiter` that asks policyd over a socket.

`PolicyClient` sends grant batches and aggregated feedback over one multiplexed connection that a
background task keeps open (reconnecting forever, with back-off, whatever was in flight when it
broke), and never holds its caller longer than its timeouts. While policyd cannot
be reached (or cannot reach its state), requests get no leases (count 0 with a retry time), except
for the transactional stream, which keeps a small per-site floor; feedback is kept, aggregated and
bounded, and sent once policyd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from warmup_base.listen import parse_listen
from warmup_base.policy_protocol import wire as protocol
from warmup_base.policy_protocol.model import GrantRequest, Lease, Outcome

log = logging.getLogger("policy.client")

_FeedbackKey = tuple[str, tuple[str, ...], str, str, str, str, str, str, int, str, str, str]


def _feedback_key(o: Outcome) -> _FeedbackKey:
    """Outcomes that agree on all of this are sent as one, with their counts summed."""
    return (o.site, tuple(o.mx_hosts), o.source, o.sending_domain, o.tenant, o.stream, o.outcome, o.reason,
            o.code, o.status, o.mailbox, o.campaign)


@dataclass(slots=True)
class _FloorBucket:
    tokens: float
    stamp: float


class PolicyUnavailable(ConnectionError):
    """policyd cannot be reached now, or answered that it cannot serve."""


class PolicyRefused(PolicyUnavailable):
    """policyd answered with an error (`code`: bad_request for an admin command it refuses)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"policyd: {code}: {message}")
        self.code = code
        self.detail = message


class _Connection:
    """One stream to policyd; replies are matched to requests by id, so calls may overlap.

    Whatever ends it (policyd gone, a write on a dead socket, a reply that is not JSON, a hung
    daemon given up on), every call still waiting fails with `PolicyUnavailable` and `ended` is set.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[protocol.Reply]] = {}
        self.ended = asyncio.Event()
        self.opened_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._read_replies())

    @property
    def closed(self) -> bool:
        return self.ended.is_set()

    async def call(self, build: Callable[[int], bytes]) -> protocol.Reply:
        if self.closed:
            raise PolicyUnavailable("connection closed")
        msg_id = next(self._ids)
        future: asyncio.Future[protocol.Reply] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        try:
            try:
                self._writer.write(build(msg_id))
                await self._writer.drain()
            except (OSError, RuntimeError) as exc:     # uvloop says RuntimeError for a closed transport
                self._end(PolicyUnavailable(f"policyd connection failed: {exc}"))
                raise PolicyUnavailable(f"policyd connection failed: {exc}") from None
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
            self._end(error)

    def _end(self, error: Exception) -> None:
        if self.ended.is_set():
            return
        self.ended.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._writer.close()

    async def close(self) -> None:
        self._end(PolicyUnavailable("connection closed"))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class PolicyClient:
    """A `Limiter` backed by policyd.

    address: "host:port" or "unix:/path" (the MTA's `[policy] address`).
    transactional_floor: messages per minute per site the transactional stream may still send
        while policyd is unreachable (the MTA's `[policy] transactional_floor`); 0 = none.
    clock: the MTA's clock for `valid_until` and `retry_after` (policyd sends relative times).
    retry_interval, max_retry_interval: a background task keeps the connection open; after a
        failed attempt it waits `retry_interval`, doubling up to `max_retry_interval` (jittered).
        Lanes refused while policyd is away ask again after `retry_interval`, or at once when
        the connection is back (`subscribe`).
    """

    def __init__(self, address: str, *, transactional_floor: float = 0.0, clock: Callable[[], float] = time.time,
                 connect_timeout: float = 1.0, request_timeout: float = 2.0, retry_interval: float = 1.0,
                 max_retry_interval: float = 5.0,
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
        self.max_retry_interval = max_retry_interval
        self._rng = random.Random()
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._closing = False
        self._listeners: list[Callable[[bool], None]] = []
        self._down_since: float | None = None
        self._usable: bool | None = None       # what the listeners were last told (None: nothing yet)
        self._pending: dict[_FeedbackKey, int] = {}
        self.dropped_feedback = 0          # outcomes given up because the buffer was full
        self._flush_task: asyncio.Task[None] | None = None
        self._floor: dict[str, _FloorBucket] = {}

    @property
    def available(self) -> bool:
        """Whether the last exchange with policyd succeeded."""
        return self._conn is not None and not self._conn.closed and self._down_since is None

    # ---- Limiter
    async def request(self, requests: Sequence[GrantRequest]) -> list[Lease]:
        if not requests:
            return []
        asks = list(requests)
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
                                    retry_after=now + g.retry_in if g.count == 0 else 0.0, request=index,
                                    why=g.why))
        self._schedule_flush()
        return leases

    async def feedback(self, outcomes: Sequence[Outcome]) -> None:
        """Aggregates outcomes and sends them in the background; returns at once."""
        for o in outcomes:
            self._add_pending(_feedback_key(o), o.count)
        self._schedule_flush()

    async def admin(self, admin: protocol.AdminRequest) -> dict[str, Any]:
        """An operator command (status, history, explain, pause, resume, set_day) run by policyd.
        PolicyUnavailable if policyd is away or refuses it (the message says why)."""
        reply = await self._call(lambda msg_id: protocol.admin_message(msg_id, admin))
        return reply.body

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
        self._closing = True
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ---- connection
    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """`listener(True)` when policyd can be used again, `listener(False)` when it cannot."""
        self._listeners.append(listener)

    def _ensure_supervisor(self) -> None:
        if not self._closing and (self._supervisor is None or self._supervisor.done()):
            self._supervisor = asyncio.get_running_loop().create_task(self._keep_connected())

    async def _keep_connected(self) -> None:
        """Holds one connection to policyd for as long as the client lives: opens it, waits for it
        to end (whatever ended it), and opens it again, with a jittered back-off that grows on each
        failure up to `max_retry_interval`, forever."""
        failures = 0
        while not self._closing:
            conn = self._conn
            if conn is not None and not conn.closed:
                await conn.ended.wait()
                if time.monotonic() - conn.opened_at > self.max_retry_interval:
                    failures = 0               # it worked for a while: try again at once
                continue
            try:
                self._conn = await self._open()
            except PolicyUnavailable as exc:
                self._first_attempt.set()
                self._went_down(exc)
                failures += 1
                await asyncio.sleep(self._backoff(failures))
                continue
            self._first_attempt.set()
            self._came_back()

    def _backoff(self, failures: int) -> float:
        """Doubling from `retry_interval`, capped, and spread over its upper half so that many MTAs
        do not come back to a restarted policyd in step."""
        ceiling = min(self.max_retry_interval, self.retry_interval * 2 ** (failures - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _open(self) -> _Connection:
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
        return conn

    async def _live_connection(self) -> _Connection:
        conn = self._conn
        if conn is None or conn.closed:
            self._ensure_supervisor()
            if not self._first_attempt.is_set():      # at start, wait for the first try to connect
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._first_attempt.wait(), self.connect_timeout + self.request_timeout)
                conn = self._conn
            if conn is None or conn.closed:
                raise PolicyUnavailable(f"policyd at {self.address} unreachable")
        return conn

    async def _call(self, build: Callable[[int], bytes]) -> protocol.Reply:
        conn = await self._live_connection()
        try:
            reply = await asyncio.wait_for(conn.call(build), self.request_timeout)
        except TimeoutError:
            await conn.close()    # a hung daemon: the supervisor starts afresh
            raise PolicyUnavailable(f"policyd at {self.address} did not answer in {self.request_timeout}s") from None
        if not reply.ok:
            raise PolicyRefused(reply.error_code, reply.error_message)
        self._came_back()
        return reply

    def _went_down(self, exc: Exception) -> None:
        """Logged and told once per outage, however many calls fail in it."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("policyd unavailable, sending only the transactional floor: %s", exc)
        if self._usable is not False:
            self._usable = False
            self._tell(False)

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.info("policyd at %s is back after %.1fs", self.address, time.monotonic() - self._down_since)
            self._down_since = None
        if self._usable is not True:
            self._usable = True
            self._tell(True)
            self._schedule_flush()

    def _tell(self, available: bool) -> None:
        for listener in self._listeners:
            try:
                listener(available)
            except Exception:
                log.exception("policy state listener failed")

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
                                    request=index, why=f"policyd at {self.address} unreachable"))
        return leases

    def _take_floor(self, site: str, wanted: int, now: float) -> int:
        """A token bucket per site: `transactional_floor` per minute, bursts of ten seconds' worth."""
        rate = self.transactional_floor / 60.0
        capacity = max(1.0, rate * 10.0)
        bucket = self._floor.get(site)
        if bucket is None:
            bucket = self._floor[site] = _FloorBucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.stamp) * rate)
            bucket.stamp = max(now, bucket.stamp)
        granted = int(min(wanted, max(0.0, math.floor(bucket.tokens + 1e-9))))   # float dust is no message
        bucket.tokens -= granted
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
            items = [Outcome(site, mx, source, domain, tenant, stream, outcome, reason, code, status, count,
                             mailbox, campaign)
                     for (site, mx, source, domain, tenant, stream, outcome, reason, code, status, mailbox,
                          campaign), count in batch.items()]
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
