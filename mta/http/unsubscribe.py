"""The one-click unsubscribe endpoint: a small HTTP/1.1 server on asyncio streams (no framework).

    POST /u/<token>   body List-Unsubscribe=One-Click (form-urlencoded or multipart, RFC 8058 3.1)
                      -> on_unsubscribe(info), 200
    GET  /u/<token>   -> 200, a page with a button that POSTs; never unsubscribes by itself, since
                      link scanners and mail previews fetch every URL in a message
    invalid, forged or expired token -> 400 with a plain reason, no effect
    other paths -> 404; other methods -> 405; malformed requests -> 400

A body comes with Content-Length or chunked (RFC 9112 7.1), at most MAX_BODY bytes either way
(413 beyond). Both at once, Content-Length given twice with different values, or a transfer
coding list that does not end in chunked: 400 (RFC 9112 6.3, the framing is in doubt); a coding
before chunked that we do not implement (gzip, ...): 501. No request may produce a 500: that
would be a bug, and the fuzz tests (tests/compliance/test_fuzz_unsubscribe_http.py) look for one.

One request per connection (Connection: close): the clients are mailbox providers' one-click
posts and people's browsers, a handful per message at most. Heads and bodies are size-limited
and every read has a timeout, so a slow or hostile client holds a connection for seconds only.
Serve it behind a TLS-terminating proxy, or pass `ssl` (RFC 8058 requires an https URI).
A path prefix before /u/ is ignored, so a proxy may mount it under any path.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from mta.compliance.unsubscribe import InvalidToken, UnsubscribeInfo

__all__ = ["start_unsubscribe_server"]

log = logging.getLogger("mta.unsubscribe")

Verify = Callable[[str], UnsubscribeInfo]          # UnsubscribeTokens.verify: raises InvalidToken
OnUnsubscribe = Callable[[UnsubscribeInfo], Awaitable[None]]

MAX_HEAD = 8192             # request line and headers
MAX_BODY = 16384            # a one-click body is 26 bytes; a browser's multipart form a few hundred
READ_TIMEOUT = 10.0         # per request head / body
CALLBACK_TIMEOUT = 10.0
MAX_CONNECTIONS = 256

_PATH = re.compile(r"^(?:/[^?#]*)?/u/([A-Za-z0-9]{1,1024})/?(?:\?[^#]*)?$")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class _Reply(Exception):
    """Ends a request with this status and text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def start_unsubscribe_server(host: str, port: int, verify: Verify, on_unsubscribe: OnUnsubscribe, *,
                                   ssl: ssl_module.SSLContext | None = None) -> asyncio.AbstractServer:
    """Starts listening; the caller owns the server (close() and wait_closed() on shutdown).

    `verify` is `UnsubscribeTokens.verify`; `on_unsubscribe` records the suppression and should be
    idempotent (a person may click twice, a provider may retry). If it raises, the client gets 503
    and can try again; nothing is half done on our side."""
    handler = _Handler(verify, on_unsubscribe)
    return await asyncio.start_server(handler.serve, host, port, ssl=ssl, limit=MAX_HEAD)


