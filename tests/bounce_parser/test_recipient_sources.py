"""Where recipients come from: the report's own parts and words, never the returned message."""

from __future__ import annotations

from bounce_parser import parse_bytes

DSN = b"""From: MAILER-DAEMON@mx.example.org
To: sender@example.com
Subject: Undeliverable: hello
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="XX"

--XX
Content-Type: text/plain

Delivery has failed to these recipients or groups.

--XX
Content-Type: message/delivery-status

Reporting-MTA: dns;mx.example.org
%s
--XX
Content-Type: message/rfc822

From: sender@example.com
To: list@lists.example.net, friend@example.net
Cc: one@example.net,
    two@example.net
Subject: hello

hi
--XX--
"""

RECIPIENT_GROUP = b"""
Final-Recipient: rfc822;friend@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp;550 5.1.1 User unknown
"""


def test_a_report_that_starts_with_blank_lines_is_parsed():
    raw = b"\n   \n" + DSN % RECIPIENT_GROUP
    assert [record.recipient for record in parse_bytes(raw).records] == ["friend@example.net"]


def test_a_report_naming_nobody_does_not_report_the_returned_messages_recipients():
    assert parse_bytes(DSN % b"").records == []


def test_only_the_dsn_recipient_is_reported_not_the_returned_to_and_cc():
    assert [record.recipient for record in parse_bytes(DSN % RECIPIENT_GROUP).records] == ["friend@example.net"]


TEXT_DELAY = b"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: sender@example.com
Subject: Delivery Status Notification (Delay)

This is an automatically generated Delivery Status Notification

THIS IS A WARNING MESSAGE ONLY.

Delivery to the following recipient has been delayed:

     friend@example.net

Message will be retried for 2 more day(s)

Received: by 10.0.0.1 with SMTP id x; Mon, 5 Jul 2010 05:57:13 -0700
Message-ID: <abc@example.com>
From: sender@example.com
To: friend@example.net
Cc: one@example.net,
    two@example.net,
    three@example.net
Subject: hello
"""


def test_a_pasted_header_block_gives_no_recipients():
    records = parse_bytes(TEXT_DELAY).records
    assert [record.recipient for record in records] == ["friend@example.net"]
    assert records[0].action == "delayed"
