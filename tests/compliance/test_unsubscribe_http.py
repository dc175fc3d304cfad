"""The one-click unsubscribe endpoint over a real loopback socket."""

from __future__ import annotations

import asyncio

import pytest

from mta.compliance.unsubscribe import UnsubscribeInfo, UnsubscribeTokens
from mta.http import unsubscribe as unsubscribe_http
from mta.http.unsubscribe import start_unsubscribe_server

ONE_CLICK = b"List-Unsubscribe=One-Click"


class Endpoint:
    def __init__(self, tokens: UnsubscribeTokens) -> None:
        self.tokens = tokens
        self.calls: list[UnsubscribeInfo] = []
        self.fail_next = False
        self.server: asyncio.AbstractServer | None = None

    async def on_unsubscribe(self, info: UnsubscribeInfo) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("suppression store unavailable")
        self.calls.append(info)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def token(self, recipient: str = "alice@example.net") -> str:
        return self.tokens.issue(recipient=recipient, tenant="acme", sending_domain="example.com", queue_id="Q1")

    async def raw(self, data: bytes, *, close_write: bool = True) -> tuple[int, dict[str, str], bytes]:
        """Sends `data`, returns (status, headers, body) of the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _sep, body = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _c, v in (line.partition(":") for line in lines)}
        return int(status_line.split()[1]), headers, body

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/x-www-form-urlencoded") -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: unsub.example.com\r\n"
        if method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        return await self.raw(head.encode() + b"\r\n" + body)


@pytest.fixture
async def endpoint():
    ep = Endpoint(UnsubscribeTokens([b"secret"]))
    ep.server = await start_unsubscribe_server("127.0.0.1", 0, ep.tokens.verify, ep.on_unsubscribe)
    yield ep
    ep.server.close()
    await ep.server.wait_closed()


async def test_one_click_post_unsubscribes(endpoint):
    status, headers, body = await endpoint.request("POST", f"/u/{endpoint.token()}", ONE_CLICK)
    assert status == 200 and headers["connection"] == "close"
    assert b"alice@example.net will get no more mail" in body
    assert [c.recipient for c in endpoint.calls] == ["alice@example.net"]
    assert endpoint.calls[0].sending_domain == "example.com" and endpoint.calls[0].queue_id == "Q1"


async def test_multipart_one_click_post_unsubscribes(endpoint):
    boundary = "----b0und4ry"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    status, _h, _b = await endpoint.request("POST", f"/u/{endpoint.token()}", body,
                                            f"multipart/form-data; boundary={boundary}")
    assert status == 200 and len(endpoint.calls) == 1


async def test_get_shows_a_form_and_does_not_unsubscribe(endpoint):
    token = endpoint.token("bob@example.net")
    status, headers, body = await endpoint.request("GET", f"/u/{token}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<form method="post">' in body and b'name="List-Unsubscribe" value="One-Click"' in body
    assert b"bob@example.net" in body
    status, _h, body = await endpoint.request("HEAD", f"/u/{token}")
    assert status == 200 and body == b""
    assert endpoint.calls == []


async def test_recipient_is_escaped_in_the_page(endpoint):
    _status, _h, body = await endpoint.request("GET", f"/u/{endpoint.token('<script>@example.net')}")
    assert b"<script>" not in body and b"&lt;script&gt;" in body


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_bad_token_gets_400_and_no_effect(endpoint, method):
    token = endpoint.token()
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    status, headers, body = await endpoint.request(method, f"/u/{forged}", ONE_CLICK)
    assert status == 400 and headers["content-type"].startswith("text/plain")
    assert body.startswith(b"invalid unsubscribe link: ")
    assert endpoint.calls == []


async def test_expired_token_says_so(endpoint):
    old = UnsubscribeTokens([b"secret"], clock=lambda: 1_000_000_000.0)
    token = old.issue(recipient="a@example.net", tenant="", sending_domain="example.com", queue_id="Q")
    status, _h, body = await endpoint.request("POST", f"/u/{token}", ONE_CLICK)
    assert status == 400 and b"expired" in body and endpoint.calls == []


async def test_post_without_the_one_click_body_is_refused(endpoint):
    status, _h, body = await endpoint.request("POST", f"/u/{endpoint.token()}", b"something=else")
    assert status == 400 and b"List-Unsubscribe=One-Click" in body and endpoint.calls == []


async def test_path_prefix_from_a_proxy_is_accepted(endpoint):
    status, _h, _b = await endpoint.request("POST", f"/mail/u/{endpoint.token()}?utm=x", ONE_CLICK)
    assert status == 200 and len(endpoint.calls) == 1


@pytest.mark.parametrize("path", ["/", "/u/", "/favicon.ico", "/x/abc/def"])
async def test_unknown_path_is_404(endpoint, path):
    status, _h, _b = await endpoint.request("GET", path)
    assert status == 404


async def test_other_methods_are_405(endpoint):
    status, _h, _b = await endpoint.request("DELETE", f"/u/{endpoint.token()}")
    assert status == 405 and endpoint.calls == []


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",        # a TLS hello on the plain port
    b"HELLO\r\n\r\n",
    b"GET /u/abc\r\n\r\n",
    b"GET /u/abc HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /u/abc HTTP/1.1\r\nX: \xff\r\n\r\n",
    b"POST /u/abc HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",       # body shorter than announced
    b"GET /u/abc HTTP/1.1\r\n",                                     # head never finished
])
async def test_garbage_gets_400_and_the_server_keeps_serving(endpoint, garbage):
    status, _h, _b = await endpoint.raw(garbage)
    assert status == 400
    status, _h, _b = await endpoint.request("POST", f"/u/{endpoint.token()}", ONE_CLICK)
    assert status == 200 and len(endpoint.calls) == 1


async def test_oversized_head_and_body_are_refused(endpoint):
    status, _h, _b = await endpoint.raw(b"GET /u/" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
    assert status == 400
    head = f"POST /u/{endpoint.token()} HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".encode()
    status, _h, _b = await endpoint.raw(head)
    assert status == 413
    head = f"POST /u/{endpoint.token()} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    status, _h, _b = await endpoint.raw(head + b"4000\r\n" + b"x" * 0x4000 + b"\r\n1\r\n")
    assert status == 413
    assert endpoint.calls == []


async def test_silent_client_is_timed_out(endpoint, monkeypatch):
    monkeypatch.setattr(unsubscribe_http, "READ_TIMEOUT", 0.2)
    status, _h, _b = await endpoint.raw(b"GET /u/abc HTTP/1.1\r\n", close_write=False)
    assert status == 408


async def test_failing_callback_gets_503_and_a_retry_works(endpoint):
    endpoint.fail_next = True
    token = endpoint.token()
    status, _h, body = await endpoint.request("POST", f"/u/{token}", ONE_CLICK)
    assert status == 503 and b"try again" in body
    status, _h, _b = await endpoint.request("POST", f"/u/{token}", ONE_CLICK)
    assert status == 200 and len(endpoint.calls) == 1
