"""Hostile input on the policy protocol, over a real socket to a real PolicyServer with metrics.

Whatever a client sends, it gets one documented error reply on a connection that stays open, and
never `internal` (issue 17, item 5).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator

import pytest

from policy.metrics import Metrics
from tests.policy.conftest import Clock, Running, start_server
from tests.policy.test_server import connect
from warmup_base.policy_protocol import wire as protocol

PING = protocol.encode({"v": 1, "id": "after", "op": "ping"})


@pytest.fixture(params=["tcp", "unix"])
async def served(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[tuple[Running, Metrics]]:
    r, tmpdir = await start_server(request.param, clock, max_message=1 << 20)
    metrics = Metrics()
    r.server.metrics = metrics
    r.service.hooks = metrics
    yield r, metrics
    await r.server.stop(1.0)
    shutil.rmtree(tmpdir, ignore_errors=True)


async def ask_then_ping(address: str, line: bytes) -> dict:
    """Sends `line` and a ping on one connection; returns the first reply, checks the ping's."""
    reader, writer = await connect(address)
    try:
        writer.write(line + PING)
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        after = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert after == {"v": 1, "id": "after", "ok": True, "time": after["time"]}, after
        return reply
    finally:
        writer.close()


def feedback(**fields: object) -> bytes:
    item = {"site": "gmail.com", "mx_hosts": ["mx.google.com"], "source": "ip1", "outcome": "delivered",
            "count": 1, **fields}
    return protocol.encode({"v": 1, "id": 7, "op": "feedback", "outcomes": [item]})


async def test_an_id_with_a_lone_surrogate_gets_bad_request_with_a_null_id(served: tuple[Running, Metrics]) -> None:
    reply = await ask_then_ping(served[0].address, b'{"v":1,"id":"\\ud800","op":"ping"}\n')
    assert reply["id"] is None and reply["error"]["code"] == "bad_request"
    assert reply["error"]["message"].startswith("id:")


async def test_a_lone_surrogate_in_a_field_is_bad_request_naming_the_field(served: tuple[Running, Metrics]) -> None:
    line = (b'{"v":1,"id":3,"op":"grant","requests":[{"site":"s","mx_hosts":["mx.google.com"],'
            b'"sources":["ip1","\\udc00"],"wanted":1}]}\n')
    reply = await ask_then_ping(served[0].address, line)
    assert reply["id"] == 3 and reply["error"]["code"] == "bad_request"
    assert reply["error"]["message"].startswith("requests[0].sources:")
    reply = await ask_then_ping(served[0].address, b'{"v":1,"id":4,"op":"hello","client":"\\udfff"}\n')
    assert reply["error"]["code"] == "bad_request"


async def test_a_surrogate_pair_is_a_character_not_an_error(served: tuple[Running, Metrics]) -> None:
    reply = await ask_then_ping(served[0].address, b'{"v":1,"id":"\\ud83d\\ude00","op":"ping"}\n')
    assert reply["ok"] and reply["id"] == "\U0001f600"


async def test_deeply_nested_json_is_bad_json(served: tuple[Running, Metrics]) -> None:
    for depth in (5000, 200000):
        reply = await ask_then_ping(served[0].address, b"[" * depth + b"\n")
        assert reply == {"v": 1, "id": None, "ok": False,
                         "error": {"code": "bad_json", "message": "not a JSON object: nested too deeply"}}
    nested = b'{"v":1,"id":1,"op":"ping","x":' + b"[" * 100000 + b"]" * 100000 + b"}\n"
    assert (await ask_then_ping(served[0].address, nested))["error"]["code"] == "bad_json"


async def test_a_nested_value_in_an_error_message_is_named_not_printed(served: tuple[Running, Metrics]) -> None:
    reply = await ask_then_ping(served[0].address, b'{"v":' + b"[" * 500 + b"]" * 500 + b',"id":1,"op":"ping"}\n')
    assert reply["error"] == {"code": "unsupported_version",
                              "message": "v: protocol version <list> not supported (supported: [1])"}
    reply = await ask_then_ping(served[0].address, b'{"v":1,"id":1,"op":"' + b"x" * 100000 + b'"}\n')
    assert reply["error"]["code"] == "unknown_op" and len(reply["error"]["message"]) <= 130


async def test_a_huge_count_is_bad_request_and_the_metrics_are_untouched(served: tuple[Running, Metrics]) -> None:
    running, metrics = served
    for count in (10**400, protocol.MAX_COUNT + 1):
        reply = await ask_then_ping(running.address, feedback(count=count))
        assert reply["id"] == 7 and reply["error"] == {"code": "bad_request",
                                                       "message": "outcomes[0].count: at most 1000000000"}
    assert (await ask_then_ping(running.address, feedback(code=10**30)))["error"]["message"] == \
        "outcomes[0].code: at most 999"
    ok = await ask_then_ping(running.address, feedback(count=protocol.MAX_COUNT))
    assert ok == {"v": 1, "id": 7, "ok": True, "counted": protocol.MAX_COUNT}
    assert b"internal" not in metrics.render()


async def test_a_huge_wanted_is_bad_request(served: tuple[Running, Metrics]) -> None:
    line = protocol.encode({"v": 1, "id": 8, "op": "grant", "requests": [
        {"site": "s", "mx_hosts": ["mx.google.com"], "sources": ["ip1"], "wanted": 10**400}]})
    reply = await ask_then_ping(served[0].address, line)
    assert reply["error"] == {"code": "bad_request", "message": "requests[0].wanted: at most 1000000000"}


async def test_non_ascii_in_an_error_reply_is_escaped_and_round_trips(served: tuple[Running, Metrics]) -> None:
    reader, writer = await connect(served[0].address)
    writer.write('{"v":2,"id":"ключ","op":"ping"}\n'.encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert raw.isascii() and json.loads(raw)["id"] == "ключ"
