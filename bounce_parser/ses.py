"""Amazon SES event notifications (Bounce, Complaint, Delivery) delivered as JSON by e-mail.

SES can publish its events through SNS to an e-mail subscription; the body is the event's JSON,
sometimes wrapped in an SNS envelope whose ``Message`` is the JSON as a string, and sometimes
folded onto several lines by the mail path.
"""

from __future__ import annotations

import json
import re

from . import smtp_text
from .addresses import address_from_field
from .classifier import classify
from .model import KIND_BOUNCE, BounceRecord, failure_record

_MAX_JSON_CHARS = 512 * 1024
_FOLD = re.compile(r"\n[ \t]?")


def _load_json(text: str) -> dict | None:
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end <= start or end - start > _MAX_JSON_CHARS:
        return None
    body = text[start : end + 1]
    for candidate in (body, _FOLD.sub("", body), body.replace("\n", " ")):
        try:
            loaded = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(loaded, dict):
            return loaded
    return None


def _event(text: str) -> dict | None:
    event = _load_json(text)
    if event is None:
        return None
    inner = event.get("Message")
    if isinstance(inner, str):  # SNS envelope around the SES event
        event = _load_json(inner)
        if event is None:
            return None
    kind = event.get("notificationType") or event.get("eventType")
    return event if kind in ("Bounce", "Complaint", "Delivery") else None


def looks_like_notification(text: str) -> bool:
    return "notificationType" in text[:_MAX_JSON_CHARS] or "eventType" in text[:_MAX_JSON_CHARS]


def records_from_text(text: str) -> list[BounceRecord]:
    """Records of an SES event e-mail; [] when the text holds no such event."""
    event = _event(text)
    if event is None:
        return []
    kind = event.get("notificationType") or event.get("eventType")
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    message_id = str(mail.get("messageId", ""))
    if kind == "Bounce":
        return _bounces(event.get("bounce") or {}, message_id)
    if kind == "Complaint":
        return _complaints(event.get("complaint") or {}, message_id)
    return _deliveries(event.get("delivery") or {}, message_id)


def _entries(section: dict, key: str) -> list:
    entries = section.get(key) if isinstance(section, dict) else None
    return entries if isinstance(entries, list) else []


def _bounces(bounce: dict, message_id: str) -> list[BounceRecord]:
    records = []
    permanent = str(bounce.get("bounceType", "")).lower() == "permanent"
    for entry in _entries(bounce, "bouncedRecipients"):
        if not isinstance(entry, dict):
            continue
        recipient = address_from_field(str(entry.get("emailAddress", "")))
        if not recipient:
            continue
        diagnostic = smtp_text.collapse(str(entry.get("diagnosticCode", "")))
        diagnostic = re.sub(r"^smtp;\s*", "", diagnostic, flags=re.IGNORECASE)
        status = smtp_text.find_status(str(entry.get("status", ""))) or smtp_text.find_status(diagnostic)
        action = str(entry.get("action", "failed" if permanent else "delayed")).lower()
        found = classify(status=status, text=diagnostic, action=action)
        records.append(
            failure_record(
                found, recipient=recipient, kind=KIND_BOUNCE, action=action, status=status, diagnostic=diagnostic,
                reply_code=smtp_text.find_reply_code(diagnostic), message_id=message_id,
            )
        )
    return records


def _complaints(complaint: dict, message_id: str) -> list[BounceRecord]:
    feedback_type = str(complaint.get("complaintFeedbackType", "") or "abuse").lower()
    records = []
    for entry in _entries(complaint, "complainedRecipients"):
        if isinstance(entry, dict):
            recipient = address_from_field(str(entry.get("emailAddress", "")))
            if recipient:
                records.append(
                    BounceRecord(
                        recipient=recipient, kind=KIND_BOUNCE, reason="feedback", hard=False,
                        message_id=message_id, feedback_type=feedback_type, reply_kind="complaint",
                    )
                )
    return records


def _deliveries(delivery: dict, message_id: str) -> list[BounceRecord]:
    response = smtp_text.collapse(str(delivery.get("smtpResponse", "")))
    status = smtp_text.find_status(response)
    records = []
    for value in _entries(delivery, "recipients"):
        recipient = address_from_field(str(value))
        if recipient:
            records.append(
                BounceRecord(
                    recipient=recipient, kind=KIND_BOUNCE, reason="delivered", hard=False, action="delivered",
                    status=status, diagnostic=response, message_id=message_id,
                    reply_code=smtp_text.find_reply_code(response), reply_kind="delivered",
                )
            )
    return records
