"""Fuzzing the one-click unsubscribe endpoint over a real socket (issue 17, item 7).

Arbitrary bytes, and requests built from methods, targets (valid, damaged and foreign tokens),
versions, headers (Content-Length in every shape, Transfer-Encoding, content types) and bodies:
every connection gets one well-formed HTTP/1.1 response and never a 5xx (a 500 is a bug, a 503 a
failed callback, which never fails here); nothing escapes into the event loop; a valid one-click
POST unsubscribes and a GET never does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st

from mta.compliance.unsubscribe import UnsubscribeInfo, UnsubscribeTokens
from mta.http.unsubscribe import start_unsubscribe_server
from tests.support.fuzz import LoopThread, exchange, fuzz, fuzz_examples

NOW_TOKENS = UnsubscribeTokens([b"fuzz-secret"])
ONE_CLICK = b"List-Unsubscribe=One-Click"


@dataclass
class Endpoint:
    loop: LoopThread
    server: Any
    port: int
    calls: list[UnsubscribeInfo] = field(default_factory=list)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)

    def send(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Sends `request`, ends the writing side, reads one response."""
        return parse_response(exchange(self.port, request, response_complete))


def response_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _colon, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {data[:300]!r}"
    status_line, *lines = head.decode("ascii").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1" and status.isdigit() and len(status) == 3, status_line
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon and name == name.strip(), line
        headers[name.lower()] = value.strip()
    assert headers["connection"] == "close"
    length = int(headers["content-length"])
    assert len(body) in (0, length), (len(body), length)        # 0: the answer to a HEAD
    return int(status), headers, body


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    loop = LoopThread()
    calls: list[UnsubscribeInfo] = []

    async def on_unsubscribe(info: UnsubscribeInfo) -> None:
        calls.append(info)

    server = loop.run(start_unsubscribe_server("127.0.0.1", 0, NOW_TOKENS.verify, on_unsubscribe))
    ep = Endpoint(loop, server, server.sockets[0].getsockname()[1], calls)
    loop.loop.set_exception_handler(lambda _loop, context: ep.loop_errors.append(context))
    yield ep

    async def close() -> None:
        server.close()
        await server.wait_closed()
    loop.run(close())
    loop.close()


@pytest.fixture
def served(endpoint: Endpoint) -> Iterator[Endpoint]:
    yield endpoint
    assert endpoint.loop_errors == []


# ---- strategies
def token(recipient: str = "alice@example.net") -> str:
    return NOW_TOKENS.issue(recipient=recipient, tenant="acme", sending_domain="example.com", queue_id="Q1")


VALID = token()
tokens = st.sampled_from([VALID, VALID.upper(), VALID[:-1], VALID + "a", VALID[:10], "a" * 1024, "a" * 1025, "0189",
                          token("bob@example.net")]) | st.text("abcdefghijklmnopqrstuvwxyz234567ABZ019", max_size=80)
targets = st.one_of(
    tokens.map(lambda t: f"/u/{t}"),
    st.tuples(st.sampled_from(["", "/unsub", "/a/b/c", "//"]), tokens,
              st.sampled_from(["", "/", "?x=1", "?", "#frag", "/extra"])).map(lambda p: f"{p[0]}/u/{p[1]}{p[2]}"),
    st.sampled_from(["/", "*", "http://unsub.example.com/u/" + VALID, "/u/", "/u", "%2Fu%2F" + VALID]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=60))
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", "post", "PoSt", "CONNECT", "",
                           "G ET", "GET1"]) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=8)
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.", "http/1.1", "", "HTTP/1.1 extra"])
lengths = st.one_of(st.integers(0, 20000).map(str), st.sampled_from(
    ["", "-1", "+5", " 26", "26 ", "0x1a", "26, 26", "1e3", "99999999999999999999", "0" * 5000, "9" * 4000, "²"]))
