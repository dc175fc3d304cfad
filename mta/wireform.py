"""Message text in its SMTP wire form (RFC 5321 4.5.2): CRLF line ends, every line that starts
with a period stuffed with a second one, ended by CRLF . CRLF.

Preparing a 20 KB body this way costs about 45 us (three counts and a replace, each a full scan),
which is most of what a delivery attempt costs in the event loop. Most bodies need none of it:
the submission reader already knows, for free, that a message came with CRLF line ends only and
no line starting with a period, so `goes_as_is` is only asked about the few header lines added
at acceptance, and such a body is sent as it is.
"""

from __future__ import annotations

import re

TERMINATOR = b".\r\n"          # after the body's last CRLF
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


def _crlf_only(text: bytes) -> bool:
    """Every CR and every LF in `text` is part of a CRLF."""
    crlf = text.count(b"\r\n")
    return text.count(b"\n") == crlf == text.count(b"\r")


def goes_as_is(text: bytes) -> bool:
    """True if `text` can go after a 354 unchanged: CRLF line ends only, no line starting with a
    period, and empty or ending with CRLF. Two such texts joined are such a text again."""
    return (_crlf_only(text) and not text.startswith(b".") and b"\n." not in text
            and (not text or text.endswith(b"\r\n")))


def wire_body(body: bytes) -> bytes:
    """`body` as it goes after a 354: CRLF line endings, dot-stuffed, ending with the CRLF . CRLF
    terminator. Any body is normalised first: a bare LF must never reach a server that could read
    "\\n.\\n" as the end of the data."""
    if not _crlf_only(body):
        body = _LINE_ENDINGS.sub(b"\r\n", body)
    if body.startswith(b"."):
        body = b"." + body
    body = body.replace(b"\r\n.", b"\r\n..")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + TERMINATOR


__all__ = ["TERMINATOR", "goes_as_is", "wire_body"]
