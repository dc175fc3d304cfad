"""Bounces written for humans, in the shapes the common MTAs use (texts written for these tests)."""

from __future__ import annotations

from bounce_parser import KIND_BOUNCE, parse_bytes

EXIM_TWO_RECIPIENTS = b"""From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: alice@example.org
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: bob@example.com, carol@example.com

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bob@example.com
    host mx.example.com [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<bob@example.com>:
    550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table
  carol@example.com
    host mx.example.com [192.0.2.1]
    SMTP error from remote mail server after end of data:
    552 5.2.2 Mailbox quota exceeded

------ This is a copy of the message, including all the headers. ------

Return-path: <alice@example.org>
From: alice@example.org
To: bob@example.com, carol@example.com
Message-Id: <abc@example.org>
Subject: hi

hi
"""

POSTFIX_WITHOUT_REPORT = b"""From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
To: alice@example.org
Subject: Undelivered Mail Returned to Sender

This is the mail system at host mail.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

                   The mail system

<dave@example.com>: host mx.example.com[192.0.2.7] said: 554 5.7.1 Service
    unavailable; Client host [198.51.100.1] blocked using zen.spamhaus.org (in
    reply to RCPT TO command)

<erin@example.com>: connect to mx.example.com[192.0.2.8]:25: Connection timed out
"""

SENDMAIL_WITHOUT_REPORT = b"""From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
To: alice@example.org
Subject: Returned mail: see transcript for details

   ----- The following addresses had permanent fatal errors -----
<henry@example.com>
    (reason: 550 5.7.1 <henry@example.com>... Relaying denied)

   ----- Transcript of session follows -----
... while talking to mx.example.com.:
>>> RCPT To:<henry@example.com>
<<< 550 5.7.1 <henry@example.com>... Relaying denied
"""


def _found(raw: bytes) -> list[tuple[str, str, str, str]]:
    result = parse_bytes(raw)
    assert all(record.kind == KIND_BOUNCE for record in result.records)
    return [(record.recipient, record.reason, record.status, record.command) for record in result.records]


def test_exim_lists_each_recipient_with_its_own_reply():
    assert _found(EXIM_TWO_RECIPIENTS) == [
        ("bob@example.com", "userunknown", "5.1.1", "RCPT"),
        ("carol@example.com", "mailboxfull", "5.2.2", "DATA"),
    ]
    assert {record.message_id for record in parse_bytes(EXIM_TWO_RECIPIENTS).records} == {"abc@example.org"}


def test_postfix_text_without_a_report_part():
    assert _found(POSTFIX_WITHOUT_REPORT) == [
        ("dave@example.com", "blocked", "5.7.1", "RCPT"),
        ("erin@example.com", "expired", "", ""),
    ]
    assert parse_bytes(POSTFIX_WITHOUT_REPORT).records[0].remote_mta == "mx.example.com"


def test_sendmail_text_with_a_transcript():
    assert _found(SENDMAIL_WITHOUT_REPORT) == [("henry@example.com", "norelaying", "5.7.1", "RCPT")]


def test_delay_warnings_are_delayed_not_failed():
    warning = POSTFIX_WITHOUT_REPORT.replace(
        b"Subject: Undelivered Mail Returned to Sender", b"Subject: Delayed Mail (still being retried)"
    )
    assert {record.action for record in parse_bytes(warning).records} == {"delayed"}


def test_a_newsletter_about_an_undelivered_parcel_is_not_a_bounce():
    raw = (b"From: Shop <news@shop.example>\nTo: alice@example.org\nSubject: Your order could not be delivered\n\n"
           b"Dear customer, your parcel could not be delivered.\nUnsubscribe: unsub@shop.example\n")
    assert parse_bytes(raw).records == []