class _Handler:
    def __init__(self, verify: Verify, on_unsubscribe: OnUnsubscribe) -> None:
        self._verify = verify
        self._on_unsubscribe = on_unsubscribe
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            writer.close()          # over the limit: shed load rather than queue it
            return
        async with self._slots:
            try:
                status, content_type, body, head_only = await self._respond(reader)
            except Exception:       # never let one request take the server down
                log.exception("unsubscribe endpoint: unexpected error")
                status, content_type, body, head_only = 500, "text/plain", "internal error\n", False
            with contextlib.suppress(Exception):
                writer.write(_response(status, content_type, body, head_only))
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, str, bool]:
        method = ""
        try:
            method, target, headers = await _read_head(reader)
            match = _PATH.match(target)
            if not match:
                raise _Reply(404, "not found\n")
            if method not in ("GET", "HEAD", "POST"):
                raise _Reply(405, "only GET and POST are served here\n")
            token = match.group(1)
            if method == "POST":
                body = await _read_body(reader, headers)
                if not _is_one_click(body, headers.get("content-type", "")):
                    raise _Reply(400, "expected the body List-Unsubscribe=One-Click (RFC 8058)\n")
            info = self._check(token)
            if method != "POST":
                return 200, "text/html; charset=utf-8", _confirmation_page(info), method == "HEAD"
            try:
                await asyncio.wait_for(self._on_unsubscribe(info), CALLBACK_TIMEOUT)
            except Exception:
                log.exception("unsubscribe of %s (queue id %s) failed", info.recipient, info.queue_id)
                raise _Reply(503, "could not record the unsubscribe now; please try again later\n") from None
            log.info("unsubscribed %s from %s (tenant %r, queue id %s)", info.recipient,
                     info.sending_domain, info.tenant, info.queue_id)
            return 200, "text/html; charset=utf-8", _done_page(info), False
        except _Reply as reply:
            return reply.status, "text/plain; charset=utf-8", reply.text, method == "HEAD"

    def _check(self, token: str) -> UnsubscribeInfo:
        try:
            return self._verify(token)
        except InvalidToken as exc:
            raise _Reply(400, f"invalid unsubscribe link: {exc.reason}\n") from None


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    except TimeoutError:
        raise _Reply(408, "request timed out\n") from None
    except asyncio.LimitOverrunError:
        raise _Reply(400, "request head too large\n") from None
    except asyncio.IncompleteReadError:
        # The client closed before ending its head: answer anyway in case it still listens.
        raise _Reply(400, "malformed request\n") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _Reply(400, "malformed request (non-ASCII head)\n") from None
    request_line, *header_lines = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _Reply(400, "malformed request line\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _Reply(400, "malformed header line\n")
        name, value = name.lower(), value.strip()
        if name in headers and name in _FRAMING and headers[name] != value:
            raise _Reply(400, f"{name} given twice with different values\n")
        headers[name] = value
    return parts[0].upper(), parts[1], headers


_FRAMING = ("content-length", "transfer-encoding")
_HEX = frozenset(b"0123456789abcdefABCDEF")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    try:
        return await asyncio.wait_for(_read_framed_body(reader, headers), READ_TIMEOUT)
    except TimeoutError:
        raise _Reply(408, "request timed out\n") from None
    except asyncio.IncompleteReadError:
        raise _Reply(400, "request body shorter than announced\n") from None
    except asyncio.LimitOverrunError:
        raise _Reply(400, "malformed chunked body (line too long)\n") from None


async def _read_framed_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
        if "content-length" in headers or codings[-1] != "chunked":
            raise _Reply(400, "ambiguous body framing (RFC 9112 6.3)\n")
        if codings != ["chunked"]:
            raise _Reply(501, f"transfer coding not implemented: {', '.join(codings[:-1])[:60]}\n")
        return await _read_chunked(reader)
    length_text = headers.get("content-length", "")
    if not length_text.isascii() or not length_text.isdigit():
        raise _Reply(411, "Content-Length required\n")
    # Count digits before int(): Python refuses to convert a number of over 4,300 digits.
    digits = length_text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_BODY)) or int(digits) > MAX_BODY:
        raise _Reply(413, "request body too large\n")
    return await reader.readexactly(int(digits))


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """RFC 9112 7.1: chunks until the last (size 0), then trailer lines until an empty one."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
        if not size_text or len(size_text) > 8 or not set(size_text) <= _HEX:
            raise _Reply(400, "malformed chunked body (chunk size)\n")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > MAX_BODY:
            raise _Reply(413, "request body too large\n")
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise _Reply(400, "malformed chunked body (chunk end)\n")
        body += chunk[:-2]
    trailers = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        trailers += len(line)
        if trailers > MAX_HEAD:
            raise _Reply(400, "malformed chunked body (trailers too long)\n")
    return bytes(body)


_MULTIPART_FIELD = re.compile(
    rb'content-disposition:[^\r\n]*\bname="?List-Unsubscribe"?[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\nOne-Click\r\n',
    re.IGNORECASE)


def _is_one_click(body: bytes, content_type: str) -> bool:
    """RFC 8058 3.1: the key/value List-Unsubscribe=One-Click, as a url-encoded or multipart form."""
    if content_type.lower().startswith("multipart/form-data"):
        return bool(_MULTIPART_FIELD.search(body))
    try:
        pairs = parse_qsl(body.decode("ascii").strip(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return False
    return ("List-Unsubscribe", "One-Click") in pairs


def _confirmation_page(info: UnsubscribeInfo) -> str:
    who, sender = html.escape(info.recipient), html.escape(info.sending_domain)
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title>"
        "<meta name=\"robots\" content=\"noindex\"></head><body>"
        f"<p>Stop mail from {sender} to {who}?</p>"
        "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
        "<button type=\"submit\">Unsubscribe</button></form></body></html>\n")


def _done_page(info: UnsubscribeInfo) -> str:
    who, sender = html.escape(info.recipient), html.escape(info.sending_domain)
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribed</title></head><body>"
        f"<p>{who} will get no more mail from {sender}.</p></body></html>\n")


def _response(status: int, content_type: str, body: str, head_only: bool) -> bytes:
    data = body.encode("utf-8")
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\n"
            "Cache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("ascii") + (b"" if head_only else data)
