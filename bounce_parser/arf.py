"""Complaint reports: RFC 5965 (ARF) and Microsoft's older JMRP format.

A complaint names the complaining recipient (Original-Rcpt-To, or the returned message's own
recipient), the feedback type (abuse, fraud, auth-failure ...) and carries the complained-about
message, whose Authentication-Results show whether our mail authenticated at the receiver.
"""

from __future__ import annotations

import authres

from . import fields, smtp_text
from .addresses import address_from_field, find_addresses
from .model import KIND_ARF, AuthResult, BounceRecord

_RECIPIENT_FIELDS = ("original-rcpt-to", "removal-recipient")


def parse_authentication_results(value: str) -> tuple[AuthResult, ...]:
    """Method results of one Authentication-Results value; () when it cannot be read."""
    value = smtp_text.collapse(value)
    if not value:
        return ()
    header = None
    # Reports often drop the authserv-id; give the parser one rather than lose the results.
    for candidate in (value, f"unknown; {value}"):
        try:
            header = authres.AuthenticationResultsHeader.parse_value(candidate)
            break
        except Exception:
            continue
    if header is None:
        return ()
    results = []
    for result in header.results:
        properties = tuple(
            (f"{prop.type}.{prop.name}", str(prop.value)) for prop in getattr(result, "properties", ()) or ()
        )
        results.append(AuthResult(str(result.method).lower(), str(result.result).lower(), properties))
    return tuple(results)


def _all_values(report_text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for item in fields.unfold_fields(report_text):
        if item is not None:
            values.setdefault(item[0], []).append(item[1])
    return values


def records_from_report(
    report_text: str,
    original_headers: dict[str, str],
    original_auth_values: list[str],
    human_text: str,
    message_id: str,
) -> list[BounceRecord]:
    """Records of a message/feedback-report part (one per complaining recipient)."""
    values = _all_values(report_text)
    feedback_type = (values.get("feedback-type", [""])[0].split() or [""])[0].lower()
    recipients: list[str] = []
    for name in _RECIPIENT_FIELDS:
        for value in values.get(name, []):
            address = address_from_field(value)
            if address and address not in recipients:
                recipients.append(address)
        if recipients:
            break
    if not recipients:
        recipients = find_addresses(original_headers.get("to", ""))
    auth_values = values.get("authentication-results", []) + original_auth_values
    return _records(recipients, feedback_type or "abuse", auth_values, human_text, message_id)


def records_from_jmrp(original_headers: dict[str, str], original_auth_values: list[str],
                      human_text: str, message_id: str) -> list[BounceRecord]:
    """Microsoft JMRP: no report part, the original carries X-HmXmrOriginalRecipient."""
    recipients = find_addresses(original_headers.get("x-hmxmroriginalrecipient", ""))
    return _records(recipients, "abuse", original_auth_values, human_text, message_id)


def _records(recipients: list[str], feedback_type: str, auth_values: list[str],
             human_text: str, message_id: str) -> list[BounceRecord]:
    auth = tuple(result for value in auth_values for result in parse_authentication_results(value))
    # The start of the report's own words says what kind of report it is.
    diagnostic = smtp_text.collapse(human_text)[:300]
    return [
        BounceRecord(
            recipient=recipient,
            kind=KIND_ARF,
            reason="feedback",
            hard=False,
            diagnostic=diagnostic,
            message_id=message_id,
            feedback_type=feedback_type,
            reply_kind="complaint",
            rule=f"feedback-report:{feedback_type}",
            authentication_results=auth,
        )
        for recipient in recipients
    ]
