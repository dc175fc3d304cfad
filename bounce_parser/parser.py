"""``parse_bytes``: one message in, the recipients it reports out.

A message is first sorted into what its parts can tell (``Report``), then offered to a fixed
sequence of readers, from the most to the least structured evidence; the first that finds
recipients decides the result:

1. a feedback report (ARF), or Microsoft's JMRP complaint;
2. a delivery-status report (RFC 3464);
3. delivery-status fields pasted into the text of a bounce;
4. an Amazon SES event notification (JSON);
5. a bounce written for humans;
6. an auto-reply (RFC 3834);
7. a bounce forwarded as an attachment.

Recipients only ever come from the report's own parts and words.  The returned message's To and
Cc say whom the original was sent to, not who failed: a delay notice for one recipient of a
message to forty, or a list's bounce, would otherwise report everybody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from . import arf, dsn, families, mime, original, ses, signals, textbounce, textscan
from .addresses import find_addresses
from .fields import field_text
from .model import KIND_ARF, KIND_BOUNCE, KIND_DSN, KIND_NONE, BounceRecord, ParseResult

MAX_FORWARD_DEPTH = 2  # bounces attached to bounces, followed this deep

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers", "text/rfc822-header")


@dataclass(slots=True)
class Report:
    """A message's parts, sorted by what they can tell, and what follows from them."""

    message: Message
    delivery_status: list[Message] = field(default_factory=list)
    feedback: list[Message] = field(default_factory=list)
    returned: list[Message] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    after_returned: list[str] = field(default_factory=list)
    own_words: str = ""  # the human-readable text, up to a pasted copy of the original
    pasted: str = ""  # that pasted copy
    original_headers: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    senders: set[str] = field(default_factory=set)
    headers: dict[str, str] = field(default_factory=dict)
    sender: str = ""
    subject: str = ""
    family: str = ""  # the system that wrote the bounce (``families``)

    @property
    def human_text(self) -> str:
        return "\n".join(self.plain or self.html)

    @property
    def body(self) -> str:
        return self.own_words or self.human_text

    def looks_like_bounce(self) -> bool:
        return signals.looks_like_bounce(self.sender, self.subject, self.headers, self.body)


def _sort_parts(message: Message) -> Report:
    report = Report(message)
    seen_returned = False
    for part in mime.iter_report_parts(message):
        kind = mime.content_type(part)
        if kind in _DSN_TYPES:
            report.delivery_status.append(part)
        elif kind == "message/feedback-report":
            report.feedback.append(part)
        elif kind in _RETURNED_TYPES:
            report.returned.append(part)
            seen_returned = True
        elif seen_returned:
            # Text after the returned message is not the report's own words, but some systems
            # put the returned headers there.
            if kind.startswith("text/") and len(report.after_returned) < 4:
                report.after_returned.append(mime.part_text(part, original.MAX_HEADER_CHARS))
        elif kind == "text/html":
            report.html.append(mime.part_text(part))
        elif kind.startswith(("text/", "multipart/")):
            # A multipart left as a leaf had a broken boundary: its raw text is all we have.
            report.plain.append(mime.part_text(part))
    return report


def _senders(message: Message, returned: dict[str, str]) -> set[str]:
    """Addresses that sent or received the bounce itself, or sent the original: never recipients."""
    values = [mime.header_text(message, name) for name in ("from", "to", "delivered-to", "x-original-to", "sender")]
    values += [returned.get(name, "") for name in ("from", "return-path", "sender", "reply-to")]
    return {address for value in values for address in find_addresses(value)}


def _read(message: Message) -> Report:
    report = _sort_parts(message)
    report.own_words, report.pasted = textscan.split_at_original(report.human_text)
    report.original_headers = original.from_parts(report.returned) or (
        original.headers_from_text(report.pasted) if report.pasted else {}
    )
    report.message_id = original.message_id(report.original_headers) or original.message_id_in_text(
        [report.pasted, *report.after_returned], report.own_words
    )
    report.senders = _senders(message, report.original_headers)
    report.headers = original.headers_of(message)
    report.sender = mime.header_text(message, "from")
    report.subject = mime.header_text(message, "subject")
    report.family = families.detect(report.headers, report.subject, report.sender, report.human_text)
    return report


