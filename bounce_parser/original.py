"""The headers of the message that bounced: its Message-ID, sender and recipients.

Reports return the original as a message/rfc822 part, as text/rfc822-headers, or pasted into the
text after a marker line; all three end up here as a small ``{lower-case name: value}`` dict.
"""

from __future__ import annotations

import email.parser
import re
from email import policy
from email.message import Message

from . import mime

MAX_HEADER_CHARS = 64 * 1024
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,60}:")
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,250})>")


def headers_of(message: Message) -> dict[str, str]:
    """First value of each header of ``message``, decoded, names lower-cased."""
    found: dict[str, str] = {}
    try:
        items = message.items()
    except Exception:
        return found
    for name, value in items:
        found.setdefault(name.lower(), mime.decode_words(str(value)))
    return found


def headers_from_text(text: str) -> dict[str, str]:
    """Parse a block of header lines (possibly indented or preceded by junk) into a dict."""
    lines = text[:MAX_HEADER_CHARS].split("\n")
    # Pasted copies are sometimes indented as a whole: remove the common indentation.
    indents = [len(line) - len(line.lstrip(" ")) for line in lines[:8] if line.strip()]
    if indents and min(indents) > 0:
        cut = min(indents)
        lines = [line[cut:] if line[:cut].isspace() else line for line in lines]
    while lines and not _HEADER_LINE.match(lines[0]):
        lines.pop(0)
        if not lines:
            return {}
    try:
        parsed = email.parser.Parser(policy=policy.compat32).parsestr("\n".join(lines), headersonly=True)
    except Exception:
        return {}
    return headers_of(parsed)


def message_id(headers: dict[str, str]) -> str:
    """The Message-ID without angle brackets, or ""."""
    value = headers.get("message-id", "")
    match = _MESSAGE_ID.search(value)
    if match:
        return match.group(1)
    return value.strip().strip("<>").split(" ")[0] if value.strip() else ""


_MESSAGE_ID_LINE = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*<([^<>\s]{1,250})>")


def message_id_in_text(copies: list[str], prose: str) -> str:
    """A Message-ID pasted into text: first in copies of the original, else the last in the prose.

    The prose is read from its end because a forwarded bounce quotes its own headers (with its
    own Message-ID) before the original's.
    """
    for text in copies:
        match = _MESSAGE_ID_LINE.search(text[:MAX_HEADER_CHARS])
        if match:
            return match.group(1)
    found = _MESSAGE_ID_LINE.findall(prose[: MAX_HEADER_CHARS * 4])
    return found[-1] if found else ""


def from_parts(parts: list[Message]) -> dict[str, str]:
    """Headers of the first returned original found among a report's leaf parts."""
    for part in parts:
        kind = mime.content_type(part)
        if kind in ("message/rfc822", "message/global", "message/partial"):
            inner = mime.children(part)
            if inner:
                headers = headers_of(inner[0])
                if headers:
                    return headers
            text = mime.part_text(part, MAX_HEADER_CHARS)
            if text:
                return headers_from_text(text)
        elif kind in ("text/rfc822-headers", "text/rfc822-header", "message/rfc822-headers", "text/global-headers"):
            headers = headers_from_text(mime.part_text(part, MAX_HEADER_CHARS))
            if headers:
                return headers
    return {}
