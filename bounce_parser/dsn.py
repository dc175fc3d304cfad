"""Records from RFC 3464 delivery-status fields (a message/delivery-status part, or the same
fields pasted into text by systems that do not build the MIME structure)."""

from __future__ import annotations

import re

from . import families, fields, smtp_text, textscan
from .addresses import address_from_field
from .classifier import classify
from .model import BounceRecord, failure_record

MAX_RECIPIENTS = 1000  # per report; real ones list a handful, more is an attack on the parser

_DSN_FIELD_IN_TEXT = re.compile(r"(?im)^\s*(?:final|original)-recipient\s*:")
_FIRST_FIELD_IN_TEXT = re.compile(
    r"(?im)^(?:reporting-mta|received-from-mta|arrival-date|original-recipient|final-recipient)\s*:"
)
_TYPE_AND_TEXT = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]{0,20})\s*;\s*(.*)$", re.DOTALL)


def has_fields_in_text(text: str) -> bool:
    return _DSN_FIELD_IN_TEXT.search(text) is not None


def split_fields_from_text(text: str) -> tuple[str, str]:
    """``(prose before the fields, the fields)`` of a text that pastes a delivery-status report."""
    match = _FIRST_FIELD_IN_TEXT.search(text)
    if match is None:
        return text, ""
    return text[: match.start()], text[match.start() :]


def _split_typed(value: str) -> tuple[str, str]:
    """``"smtp; 550 ..."`` -> ``("smtp", "550 ...")``; untyped values keep an empty type."""
    match = _TYPE_AND_TEXT.match(value)
    if match:
        return match.group(1).lower(), match.group(2).strip()
    return "", value.strip()


def records_from_fields(
    report_text: str,
    human_text: str,
    *,
    kind: str,
    message_id: str,
    senders: set[str],
    family: str = "",
) -> list[BounceRecord]:
    """One record per recipient group that names an address (``family``: see ``families``)."""
    per_message, groups = fields.group_fields(report_text)
    family = family or families.detect(per_message, "", "", "")
    statement = families.own_statement(family, human_text)
    remote_default = _split_typed(per_message.get("remote-mta", ""))[1]
    human = {found.address: found for found in textscan.scan(human_text, senders)} if human_text else {}
    region = textscan.region_diagnostic(human_text) if human_text else ""
    records: dict[str, BounceRecord] = {}
    for group in groups[:MAX_RECIPIENTS]:
        recipient = (
            address_from_field(group.get("final-recipient", ""))
            or address_from_field(group.get("original-recipient", ""))
            or address_from_field(group.get("x-actual-recipient", ""))
        )
        if not recipient or recipient in records:
            continue
        action = group.get("action", "").strip().lower().split(" ")[0].strip("();")
        diagnostic_type, diagnostic = _split_typed(group.get("diagnostic-code", ""))
        diagnostic = smtp_text.collapse(diagnostic)
        status = smtp_text.find_status(group.get("status", "")) or smtp_text.find_status(diagnostic)
        from_text = human.get(recipient)
        if from_text is None and len(groups) == 1 and len(human) == 1:
            from_text = next(iter(human.values()))
        block = from_text.diagnostic if from_text else ""
        fields_silent = not diagnostic
        if not diagnostic and block:
            diagnostic = block
        command = (
            smtp_text.find_command(diagnostic)
            or (from_text.command if from_text else "")
            or smtp_text.find_command(block)
        )
        if not command and len(groups) == 1:
            command = smtp_text.transcript_command(human_text) or smtp_text.find_command(region)
        remote_mta = (
            _split_typed(group.get("remote-mta", ""))[1]
            or remote_default
            or smtp_text.find_remote_host(diagnostic)
            or smtp_text.find_remote_host(block)
        )
        classification = classify(
            status=status,
            text=statement or diagnostic,
            # A report whose fields say nothing leaves the report's own words to tell the reason.
            context=(block, region),
            prose_only=fields_silent,
            command=command,
            action=action,
            diagnostic_type=diagnostic_type,
            recipient=recipient,
            remote_host=remote_mta.strip("[]"),
            family=family,
            vendor_category=group.get("x-powermta-bouncecategory", ""),
        )
        records[recipient] = failure_record(
            classification,
            recipient=recipient,
            kind=kind,
            action=action,
            status=status,
            diagnostic=diagnostic,
            reply_code=smtp_text.find_reply_code(diagnostic),
            remote_mta=remote_mta,
            message_id=message_id,
            command=command,
        )
    return list(records.values())
