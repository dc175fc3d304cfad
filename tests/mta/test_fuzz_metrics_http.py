"""Fuzzing the /metrics responder (both daemons serve it) over a real socket (issue 17, item 7).

Whatever arrives, the answer is a well-formed 200, 404 or 405, or (for a head that never ends or
overflows the reader) the connection is closed without one; nothing escapes into the event loop
and the next scrape works.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from tests.support.fuzz import LoopThread, exchange, fuzz, fuzz_examples
from warmup_base.metrics_http import serve_metrics


class Responder:
    def __init__(self) -> None:
        self.loop = LoopThread()
        self.errors: list[dict[str, Any]] = []
        self.loop.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        registry = CollectorRegistry()
        Counter("fuzz_things", "Things", registry=registry).inc()
        self.server = self.loop.run(serve_metrics("127.0.0.1", 0, registry))
        self.port = self.server.sockets[0].getsockname()[1]

    def send(self, request: bytes) -> bytes:
        return exchange(self.port, request)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()
        self.loop.run(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def responder() -> Iterator[Responder]:
    r = Responder()
    yield r
    r.close()


requests = st.binary(max_size=2000) | st.builds(
    lambda method, path, tail, body: method + b" " + path + b" HTTP/1.1\r\n" + tail + b"\r\n\r\n" + body,
    st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b"", b"GET GET"]) | st.binary(max_size=8),
    st.sampled_from([b"/metrics", b"/", b"/metrics?x=1", b"/x", b"", b"*"]) | st.binary(max_size=40),
    st.binary(max_size=200), st.binary(max_size=100))


@fuzz_examples(quick=150, fuzz=20_000)
def test_any_request_gets_a_well_formed_answer_or_a_closed_connection(responder: Responder, max_examples: int,
                                                                       quick: bool) -> None:
    @fuzz(max_examples, quick, requests)
    def check(request: bytes) -> None:
        answer = responder.send(request)
        if answer:
            head, sep, body = answer.partition(b"\r\n\r\n")
            assert sep and head.split(b" ")[1] in (b"200", b"404", b"405"), answer[:200]
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert len(body) in (0, length)
        else:
            assert b"\r\n\r\n" not in request[:65536], request[:200]      # a complete head is answered
        assert responder.errors == []
    assert b"fuzz_things_total 1.0" in responder.send(b"GET /metrics HTTP/1.1\r\n\r\n")
