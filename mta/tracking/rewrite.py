"""Rewrite the links of a message's HTML parts to tracking URLs and add an open pixel.

Pure: bytes in, bytes out. Only the text/html leaves change (and, where a rewritten line would
exceed RFC 5322's 998 octets, their Content-Transfer-Encoding header); every other byte of the
message, headers and other parts included, is left exactly as it was, so nothing the app wrote
is re-folded or re-encoded. Runs at acceptance, before DKIM signing.

Links left alone: anything but http(s) (mailto:, tel:, #anchors, cid:), links carrying a
`data-no-track` attribute, links already pointing at the tracking host, and links too long for a
token. Attachments (Content-Disposition: attachment) and forwarded messages (message/rfc822)
are not touched.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import html
import itertools
import quopri
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RewriteResult", "rewrite_html", "rewrite_message"]

ClickUrl = Callable[[str], "str | None"]     # original URL -> tracking URL, None to leave it alone

_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_NO_TRACK = re.compile(r"\bdata-no-track\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_MAX_LINE = 998


@dataclass(frozen=True, slots=True)
class RewriteResult:
    message: bytes
    links: int                  # links rewritten
    pixels: int                 # open pixels added (one per HTML part)


def rewrite_html(text: str, click_url: ClickUrl, open_url: str | None) -> tuple[str, int]:
    """The HTML with its http(s) links rewritten and the pixel added before </body> (or at the end)."""
    count = 0

    def anchor(m: re.Match[str]) -> str:
        nonlocal count
        tag = m.group(0)
        if _NO_TRACK.search(tag):
            return tag
        href = _HREF.search(tag)
        if href is None:
            return tag
        raw = next(g for g in href.groups()[1:] if g is not None)
        url = html.unescape(raw).strip()
        if not url.lower().startswith(("http://", "https://")):
            return tag
        tracked = click_url(url)
        if tracked is None:
            return tag
        count += 1
        return tag[:href.start()] + f'{href.group(1)}"{html.escape(tracked)}"' + tag[href.end():]

    text = _ANCHOR.sub(anchor, text)
    if open_url is not None:
        pixel = (f'<img src="{html.escape(open_url)}" width="1" height="1" alt="" '
                 'style="display:block;border:0;width:1px;height:1px" />')
        ends = list(_BODY_END.finditer(text))
        text = text[:ends[-1].start()] + pixel + text[ends[-1].start():] if ends else text + pixel
    return text, count


def rewrite_message(message: bytes, click_url: ClickUrl, open_url: str | None) -> RewriteResult:
    """The message with every HTML leaf rewritten; unchanged bytes if it has none."""
    totals = [0, 0]
    out = _entity(message, click_url, open_url, totals)
    return RewriteResult(message if out is None else out, totals[0], totals[1])


def _split(entity: bytes) -> tuple[bytes, bytes, bytes]:
    """head, separator, body: the head ends at the first empty line."""
    if entity.startswith(b"\r\n"):
        return b"", b"\r\n", entity[2:]
    at = entity.find(b"\r\n\r\n")
    if at < 0:
        return entity, b"", b""
    return entity[:at + 2], b"\r\n", entity[at + 4:]


def _entity(entity: bytes, click_url: ClickUrl, open_url: str | None, totals: list[int]) -> bytes | None:
    head, sep, body = _split(entity)
    fields = email.message_from_bytes(head + b"\r\n", policy=email.policy.compat32)
    ctype = fields.get_content_type()
    disposition = (fields.get("content-disposition") or "").strip().lower()
    if disposition.startswith("attachment"):
        return None
    if ctype.startswith("multipart/"):
        boundary = fields.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            return None
        new_body = _multipart(body, boundary.encode("utf-8", "surrogateescape"), click_url, open_url, totals)
        return None if new_body is None else head + sep + new_body
    if ctype != "text/html" or not sep:
        return None
    return _html_leaf(head, sep, body, fields, click_url, open_url, totals)


def _multipart(body: bytes, boundary: bytes, click_url: ClickUrl, open_url: str | None,
               totals: list[int]) -> bytes | None:
    delimiters = list(re.finditer(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|\Z)", body))
    changed = False
    pieces: list[bytes] = []
    last = 0
    for here, after in itertools.pairwise(delimiters):
        if here.group(1):            # the close delimiter: what follows is the epilogue
            break
        start = here.end()                              # past the delimiter line and its CRLF
        end = after.start() - 2 if after.start() >= 2 else after.start()   # the CRLF belongs to the delimiter
        if start > end:
            continue
        new = _entity(body[start:end], click_url, open_url, totals)
        if new is not None:
            pieces += [body[last:start], new]
            last = end
            changed = True
    if not changed:
        return None
    pieces.append(body[last:])
    return b"".join(pieces)


def _html_leaf(head: bytes, sep: bytes, body: bytes, fields: email.message.Message, click_url: ClickUrl,
               open_url: str | None, totals: list[int]) -> bytes | None:
    cte = (fields.get("content-transfer-encoding") or "7bit").strip().lower()
    try:
        if cte == "base64":
            raw = base64.b64decode(body, validate=False)
        elif cte == "quoted-printable":
            raw = quopri.decodestring(body)
        elif cte in ("7bit", "8bit", "binary"):
            raw = body
        else:
            return None                                  # an encoding we would not write back faithfully
    except (binascii.Error, ValueError):
        return None
    charset = fields.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, "surrogateescape")
    except LookupError:
        charset = "latin-1"
        text = raw.decode(charset)
    new_text, links = rewrite_html(text, click_url, open_url)
    if links == 0 and open_url is None:
        return None
    new_raw = new_text.encode(charset, "surrogateescape")
    if cte == "base64":
        encoded = _base64_lines(new_raw)
    elif cte == "quoted-printable" or max(map(len, new_raw.split(b"\r\n")), default=0) > _MAX_LINE:
        if cte != "quoted-printable":
            head = _set_cte(head, b"quoted-printable")
        encoded = _quoted_printable(new_raw)
    else:
        encoded = new_raw
    if body.endswith(b"\r\n") and not encoded.endswith(b"\r\n"):
        encoded += b"\r\n"
    totals[0] += links
    totals[1] += open_url is not None
    return head + sep + encoded


def _base64_lines(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i:i + 76] + b"\r\n" for i in range(0, len(text), 76))


def _quoted_printable(data: bytes) -> bytes:
    lines = quopri.encodestring(data.replace(b"\r\n", b"\n")).split(b"\n")
    return b"\r\n".join(lines)


_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*(?:\r\n[ \t].*)*\r\n")


def _set_cte(head: bytes, value: bytes) -> bytes:
    new = b"Content-Transfer-Encoding: " + value + b"\r\n"
    if _CTE_FIELD.search(head):
        return _CTE_FIELD.sub(lambda _m: new, head, count=1)
    return head + new