# Each reader returns (kind, records), or None when the message is not of its sort.
Reader = Callable[[Report, int], "tuple[str, list[BounceRecord]] | None"]


def _feedback_report(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    returned = report.original_headers
    auth = [returned["authentication-results"]] if "authentication-results" in returned else []
    if report.feedback:
        records = []
        for part in report.feedback:
            records += arf.records_from_report(field_text(part), returned, auth, report.own_words, report.message_id)
        return KIND_ARF, records
    if returned.get("x-hmxmroriginalrecipient"):
        return KIND_ARF, arf.records_from_jmrp(returned, auth, report.own_words, report.message_id)
    return None


def _delivery_status(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    records = []
    for part in report.delivery_status:
        records += dsn.records_from_fields(
            field_text(part),
            report.own_words,
            kind=KIND_DSN,
            message_id=report.message_id,
            senders=report.senders,
            family=report.family,
        )
    return (KIND_DSN, records) if records else None


def _fields_in_text(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    if not dsn.has_fields_in_text(report.body) or not report.looks_like_bounce():
        return None
    prose, report_fields = dsn.split_fields_from_text(report.body)
    records = dsn.records_from_fields(
        report_fields, prose, kind=KIND_BOUNCE, message_id=report.message_id, senders=report.senders,
        family=report.family,
    )
    return KIND_BOUNCE, records


def _provider_event(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    if not ses.looks_like_notification(report.human_text):
        return None
    return KIND_BOUNCE, ses.records_from_text(report.human_text)


def _human_bounce(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    if not report.looks_like_bounce():
        return None
    failed_header = report.headers.get("x-failed-recipients", "")
    return KIND_BOUNCE, textbounce.records(
        report.body, report.subject, report.senders, failed_header, report.message_id,
        from_system=signals.is_system_sender(report.sender),
        family=report.family,
    )


def _auto_reply(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    if not signals.looks_like_auto_reply(report.subject, report.headers):
        return None
    return KIND_BOUNCE, textbounce.auto_reply(report.sender, report.body, report.message_id)


def _forwarded_bounce(report: Report, depth: int) -> tuple[str, list[BounceRecord]] | None:
    if depth >= MAX_FORWARD_DEPTH:
        return None
    for part in report.returned:
        for inner in mime.children(part):
            forwarded = _parse_message(inner, depth + 1)
            if forwarded.records:
                return forwarded.kind, forwarded.records
    return None


READERS: tuple[Reader, ...] = (
    _feedback_report,
    _delivery_status,
    _fields_in_text,
    _provider_event,
    _human_bounce,
    _auto_reply,
    _forwarded_bounce,
)


def _parse_message(message: Message, depth: int) -> ParseResult:
    report = _read(message)
    result = ParseResult(original_headers=report.original_headers)
    for reader in READERS:
        found = reader(report, depth)
        if found and found[1]:
            result.kind, result.records = found
            return result
    result.kind = KIND_NONE
    return result


def parse_bytes(raw: bytes) -> ParseResult:
    """Parse one message (a DSN, a bounce, an ARF report ...); never raises."""
    message, defects = mime.load_message(raw)
    try:
        result = _parse_message(message, depth=0)
    except Exception as exc:  # the last guard: a parser bug must not take a daemon down
        result = ParseResult(defects=[f"parser error: {type(exc).__name__}"])
    result.defects[:0] = defects
    return result


def parse_message(message: Message) -> ParseResult:
    """Like ``parse_bytes`` for a message the caller parsed (stdlib, compat32 policy).

    The input caps of ``parse_bytes`` (size, nesting) are the caller's business here.
    """
    try:
        return _parse_message(message, depth=0)
    except Exception as exc:
        return ParseResult(defects=[f"parser error: {type(exc).__name__}"])
