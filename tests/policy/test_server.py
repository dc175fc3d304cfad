"""The protocol over real sockets, TCP and Unix: batches, errors, and a server that never falls over."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.policy.conftest import Clock, Running, start_server
from tests.policy.test_engine import ask, outcome
from warmup_base.policy_protocol import wire as protocol


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:])
    host, port = address.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def exchange(address: str, *lines: bytes) -> list[dict]:
    reader, writer = await connect(address)
    for line in lines:
        writer.write(line)
    await writer.drain()
    replies = [json.loads(await asyncio.wait_for(reader.readline(), 5)) for _ in lines]
    writer.close()
    return replies


async def test_a_grant_batch_is_answered_in_one_reply(running: Running) -> None:
    [reply] = await exchange(running.address, protocol.grant_message(1, [ask(5), ask(0), ask(3, sources=())]))
    assert reply["ok"] and reply["id"] == 1
    first, empty, no_source = reply["grants"]
    assert sum(g["count"] for g in first) == 5 and all(g["ttl"] == 30 for g in first)
    assert empty == []
    assert no_source == [{"source": "", "count": 0, "max_connections": 3, "messages_per_connection": 50,
                          "ttl": 30, "retry_in": 15.0}]   # leases.idle_retry


async def test_feedback_is_counted_into_health(running: Running) -> None:
    [reply] = await exchange(running.address, protocol.feedback_message(
        "fb", [outcome("ip1", "delivered", 40), outcome("ip1", "deferred", 2, reason="toomanyconn", code=421)]))
    assert reply == {"v": 1, "id": "fb", "ok": True, "counted": 42}
    rows = {str(r.key): r for r in await running.service.status()}
    assert rows["ip|ip1|google"].health["delivered"] == 40
    assert rows["ip|ip1|google"].health["throttled"] == 2


async def test_hello_and_ping(running: Running, clock: Clock) -> None:
    hello, ping = await exchange(running.address, protocol.hello_message(1, "test"),
                                 protocol.encode({"v": 1, "id": 2, "op": "ping"}))
    assert hello["versions"] == [1] and ping["time"] == clock.now


async def test_malformed_input_gets_an_error_reply_a_log_line_and_the_connection_goes_on(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    replies = await exchange(running.address, b"this is not json\n", b'{"v": 7, "id": 3, "op": "ping"}\n',
                             b'{"v": 1, "id": 4, "op": "grant", "requests": [{"site": 1}]}\n',
                             protocol.grant_message(5, [ask(1)]))
    assert [(r["ok"], r["id"]) for r in replies] == [(False, None), (False, 3), (False, 4), (True, 5)]
    assert [r["error"]["code"] for r in replies[:3]] == ["bad_json", "unsupported_version", "bad_request"]
    assert "requests[0].site" in replies[2]["error"]["message"]
    assert sum("protocol:" in m for m in caplog.messages) == 3


async def test_an_over_long_line_is_refused_and_the_connection_closed(clock: Clock) -> None:
    r, tmpdir = await start_server("tcp", clock, max_message=2048)
    try:
        reader, writer = await connect(r.address)
        writer.write(b'{"v":1,"id":1,"op":"ping","pad":"' + b"x" * 10000 + b'"}\n')
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply["error"]["code"] == "too_large"
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        [ok] = await exchange(r.address, protocol.encode({"v": 1, "id": 2, "op": "ping"}))
        assert ok["ok"]                                     # the server still serves others
    finally:
        await r.server.stop(1.0)
        shutil.rmtree(tmpdir, ignore_errors=True)


async def test_a_client_that_disconnects_mid_line_does_no_harm(running: Running) -> None:
    _reader, writer = await connect(running.address)
    writer.write(b'{"v":1,"id":1,"op":"gra')
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.05)
    [ok] = await exchange(running.address, protocol.encode({"v": 1, "id": 2, "op": "ping"}))
    assert ok["ok"]


async def test_a_failing_state_backend_is_an_error_reply_not_a_crash(running: Running) -> None:
    async def broken(*_args: object) -> list:
        from policy.store.base import StoreError
        raise StoreError("disk on fire")

    running.service.store.take = broken        # type: ignore[method-assign]
    [reply] = await exchange(running.address, protocol.grant_message(9, [ask(1)]))
    assert reply["error"] == {"code": "unavailable", "message": "disk on fire"} and reply["id"] == 9


async def test_many_clients_at_once_share_the_buckets(running: Running) -> None:
    async def one_client(i: int) -> int:
        replies = await exchange(running.address, *[protocol.grant_message(n, [ask(1)]) for n in range(20)])
        return sum(g["count"] for r in replies for grants in r["grants"] for g in grants)

    totals = await asyncio.gather(*[one_client(i) for i in range(8)])
    assert sum(totals) == 20                      # two sources x a burst of 10, whoever asked


async def test_stop_waits_for_a_request_in_flight(clock: Clock) -> None:
    r, tmpdir = await start_server("tcp", clock)
    arrived, release = asyncio.Event(), asyncio.Event()
    real_grant = r.service.grant

    async def slow_grant(asks: list) -> list:
        arrived.set()
        await release.wait()
        return await real_grant(asks)

    r.service.grant = slow_grant            # type: ignore[method-assign]
    reader, writer = await connect(r.address)
    writer.write(protocol.grant_message(1, [ask(1)]))
    await writer.drain()
    await asyncio.wait_for(arrived.wait(), 30)     # the request is in flight (not merely sent)
    stopping = asyncio.create_task(r.server.stop(30.0))
    await asyncio.sleep(0.05)
    assert not stopping.done()
    release.set()
    reply = json.loads(await asyncio.wait_for(reader.readline(), 30))
    assert reply["ok"] and sum(g["count"] for g in reply["grants"][0]) == 1
    await asyncio.wait_for(stopping, 30)
    writer.close()
    shutil.rmtree(tmpdir, ignore_errors=True)
