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


NULL_SENDER_NOTICE = b"""Return-Path: <>
From: <>
To: sender@example.com
Auto-Submitted: auto-replied
Message-Id: <notice@mx.example.net>

You sent mail to friend@example.net. That's not a valid user here.
"""


def test_a_plain_notice_from_the_null_sender_saying_why_is_a_bounce():
    records = parse_bytes(NULL_SENDER_NOTICE).records
    assert [record.recipient for record in records] == ["friend@example.net"]


def test_a_null_sender_notice_without_a_failure_is_not_a_bounce():
    raw = NULL_SENDER_NOTICE.replace(b"That's not a valid user here.", b"Thanks, we got it.")
    assert parse_bytes(raw).records == []
