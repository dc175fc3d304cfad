"""The JSON of `POST /v1/messages` read into a typed MessageRequest, checked field by field so
each problem is a 422 naming its field. Pure: no I/O, the clock is a parameter."""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mta.http.api.errors import invalid
from mta.submission.addresses import check_recipient, check_sender
from mta.submission.headers import campaign_name

_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")
# Header fields the API writes itself (or that would change routing, signing or our own markers).
RESERVED_HEADERS = {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
                    "content-type", "content-transfer-encoding", "received", "dkim-signature", "return-path",
                    "x-tenant", "list-unsubscribe", "list-unsubscribe-post", "sender"}
MESSAGE_FIELDS = {"from", "to", "cc", "bcc", "reply_to", "subject", "text", "html", "headers", "attachments",
                  "stream", "tags", "campaign", "send_at", "template", "substitutions", "track"}
MAX_TAGS = 20
MAX_TAG = 128


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str
    name: str = ""

    def formatted(self) -> str:
        return email.utils.formataddr((self.name, self.address)) if self.name else self.address


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(slots=True)
class MessageRequest:
    sender: Mailbox
    to: list[Mailbox]
    cc: list[Mailbox] = field(default_factory=list)
    bcc: list[Mailbox] = field(default_factory=list)
    reply_to: list[Mailbox] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    stream: str = ""
    tags: list[str] = field(default_factory=list)
    campaign: str = ""
    send_at: float = 0.0
    template: dict[str, str] | None = None
    substitutions: dict[str, Any] = field(default_factory=dict)
    track: bool | None = None           # open/click tracking: None = as configured; False = off; True = on

    @property
    def recipients(self) -> list[str]:
        """Envelope recipients: to, cc and bcc, each once, in that order."""
        seen: dict[str, str] = {}
        for m in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(m.address.lower(), m.address)
        return list(seen.values())

    @property
    def smtputf8(self) -> bool:
        return any(not m.address.isascii() for m in (self.sender, *self.to, *self.cc, *self.bcc))


@dataclass(frozen=True, slots=True)
class Limits:
    streams: frozenset[str]
    max_recipients: int
    max_schedule_ahead: float


def parse_message(data: Any, now: float, limits: Limits, prefix: str = "") -> MessageRequest:
    """Raises ApiError (422, naming the field) on the first problem found."""
    if not isinstance(data, dict):
        raise invalid(prefix.rstrip(".") or "", "a message must be a JSON object")
    for name in data:
        if name not in MESSAGE_FIELDS:
            raise invalid(prefix + str(name), f"unknown field {name!r}")
    f = prefix
    if "from" not in data:
        raise invalid(f + "from", "required")
    sender = _mailbox(data["from"], f + "from", sender=True)
    to = _mailboxes(data.get("to", []), f + "to")
    cc = _mailboxes(data.get("cc", []), f + "cc")
    bcc = _mailboxes(data.get("bcc", []), f + "bcc")
    if not (to or cc or bcc):
        raise invalid(f + "to", "at least one recipient (to, cc or bcc) is required")
    req = MessageRequest(sender=sender, to=to, cc=cc, bcc=bcc,
                         reply_to=_mailboxes(data.get("reply_to", []), f + "reply_to"),
                         subject=_one_line(_string(data, "subject", f) or "", f + "subject"),
                         text=_string(data, "text", f), html=_string(data, "html", f),
                         headers=_headers(data.get("headers", {}), f + "headers"),
                         attachments=_attachments(data.get("attachments", []), f + "attachments"),
                         tags=_tags(data.get("tags", []), f + "tags"),
                         campaign=campaign_name(_string(data, "campaign", f) or ""))
    if len(req.recipients) > limits.max_recipients:
        raise invalid(f + "to", f"at most {limits.max_recipients} recipients per message")
    stream = _string(data, "stream", f) or ""
    if stream and stream not in limits.streams:
        raise invalid(f + "stream", f"no stream named {stream!r} (one of {', '.join(sorted(limits.streams))})")
    req.stream = stream
    if data.get("send_at") is not None:
        req.send_at = parse_send_at(data["send_at"], now, limits.max_schedule_ahead, f + "send_at")
    if "template" in data:
        req.template = _template(data["template"], f + "template")
        if req.text is not None or req.html is not None or "subject" in data:
            raise invalid(f + "template", "give either a template or subject/text/html, not both")
    elif req.text is None and req.html is None:
        raise invalid(f + "text", "a message needs text, html or a template")
    subs = data.get("substitutions", {})
    if not isinstance(subs, dict):
        raise invalid(f + "substitutions", "must be an object of template variables")
    if subs and req.template is None:
        raise invalid(f + "substitutions", "substitutions need a template")
    req.substitutions = subs
    track = data.get("track")
    if track is not None and not isinstance(track, bool):
        raise invalid(f + "track", "must be true or false")
    req.track = track
    return req