header_lines = st.one_of(
    lengths.map(lambda v: f"Content-Length: {v}"),
    st.sampled_from(["Content-Type: application/x-www-form-urlencoded", "Content-Type: multipart/form-data; boundary=b",
                     "Content-Type: text/plain", "Content-Type: multipart/form-data", "Transfer-Encoding: chunked",
                     "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: identity", "Host: unsub.example.com",
                     "Host:", "Connection: keep-alive", "Expect: 100-continue", " folded: header", "NoColon",
                     "Bad Name: x", "Content-Length : 26", ": empty", "X-Long: " + "y" * 9000]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60))
bodies = st.one_of(
    st.just(ONE_CLICK), st.just(ONE_CLICK + b"&other=1"), st.just(b"List-Unsubscribe=One-Click\r\n"),
    st.just(b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n"),
    st.just(b"1a\r\nList-Unsubscribe=One-Click\r\n0\r\n\r\n"), st.just(b"&" * 5000), st.just(b"=" * 30000),
    st.binary(max_size=300))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):         # aimed: a method and a path that get past the router to the body
        line = f"{draw(st.sampled_from(['POST', 'GET', 'HEAD']))} /u/{draw(tokens)} {draw(versions)}"
    else:
        line = f"{draw(methods)} {draw(targets)} {draw(versions)}"
    headers = draw(st.lists(header_lines, max_size=5))
    body = draw(bodies)
    length = draw(st.sampled_from(["right", "right", "odd", "none"]))
    if length != "none":       # right: the body gets read; odd: every shape of the value
        at = draw(st.integers(0, len(headers)))
        headers.insert(at, f"Content-Length: {len(body) if length == 'right' else draw(lengths)}")
    eol = draw(st.sampled_from(["\r\n"] * 8 + ["\n", "\r"]))
    head = eol.join([line, *headers]) + eol + eol
    raw = head.encode("latin-1") + body
    if draw(st.integers(0, 3)) == 0:                            # damage a few bytes
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(max_size=4)) + raw[at + draw(st.integers(0, 4)):]
    return raw


def allowed_5xx(status: int, request: bytes) -> bool:
    """RFC 9112 6.1: a transfer coding the server does not implement is answered 501."""
    return status == 501 and b"transfer-encoding" in request.lower()


# ---- properties
@fuzz_examples(quick=200, fuzz=20_000)
def test_arbitrary_bytes_get_a_well_formed_non_5xx_response(served: Endpoint, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, st.binary(max_size=3000))
    def check(request: bytes) -> None:
        status, _headers, _body = served.send(request)
        assert status < 500 or allowed_5xx(status, request), (status, request[:300])
        assert len(served.calls) == 0


@fuzz_examples(quick=300, fuzz=40_000)
def test_built_requests_get_a_well_formed_non_5xx_response(served: Endpoint, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, requests())
    def check(request: bytes) -> None:
        before = len(served.calls)
        status, _headers, body = served.send(request)
        assert status < 500 or allowed_5xx(status, request), (status, body, request[:300])
        method = request.split(b" ", 1)[0].upper()
        if len(served.calls) > before:
            assert status == 200 and method == b"POST", (status, request[:300])
            assert served.calls[-1].recipient in ("alice@example.net", "bob@example.net")


@fuzz_examples(quick=50, fuzz=5_000)
def test_a_valid_one_click_post_always_unsubscribes(served: Endpoint, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, st.sampled_from(["", "/unsub", "/a/b"]), st.sampled_from(["", "?id=1", "/"]),
          st.lists(st.sampled_from(["Host: unsub.example.com", "User-Agent: fuzz", "Accept: */*"]), max_size=3),
          st.sampled_from([("application/x-www-form-urlencoded", ONE_CLICK),
                           ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; "
                                                               b"name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n")]))
    def check(prefix: str, suffix: str, extra: list[str], form: tuple[str, bytes]) -> None:
        content_type, body = form
        before = len(served.calls)
        head = "\r\n".join([f"POST {prefix}/u/{VALID}{suffix} HTTP/1.1", *extra, f"Content-Type: {content_type}",
                            f"Content-Length: {len(body)}"])
        status, _headers, page = served.send(head.encode() + b"\r\n\r\n" + body)
        assert status == 200 and b"alice@example.net will get no more mail" in page
        assert len(served.calls) == before + 1
