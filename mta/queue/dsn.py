"""RFC 3464 delivery status notifications, built as bytes. Pure: no I/O, time passed in.

A DSN goes from the null sender to the original envelope sender and carries a human-readable
part, the machine-readable message/delivery-status part, and the original message's headers
(text/rfc822-headers: enough to identify the message without returning its content).
"""

from __future__ import annotations

import email.utils
import secrets
from dataclasses import dataclass

_WRAP = 76


@dataclass(frozen=True, slots=True)
class RecipientReport:
    recipient: str
    action: str                 # "failed" or "delayed"
    status: str                 # enhanced status code, e.g. 5.1.1
    remote_mta: str = ""        # MX host name that answered, if any
    diagnostic: str = ""        # the remote reply ("550 5.1.1 no such user"), if any
    last_attempt: float = 0.0
    will_retry_until: float = 0.0


def _date(t: float) -> str:
    return email.utils.formatdate(t, localtime=False)


def _clean(text: str) -> str:
    """One line of printable ASCII: remote text must not be able to inject header fields."""
    return "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text).strip()


def build_dsn(*, reports: list[RecipientReport], original_sender: str, original_headers: bytes,
              queue_id: str, arrival: float, now: float, reporting_mta: str, dsn_queue_id: str) -> bytes:
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    delayed = all(r.action == "delayed" for r in reports)
    boundary = f"{dsn_queue_id}/{reporting_mta}/{secrets.token_hex(4)}"
    subject = ("Delivery Status Notification (Delay)" if delayed
               else "Undelivered Mail Returned to Sender")
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{original_sender}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{dsn_queue_id}.dsn@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "Content-Transfer-Encoding: 7bit",
    ]
    human = [
        f"This is the mail system at {reporting_mta}.",
        "",
    ]
    if delayed:
        human += ["Your message has not been delivered yet to the recipients below. The mail",
                  "system keeps trying; you do not need to send it again.", ""]
    else:
        human += ["Your message could not be delivered to the recipients below. This is a",
                  "permanent error; the mail system has given up.", ""]
    for r in reports:
        line = f"<{_clean(r.recipient)}>: "
        line += _clean(r.diagnostic) if r.diagnostic else f"status {r.status}"
        if r.remote_mta:
            line += f" (host {_clean(r.remote_mta)})"
        human += _wrap(line)
    status_fields = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Queue-ID: {queue_id}",
        f"Arrival-Date: {_date(arrival)}",
    ]
    per_recipient: list[str] = []
    for r in reports:
        per_recipient.append("")
        per_recipient.append(f"Final-Recipient: rfc822; {_clean(r.recipient)}")
        per_recipient.append(f"Original-Recipient: rfc822; {_clean(r.recipient)}")
        per_recipient.append(f"Action: {r.action}")
        per_recipient.append(f"Status: {r.status}")
        if r.remote_mta:
            per_recipient.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        if r.diagnostic:
            per_recipient.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        if r.last_attempt:
            per_recipient.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.action == "delayed" and r.will_retry_until:
            per_recipient.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
    parts = [
        "\r\n".join(head),
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "\r\n".join(human),
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        "\r\n".join(status_fields + per_recipient),
        "",
        f"--{boundary}",
        "Content-Description: Undelivered Message Headers",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    text = "\r\n".join(parts) + "\r\n"
    headers = original_headers if original_headers.endswith(b"\r\n") else original_headers + b"\r\n"
    return text.encode("ascii") + headers + f"\r\n--{boundary}--\r\n".encode("ascii")


def _wrap(line: str) -> list[str]:
    out = []
    while len(line) > _WRAP:
        cut = line.rfind(" ", 0, _WRAP)
        if cut <= 0:
            cut = _WRAP
        out.append(line[:cut])
        line = "    " + line[cut:].lstrip()
    out.append(line)
    return out
