"""Header work at acceptance, on raw bytes: read a few headers, add Received / Message-ID / Date,
strip the internal routing headers. Pure functions; the body is never parsed as MIME here."""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass

_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)
_FOLD = re.compile(r"\r?\n[ \t]+")


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    stream: str
    tenant: str
    from_domain: str
    message_id: str
    has_date: bool
    campaign: str = ""


def split_headers(data: bytes) -> tuple[bytes, bytes]:
    """(header block including its final CRLF, rest starting with the blank line or empty)."""
    if data.startswith(b"\r\n"):
        return b"", data
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[:end + 2], data[end + 2:]


Fields = list[tuple[bytes, int, int]]


def header_fields(headers: bytes) -> Fields:
    """(lower-case name, start, end) of each header field, folded continuation lines included."""
    starts = [(m.group(1).lower(), m.start()) for m in _HEADER_NAME.finditer(headers)
              if m.start() == 0 or headers[m.start() - 1:m.start()] == b"\n"]
    out = []
    for i, (name, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(headers)
        out.append((name, start, end))
    return out


def _value(headers: bytes, start: int, end: int) -> str:
    raw = headers[start:end]
    raw = raw[raw.index(b":") + 1:]
    text = raw.decode("utf-8", "replace").strip()
    return _FOLD.sub(" ", text).strip() if "\n" in text else text     # unfolded: most fields


def read_facts(headers: bytes, stream_header: str, campaign_header: str = "",
               fields: Fields | None = None) -> HeaderFacts:
    """The facts acceptance needs; `fields`: header_fields(headers), if the caller has them."""
    wanted = {stream_header.lower().encode(): "stream", b"x-tenant": "tenant", b"from": "from",
              b"message-id": "message_id", b"date": "date"}
    if campaign_header:
        wanted[campaign_header.lower().encode()] = "campaign"
    found: dict[str, str] = {}
    for name, start, end in header_fields(headers) if fields is None else fields:
        key = wanted.get(name)
        if key and key not in found:
            found[key] = _value(headers, start, end)
    return HeaderFacts(
        stream=found.get("stream", "").strip().lower(),
        tenant=found.get("tenant", "").strip(),
        from_domain=from_domain(found["from"]) if "from" in found else "",
        message_id=found.get("message_id", ""),
        has_date="date" in found,
        campaign=campaign_name(found.get("campaign", "")),
    )


# The usual From values, "Name <user@example.com>" and "user@example.com": no quotes, comments,
# groups, lists or escapes, for which email.utils.parseaddr (7 us, against 0.5 us here) finds the
# same address.
_ADDR = r'([^\s"(),:;<>@\[\]\\]+@[^\s"(),:;<>@\[\]\\]+)'
_PLAIN_FROM = re.compile(rf'\s*(?:[^"(),:;<>@\[\]\\]*<\s*{_ADDR}\s*>|{_ADDR})\s*')


def from_domain(value: str) -> str:
    """The lower-case domain of the From field's address, "" if it has none."""
    plain = _PLAIN_FROM.fullmatch(value)
    addr = (plain.group(1) or plain.group(2)) if plain is not None else email.utils.parseaddr(value)[1]
    return addr.rpartition("@")[2].lower().rstrip(">").strip() if "@" in addr else ""


MAX_CAMPAIGN = 100
_NOT_IN_CAMPAIGN = re.compile(r"[\x00-\x1f\x7f|]+")


def campaign_name(value: str) -> str:
    """A campaign tag as the policy keys it: control characters and "|" (the policy's key
    separator) become spaces, runs of white space one space, at most 100 characters."""
    return " ".join(_NOT_IN_CAMPAIGN.sub(" ", value).split())[:MAX_CAMPAIGN].strip()


def remove_fields(headers: bytes, names: set[bytes], fields: Fields | None = None) -> bytes:
    """Drops every field whose lower-case name is in `names`; `fields` as for read_facts."""
    spans = [(s, e) for name, s, e in (header_fields(headers) if fields is None else fields) if name in names]
    if not spans:
        return headers
    out, pos = [], 0
    for s, e in spans:
        out.append(headers[pos:s])
        pos = e
    out.append(headers[pos:])
    return b"".join(out)


def received_field(*, helo: str, client_ip: str, hostname: str, protocol: str, queue_id: str,
                   recipient: str | None, now: float) -> bytes:
    when = rfc5322_date(now)
    for_part = f"\r\n\tfor <{recipient}>" if recipient else ""
    helo = re.sub(r"[^\x21-\x7e]", "?", helo)[:255]
    return (f"Received: from {helo} ([{client_ip}])\r\n\tby {hostname} (warmup-mta) with {protocol}"
            f" id {queue_id}{for_part};\r\n\t{when}\r\n").encode("utf-8", "surrogateescape")


def make_message_id(queue_id: str, hostname: str) -> str:
    return f"<{queue_id}@{hostname}>"


def date_field(now: float) -> bytes:
    return f"Date: {rfc5322_date(now)}\r\n".encode()


_last_date: tuple[int, str] = (-1, "")


def rfc5322_date(now: float) -> str:
    """The date-time of the second `now` is in, in UTC ("Tue, 01 Dec 2026 10:00:00 -0000"),
    formatted once per second: every message of that second gets the same text."""
    global _last_date
    second = int(now // 1)
    if _last_date[0] != second:
        _last_date = (second, email.utils.formatdate(second, localtime=False))
    return _last_date[1]
