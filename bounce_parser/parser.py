"""``parse_bytes``: one message in, the recipients it reports out.

The order of attempts goes from the most to the least structured evidence: a feedback report,
a delivery-status report, delivery-status fields pasted into text, a provider's JSON event, a
bounce written for humans, an auto-reply, and finally a bounce forwarded as an attachment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from . import arf, dsn, mime, original, ses, signals, smtp_text, textscan
from .addresses import find_addresses
from .classifier import classify
from .fields import field_text
from .model import KIND_ARF, KIND_BOUNCE, KIND_DSN, KIND_NONE, BounceRecord, ParseResult

MAX_FORWARD_DEPTH = 2  # bounces attached to bounces, followed this deep


@dataclass(slots=True)
class _Report:
    """The parts of a message, sorted by what they can tell."""

    delivery_status: list[Message] = field(default_factory=list)
    feedback: list[Message] = field(default_factory=list)
    returned: list[Message] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    leaves: list[Message] = field(default_factory=list)
    after_returned: list[str] = field(default_factory=list)

    @property
    def human_text(self) -> str:
        return "\n".join(self.plain or self.html)


def _sort_parts(message: Message) -> _Report:
    report = _Report()
    seen_returned = False
    for part in mime.iter_report_parts(message):
        report.leaves.append(part)
        kind = mime.content_type(part)
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            report.delivery_status.append(part)
        elif kind == "message/feedback-report":
            report.feedback.append(part)
        elif kind in ("message/rfc822", "message/global", "text/rfc822-headers", "text/rfc822-header"):
            report.returned.append(part)
            seen_returned = True
        elif seen_returned:
            # Text after the returned message is not the report's own words, but some systems
            # put the returned headers there.
            if kind.startswith("text/") and len(report.after_returned) < 4:
                report.after_returned.append(mime.part_text(part, original.MAX_HEADER_CHARS))
        elif kind == "text/html":
            report.html.append(mime.part_text(part))
        elif kind.startswith("text/") or kind.startswith("multipart/"):
            # A multipart left as a leaf had a broken boundary: its raw text is all we have.
            report.plain.append(mime.part_text(part))
    return report


def _senders(message: Message, returned: dict[str, str]) -> set[str]:
    """Addresses that sent or received the bounce itself, or sent the original: never recipients."""
    values = [mime.header_text(message, name) for name in ("from", "to", "delivered-to", "x-original-to", "sender")]
    values += [returned.get(name, "") for name in ("from", "return-path", "sender", "reply-to")]
    return {address for value in values for address in find_addresses(value)}


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
    """Like ``parse_bytes`` for a message already parsed by the stdlib (compat32 policy)."""
    try:
        return _parse_message(message, depth=0)
    except Exception as exc:
        return ParseResult(defects=[f"parser error: {type(exc).__name__}"])


def _parse_message(message: Message, depth: int) -> ParseResult:
    report = _sort_parts(message)
    own_words, pasted = textscan.split_at_original(report.human_text)
    returned = original.from_parts(report.returned) or (original.headers_from_text(pasted) if pasted else {})
    message_id = original.message_id(returned) or original.message_id_in_text(
        [pasted, *report.after_returned], own_words
    )
    senders = _senders(message, returned)
    result = ParseResult(original_headers=returned)

    if report.feedback:
        auth = [returned[name] for name in ("authentication-results",) if name in returned]
        for part in report.feedback:
            result.records += arf.records_from_report(
                field_text(part),
                returned, auth, own_words, message_id,
            )
        return _done(result, KIND_ARF)
    if returned.get("x-hmxmroriginalrecipient"):
        auth = [returned["authentication-results"]] if "authentication-results" in returned else []
        result.records = arf.records_from_jmrp(returned, auth, own_words, message_id)
        return _done(result, KIND_ARF)

    if report.delivery_status:
        for part in report.delivery_status:
            result.records += dsn.records_from_fields(
                field_text(part), own_words, kind=KIND_DSN, message_id=message_id, senders=senders
            )
        if result.records:
            return _done(result, KIND_DSN)

    headers = original.headers_of(message)
    sender = mime.header_text(message, "from")
    subject = mime.header_text(message, "subject")
    body = own_words or report.human_text

    if dsn.has_fields_in_text(body) and signals.looks_like_bounce(sender, subject, headers, body):
        prose, report_fields = dsn.split_fields_from_text(body)
        result.records = dsn.records_from_fields(
            report_fields, prose, kind=KIND_BOUNCE, message_id=message_id, senders=senders
        )
        if result.records:
            return _done(result, KIND_BOUNCE)

    if ses.looks_like_notification(report.human_text):
        result.records = ses.records_from_text(report.human_text)
        if result.records:
            return _done(result, KIND_BOUNCE)

    if signals.looks_like_bounce(sender, subject, headers, body):
        result.records = _text_bounce(message, headers, subject, body, senders, message_id)
        if result.records:
            return _done(result, KIND_BOUNCE)

    if signals.looks_like_auto_reply(subject, headers):
        result.records = _auto_reply(sender, body, message_id)
        if result.records:
            return _done(result, KIND_BOUNCE)

    if report.delivery_status:
        # A delivery report that names nobody ("Delivery report unavailable") still says the
        # returned message failed: its own recipients are the ones concerned.
        result.records = _unnamed_failures(returned, senders, own_words, message_id)
        if result.records:
            return _done(result, KIND_DSN)

    if depth < MAX_FORWARD_DEPTH:
        for part in report.returned:
            for inner in mime.children(part):
                forwarded = _parse_message(inner, depth + 1)
                if forwarded.records:
                    return forwarded
    return result


def _done(result: ParseResult, kind: str) -> ParseResult:
    result.kind = kind if result.records else KIND_NONE
    return result


def _text_bounce(
    message: Message, headers: dict[str, str], subject: str, body: str, senders: set[str], message_id: str
) -> list[BounceRecord]:
    found = textscan.scan(body, senders)
    failed = find_addresses(headers.get("x-failed-recipients", ""))
    if failed:
        by_address = {item.address: item for item in found}
        listed = []
        for address in failed:
            item = by_address.get(address)
            if item is None:
                local = address.split("@", 1)[0]
                item = textscan.TextRecipient(address, textscan.block_for_local_part(body, local), True)
            listed.append(item)
        found = listed
    if not found:
        return []
    delayed = textscan.is_delay_notice(subject + "\n" + body)
    region = textscan.region_diagnostic(body)
    records = []
    for item in found:
        diagnostic = item.diagnostic or region
        action = "delayed" if delayed else "failed"
        command = item.command or smtp_text.find_command(diagnostic)
        found_reason = classify(
            text=diagnostic, context=(region,), command=command, action=action, recipient=item.address
        )
        records.append(
            BounceRecord(
                recipient=item.address,
                kind=KIND_BOUNCE,
                reason=found_reason.reason,
                hard=found_reason.hard,
                action=action,
                status=smtp_text.find_status(diagnostic),
                diagnostic=diagnostic,
                remote_mta=smtp_text.find_remote_host(diagnostic),
                message_id=message_id,
                reply_code=smtp_text.find_reply_code(diagnostic),
                command=command,
                detail=found_reason.detail,
                reply_kind=found_reason.kind,
                rule=found_reason.rule,
            )
        )
    return records


def _unnamed_failures(returned: dict[str, str], senders: set[str], text: str, message_id: str) -> list[BounceRecord]:
    addresses = [a for a in find_addresses(returned.get("to", "") + "," + returned.get("cc", "")) if a not in senders]
    found = classify(text="", action="failed")
    return [
        BounceRecord(
            recipient=address, kind=KIND_DSN, reason=found.reason, hard=found.hard, action="failed",
            diagnostic=textscan.region_diagnostic(text, 300), message_id=message_id, reply_kind=found.kind,
        )
        for address in addresses
    ]


def _auto_reply(sender: str, body: str, message_id: str) -> list[BounceRecord]:
    addresses = find_addresses(sender)
    if not addresses:
        return []
    return [
        BounceRecord(
            recipient=addresses[0],
            kind=KIND_BOUNCE,
            reason="vacation",
            hard=False,
            diagnostic=textscan.region_diagnostic(body, 300),
            message_id=message_id,
            reply_kind="autoreply",
        )
    ]
