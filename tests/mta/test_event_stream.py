"""The Redis event stream with a real redis-server: events of real mail are XADDed, consumers read
them with a consumer group; Redis stopped and started again while mail flows loses only what
overflows the bounded buffer (counted), and the MTA reconnects by itself."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from mta.events import Event
from mta.eventstream.buffer import Outage, StreamBuffer
from mta.eventstream.redis_stream import RedisEventStream
from mta.metrics import Metrics
from tests.mta.conftest import RunningMta, World, message
from tests.support.receiver import free_port
from tests.support.redisserver import start_redis
from tests.support.waiting import until

STREAM = "warmup-mta:events"


class RedisProcess:
    """A redis-server of this test only, that can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port(["127.0.0.1"])
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.process = start_redis(self.port, self.workdir)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    r = RedisProcess(tmp_path)
    yield r
    r.stop()


def sample(mta: RunningMta, name: str, **labels: str) -> float:
    return mta.daemon.metrics.registry.get_sample_value(name, labels) or 0.0


async def send(mta: RunningMta, n: int, tag: str) -> None:
    for i in range(n):
        await mta.send("app@sender.example", ["user@example.test"], message(subject=f"{tag}{i}"))


def stream_events(entries: list[tuple[Any, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    return [json.loads(fields[b"json"]) for _id, fields in entries]


async def test_consumer_group_reads_every_event_as_logged(start_mta, world: World, redis_proc: RedisProcess) -> None:
    world.domain("example.test")
    redis_proc.start()
    client = aioredis.Redis.from_url(redis_proc.url)
    # Consumers make their group first ($: only what comes after); MKSTREAM makes the stream.
    await client.xgroup_create(STREAM, "analytics", id="$", mkstream=True)
    mta = await start_mta(events={"redis": redis_proc.url})
    await send(mta, 3, "a")
    await mta.wait_event(lambda e: e["event"] == "delivered", n=3)
    logged = [e for e in mta.events() if e["event"] in ("accepted", "delivered")]

    got: list[tuple[Any, dict[bytes, bytes]]] = []
    deadline = time.monotonic() + 20
    while len(got) < len(logged) and time.monotonic() < deadline:
        reply = await client.xreadgroup("analytics", "worker-1", {STREAM: ">"}, count=100, block=500)
        for _stream, entries in reply:
            got += entries
            await client.xack(STREAM, "analytics", *[entry_id for entry_id, _ in entries])
    assert sorted(stream_events(got), key=str) == sorted(logged, key=str)
    assert {(f[b"event"].decode(), f[b"tenant"].decode()) for _, f in got} == {("accepted", ""), ("delivered", "")}
    # All acknowledged: the group has nothing pending, and a second consumer gets nothing new.
    assert (await client.xpending(STREAM, "analytics"))["pending"] == 0
    assert await client.xreadgroup("analytics", "worker-2", {STREAM: ">"}, count=100, block=100) == []
    assert sample(mta, "mta_event_stream_written_total") == len(logged)
    assert sample(mta, "mta_event_stream_connected") == 1
    await client.aclose()


async def test_redis_stopped_and_restarted_while_mail_flows(start_mta, world: World, redis_proc: RedisProcess,
                                                            caplog) -> None:
    world.domain("example.test")
    redis_proc.start()
    mta = await start_mta(events={"redis": redis_proc.url})
    client = aioredis.Redis.from_url(redis_proc.url)
    await send(mta, 1, "before")
    await until(lambda: _xlen_at_least(client, 2), "2 entries in the stream")
    await client.aclose()

    with caplog.at_level(logging.INFO, logger="mta.eventstream"):
        redis_proc.stop()
        await send(mta, 3, "during")        # accepted and delivered while Redis is down
        await mta.wait_event(lambda e: e["event"] == "delivered", n=4)
        await until(lambda: sample(mta, "mta_event_stream_connected") == 0, "disconnected")
        assert sample(mta, "mta_event_stream_buffered") >= 6
        redis_proc.start()                   # empty: this test's Redis keeps nothing on disk
        client = aioredis.Redis.from_url(redis_proc.url)
        await until(lambda: _xlen_at_least(client, 6), "6 entries in the stream")
        await until(lambda: sample(mta, "mta_event_stream_connected") == 1, "connected again")
    during = {e["queue_id"] for e in mta.events() if e["event"] == "accepted"} - _first_queue_ids(mta, 1)
    in_stream = stream_events(await client.xrange(STREAM))
    assert {(e["event"], e["queue_id"]) for e in in_stream} >= {(k, q) for q in during
                                                                  for k in ("accepted", "delivered")}
    assert sample(mta, "mta_event_stream_dropped_total") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1, messages
    assert sum("reachable again" in m for m in messages) == 1, messages
    await client.aclose()


async def test_buffer_bound_drops_and_counts_then_catches_up(start_mta, world: World, redis_proc: RedisProcess,
                                                             caplog) -> None:
    world.domain("example.test")
    with caplog.at_level(logging.INFO, logger="mta.eventstream"):
        mta = await start_mta(events={"redis": redis_proc.url, "redis_buffer": 3})     # not started yet
        await send(mta, 3, "x")
        await mta.wait_event(lambda e: e["event"] == "delivered", n=3)
        assert sample(mta, "mta_event_stream_dropped_total") == 3
        redis_proc.start()
        client = aioredis.Redis.from_url(redis_proc.url)
        await until(lambda: _xlen_at_least(client, 3), "3 entries in the stream")
        await until(lambda: sample(mta, "mta_event_stream_buffered") == 0, "buffer empty")
    assert await client.xlen(STREAM) == 3                # the first three events, the rest were dropped
    first = [e for e in mta.events() if e["event"] in ("accepted", "delivered")][:3]
    assert stream_events(await client.xrange(STREAM)) == first
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropping events" in m for m in messages) == 1, messages
    assert any("3 events dropped meanwhile" in m for m in messages), messages
    await client.aclose()


async def test_stream_length_is_capped(start_mta, world: World, redis_proc: RedisProcess) -> None:
    world.domain("example.test")
    redis_proc.start()
    client = aioredis.Redis.from_url(redis_proc.url)
    # MAXLEN ~ trims whole nodes of the stream; small nodes make the cap show with a few events.
    await client.config_set("stream-node-max-entries", 2)
    mta = await start_mta(events={"redis": redis_proc.url, "redis_maxlen": 3})
    await send(mta, 5, "c")
    await mta.wait_event(lambda e: e["event"] == "delivered", n=5)
    await until(lambda: sample(mta, "mta_event_stream_written_total") == 10, "10 written")
    assert await client.xlen(STREAM) <= 3 + 2
    last = stream_events(await client.xrevrange(STREAM, count=1))[0]
    assert last == [e for e in mta.events() if e["event"] in ("accepted", "delivered")][-1]
    await client.aclose()


def test_buffer_holds_up_to_its_capacity_in_order() -> None:
    b = StreamBuffer(2)
    assert b.add(("a",)) and b.add(("b",)) and not b.add(("c",))
    assert b.dropped == 1 and b.peek(5) == [("a",), ("b",)]
    b.consume(1)
    assert b.peek(5) == [("b",)] and b.add(("d",)) and b.peek(5) == [("b",), ("d",)]


def test_outage_says_when_to_log() -> None:
    o = Outage()
    assert o.failed(10.0) and not o.failed(11.0) and o.down
    assert o.dropped_one() and not o.dropped_one()
    report = o.recovered(15.0)
    assert report is not None and (report.seconds, report.dropped) == (5.0, 2) and not o.down
    assert o.recovered(16.0) is None
    assert o.dropped_one()          # a full buffer while up: a new episode
    assert not o.dropped_one()
    o.drained()
    assert o.dropped_one()


def test_subscriber_only_buffers_and_counts_what_overflows() -> None:
    # No event loop runs here, so nothing can reach Redis: on_event must work without one.
    sink = RedisEventStream("redis://127.0.0.1:1/0", STREAM, 10, 2, Metrics())
    for i in range(5):
        sink.on_event(Event("accepted", f"Q{i}", "a@example.test", time=1.0))
    assert [item[0] for item in sink.buffer.peek(5)] == ["accepted", "accepted"]
    assert sink.buffer.dropped == 3 and sink.metrics.dropped._value.get() == 3


async def _xlen_at_least(client: aioredis.Redis, n: int) -> bool:
    try:
        return int(await client.xlen(STREAM)) >= n
    except (OSError, aioredis.ConnectionError):
        return False


def _first_queue_ids(mta: RunningMta, n: int) -> set[str]:
    return set([e["queue_id"] for e in mta.events() if e["event"] == "accepted"][:n])


def test_log_lines_never_show_the_redis_password() -> None:
    from mta.eventstream.redis_stream import redacted

    assert redacted("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redacted("rediss://app:s3cret@cache.example.test/1") == "rediss://app:***@cache.example.test/1"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
