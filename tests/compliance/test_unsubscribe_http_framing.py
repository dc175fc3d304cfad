"""Body framing of the unsubscribe endpoint: Content-Length in every shape and chunked bodies.

Regressions of what fuzzing found (a Content-Length of 5,000 digits was a 500: Python's int()
refuses over 4,300 digits) and of RFC 9112's rules: a chunked one-click POST works, ambiguous
framing is 400, a transfer coding we do not implement is 501.
"""

from __future__ import annotations

import pytest

from mta.compliance.unsubscribe import UnsubscribeTokens
from mta.http.unsubscribe import MAX_BODY, start_unsubscribe_server
from tests.compliance.test_unsubscribe_http import ONE_CLICK, Endpoint


@pytest.fixture
async def ep():
    e = Endpoint(UnsubscribeTokens([b"secret"]))
    e.server = await start_unsubscribe_server("127.0.0.1", 0, e.tokens.verify, e.on_unsubscribe)
    yield e
    e.server.close()
    await e.server.wait_closed()


def post(e: Endpoint, *headers: str) -> bytes:
    return "\r\n".join([f"POST /u/{e.token()} HTTP/1.1", "Host: unsub.example.com", *headers, "", ""]).encode()


@pytest.mark.parametrize(("length", "status"), [
    ("9" * 5000, 413), ("9" * 20, 413), ("1" + "0" * 4299, 413), (str(MAX_BODY + 1), 413),
    ("0" * 5000, 400),          # zero: an empty body, which is not the one-click form
])
async def test_an_enormous_content_length_is_answered_not_a_crash(ep: Endpoint, length: str, status: int) -> None:
    got, _h, _b = await ep.raw(post(ep, f"Content-Length: {length}") + ONE_CLICK)
    assert got == status and ep.calls == []


async def test_leading_zeros_in_content_length_are_still_a_length(ep: Endpoint) -> None:
    status, _h, _b = await ep.raw(post(ep, f"Content-Length: 000{len(ONE_CLICK)}") + ONE_CLICK)
    assert status == 200 and len(ep.calls) == 1


async def test_a_chunked_one_click_post_unsubscribes(ep: Endpoint) -> None:
    body = b"a;ext=1\r\nList-Unsub\r\n10\r\nscribe=One-Click\r\n0\r\nX-Trailer: 1\r\n\r\n"
    status, _h, page = await ep.raw(post(ep, "Transfer-Encoding: chunked") + body)
    assert status == 200 and b"will get no more mail" in page and len(ep.calls) == 1


@pytest.mark.parametrize(("headers", "body", "status"), [
    (["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n", 501),
    (["Transfer-Encoding: chunked, gzip"], b"0\r\n\r\n", 400),
    (["Transfer-Encoding: chunked", "Content-Length: 26"], ONE_CLICK, 400),
    (["Content-Length: 26", "Content-Length: 27"], ONE_CLICK, 400),
    (["Transfer-Encoding: chunked"], b"zz\r\n" + ONE_CLICK + b"\r\n0\r\n\r\n", 400),
    (["Transfer-Encoding: chunked"], b"1a\r\n" + ONE_CLICK + b"XX0\r\n\r\n", 400),
    (["Transfer-Encoding: chunked"], b"1a\r\n" + ONE_CLICK, 400),
    (["Transfer-Encoding: chunked"], b"1a\r\n" + ONE_CLICK + b"\r\n0\r\n" + b"X: y\r\n" * 2000, 400),
])
async def test_doubtful_framing_is_refused_and_changes_nothing(ep: Endpoint, headers: list[str], body: bytes,
                                                              status: int) -> None:
    got, _h, _b = await ep.raw(post(ep, *headers) + body)
    assert got == status and ep.calls == []


async def test_the_same_content_length_twice_is_one_length(ep: Endpoint) -> None:
    status, _h, _b = await ep.raw(post(ep, "Content-Length: 26", "Content-Length: 26") + ONE_CLICK)
    assert status == 200 and len(ep.calls) == 1
