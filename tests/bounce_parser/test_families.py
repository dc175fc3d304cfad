"""Which system wrote a bounce (``families``), and how that changes the reason, on made-up bounces."""

from __future__ import annotations

import pytest

from bounce_parser import parse_bytes
from bounce_parser.families import detect, own_statement, vendor_reason


@pytest.mark.parametrize(("headers", "subject", "sender", "body", "family"), [
    ({"x-nai-header": "Modified by McAfee Email Gateway"}, "Delivery Status", "", "", "mcafee"),
    ({}, "Undeliverable message", "", "------- Failure Reasons --------\nUser not listed\n", "lotus-notes"),
    ({"x-mailer": "Internet Mail Service (5.5.2653.19)"}, "Undeliverable: hi", "", "", "exchange-ims"),
    ({"x-mailer": "<SMTP32 v8.12>"}, "Undeliverable Mail", "", "", "imail"),
    ({}, "Delivery Status Notification (Failure)", "Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "",
     "google"),
    ({}, "Delivery Status Notification (Failure)", "postmaster@mail.hotmail.com", "", "hotmail"),
    ({"reporting-mta": "dns; inbound-smtp.us-west-2.amazonaws.com"}, "", "", "", "ses-inbound"),
    ({}, "Undelivered Mail Returned to Sender", "MAILER-DAEMON@mx.example.net", "I'm sorry ...", ""),
])
def test_signatures(headers, subject, sender, body, family):
    assert detect(headers, subject, sender, body) == family


def test_vendor_categories_and_wordings():
    assert vendor_reason("", "bad-mailbox", "") == "userunknown"
    assert vendor_reason("", "Inactive-Mailbox", "") == "suspend"
    assert vendor_reason("", "other", "") == ""
    assert vendor_reason("interscan", "", "Reason: Unable to deliver message to <a@b.example> (and other "
                         "recipients in the same domain).") == "userunknown"
    assert vendor_reason("", "", "Unable to deliver message to <a@b.example> (and other recipients") == ""


def test_own_statement():
    body = "Your message to <a@example.com> was automatically rejected:\nQuota exceeded (mailbox for user is full)\n"
    assert own_statement("dovecot", body) == "Quota exceeded (mailbox for user is full)"
    assert own_statement("", body) == ""


def _dsn(*, diagnostic: str, status: str, extra_fields: str = "", prose: str = "The mail system\n",
         sender: str = "MAILER-DAEMON@mx.example.net") -> bytes:
    return f"""From: {sender}
To: sender@example.org
Subject: Delivery report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

{prose}
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; gone@example.com
Action: failed
Status: {status}
Diagnostic-Code: smtp; {diagnostic}
{extra_fields}
--B--
""".encode()


def test_powermta_category_names_the_reason():
    raw = _dsn(diagnostic="550 5.2.1 <gone@example.com>... User Unknown", status="5.2.1",
               extra_fields="X-PowerMTA-BounceCategory: bad-mailbox")
    [record] = parse_bytes(raw).records
    assert (record.reason, record.hard) == ("userunknown", True)
    # Without the category, a 5.2.1 "user unknown" without a command is a filter (soft).
    [plain] = parse_bytes(_dsn(diagnostic="550 5.2.1 <gone@example.com>... User Unknown", status="5.2.1")).records
    assert (plain.reason, plain.hard, plain.reply_kind) == ("filtered", False, "soft")


def test_dovecot_statement_outranks_the_generic_report_field():
    prose = "Your message to <gone@example.com> was automatically rejected:\nNot enough disk space\n"
    [record] = parse_bytes(_dsn(diagnostic="550 5.1.1 <gone@example.com>... User Unknown", status="5.1.1",
                                prose=prose)).records
    assert record.reason == "mailboxfull"


def test_relayed_reply_names_the_provider_by_its_remote_host():
    raw = _dsn(diagnostic="550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's "
                          "DMARC policy.", status="5.7.26",
               extra_fields="Remote-MTA: dns; gmail-smtp-in.l.google.com")
    [record] = parse_bytes(raw).records
    assert (record.reason, record.reply_kind, record.detail) == ("blocked", "auth", "authfailure")