def parse_send_at(value: Any, now: float, max_ahead: float, name: str) -> float:
    if not isinstance(value, str):
        raise invalid(name, "must be an RFC 3339 date-time string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(name, f"not an RFC 3339 date-time: {value!r}") from None
    if when.tzinfo is None:
        raise invalid(name, "needs a time zone offset (e.g. Z)")
    at = when.timestamp()
    if at > now + max_ahead:
        raise invalid(name, f"at most {max_ahead / 86400:g} days ahead")
    return at if at > now else 0.0       # a time already past: send now


def _string(data: dict[str, Any], name: str, prefix: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(prefix + name, "must be a string")
    if "\x00" in value:
        raise invalid(prefix + name, "must not contain NUL characters")
    return value


def _one_line(value: str, name: str) -> str:
    if "\r" in value or "\n" in value:
        raise invalid(name, "must be one line")
    return value


def _mailbox(value: Any, name: str, sender: bool = False) -> Mailbox:
    if isinstance(value, dict):
        address, display = value.get("email"), value.get("name", "")
        if set(value) - {"email", "name"} or not isinstance(address, str) or not isinstance(display, str):
            raise invalid(name, 'a mailbox object is {"email": ..., "name": ...}')
    elif isinstance(value, str):
        if "\r" in value or "\n" in value:
            raise invalid(name, "must be one line")
        if any(c in value for c in '<"(,'):
            display, address = email.utils.parseaddr(value)
        else:                       # a bare address, the common case: no parser needed
            display, address = "", value.strip()
        if not address:
            raise invalid(name, f"not an address: {value!r}")
    else:
        raise invalid(name, "must be an address string or {\"email\", \"name\"}")
    if "\r" in display or "\n" in display or "\x00" in display:
        raise invalid(name, "a display name must be one line")
    problem = check_sender(address, True) if sender else check_recipient(address, True)
    if problem is not None or (sender and not address):
        raise invalid(name, problem.text if problem else "an address is required")
    return Mailbox(address, display)


def _mailboxes(value: Any, name: str) -> list[Mailbox]:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise invalid(name, "must be an address or a list of addresses")
    return [_mailbox(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _headers(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid(name, "must be an object of header names and values")
    out = {}
    for key, v in value.items():
        where = f"{name}.{key}"
        if not _HEADER_NAME.fullmatch(key):
            raise invalid(where, "not a header field name")
        if key.lower() in RESERVED_HEADERS:
            raise invalid(where, "set by the API itself; use the message's own field")
        if not isinstance(v, str) or any(c in v for c in "\r\n\x00"):
            raise invalid(where, "must be a one-line string")
        out[key] = v
    return out


def _attachments(value: Any, name: str) -> list[Attachment]:
    if not isinstance(value, list):
        raise invalid(name, "must be a list")
    out = []
    for i, a in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(a, dict) or set(a) - {"filename", "content_type", "content"}:
            raise invalid(where, "an attachment is {filename, content_type, content}")
        filename, ctype, content = a.get("filename"), a.get("content_type", "application/octet-stream"), \
            a.get("content")
        if not isinstance(filename, str) or not filename or any(c in filename for c in "\r\n\x00"):
            raise invalid(where + ".filename", "a one-line file name is required")
        if not isinstance(ctype, str) or not re.fullmatch(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+", ctype):
            raise invalid(where + ".content_type", "must be a MIME type such as application/pdf")
        if not isinstance(content, str):
            raise invalid(where + ".content", "base64 content is required")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(where + ".content", "not base64") from None
        out.append(Attachment(filename, ctype.lower(), data))
    return out


def _tags(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise invalid(name, f"must be a list of at most {MAX_TAGS} strings")
    for i, t in enumerate(value):
        if not isinstance(t, str) or not 0 < len(t) <= MAX_TAG or any(c in t for c in "\r\n\x00"):
            raise invalid(f"{name}[{i}]", f"a tag is a one-line string of 1 to {MAX_TAG} characters")
    return list(value)


def _template(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value or set(value) - {"subject", "text", "html"}:
        raise invalid(name, "a template is an object with subject, text and/or html")
    for key, v in value.items():
        if not isinstance(v, str) or "\x00" in v:
            raise invalid(f"{name}.{key}", "must be a string")
    if "text" not in value and "html" not in value:
        raise invalid(name, "a template needs text or html")
    return dict(value)
