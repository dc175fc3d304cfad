"""parse_bytes on real bounces from the shared corpus: DSNs, ARF reports, non-standard bounces.

Expected recipients and reasons come from the corpus labels, so these tests check the parser
against an independent opinion, one message kind at a time.
"""

from __future__ import annotations

import pytest

from bounce_parser import KIND_ARF, KIND_BOUNCE, KIND_DSN, KIND_NONE, parse_bytes, parse_mbox, split_mbox


def _recipients(result) -> list[str]:
    return sorted(record.recipient for record in result.records)


def _labelled(labels, name) -> list[str]:
    return sorted(label["recipient"].strip("<>").lower() for label in labels[name])


# One sample per kind of message; the reason the labels give is the one the parser must give.
AGREEING_SAMPLES = [
    "maildir/bsd/lhost-postfix-33.eml",  # Postfix DSN, user unknown
    "maildir/bsd/rhost-outlook-04.eml",  # Hotmail DSN, two recipients, two reasons
    "maildir/bsd/lhost-sendmail-07.eml",  # Sendmail DSN, relaying denied
    "maildir/bsd/lhost-exchange2007-03.eml",  # Exchange DSN, recipient size limit
    "maildir/bsd/lhost-office365-01.eml",  # Office 365, RecipientNotFound
    "maildir/bsd/rhost-gsuite-04.eml",  # Google Workspace, DNS failure
    "maildir/dos/lhost-messagelabs-01.eml",  # MessageLabs, SMTP AUTH demanded
    "maildir/bsd/lhost-amazonses-20.eml",  # Amazon SES DSN, disabled account
    "maildir/bsd/lhost-courier-04.eml",  # Courier, no such domain
    "maildir/bsd/lhost-domino-02.eml",  # Domino, Japanese wording
    "maildir/bsd/lhost-qmail-17.eml",  # qmail, two recipients, two reasons
    "maildir/bsd/lhost-exim-08.eml",  # Exim, retry time exceeded
    "maildir/bsd/lhost-gmail-01.eml",  # old Gmail text bounce with X-Failed-Recipients
    "maildir/bsd/lhost-exchange2003-02.eml",  # Exchange 2003 text bounce, two recipients
    "maildir/bsd/lhost-yahoo-09.eml",  # Yahoo text bounce, no MX
    "maildir/bsd/lhost-notes-03.eml",  # Lotus Notes, reason before the address
    "maildir/bsd/lhost-mailmarshal-02.eml",  # MailMarshal, reason above the address list
    "maildir/bsd/lhost-x4-01.eml",  # qmail-like, full mail folder
    "maildir/bsd/lhost-kddi-02.eml",  # KDDI, sender-less phrasing
    "maildir/bsd/lhost-amazonses-09.eml",  # SES JSON notification, bounce
    "maildir/bsd/lhost-amazonses-12.eml",  # SES JSON notification, delivery
    "maildir/bsd/lhost-googlegroups-07.eml",  # Google Groups, non-English text
    "maildir/bsd/rfc3834-02.eml",  # out-of-office auto-reply
]


@pytest.mark.parametrize("name", AGREEING_SAMPLES)
def test_recipients_and_reasons_agree_with_the_labels(sample, labels, name):
    result = parse_bytes(sample(name))
    assert _recipients(result) == _labelled(labels, name)
    expected = {label["recipient"].strip("<>").lower(): label["reason"] for label in labels[name]}
    assert {record.recipient: record.reason for record in result.records} == expected


@pytest.mark.parametrize("newline", ["bsd", "dos", "mac"])
def test_line_endings_do_not_matter(sample, newline):
    names = ("lhost-postfix-01.eml", "rhost-outlook-01.eml")
    results = [parse_bytes(sample(f"maildir/{newline}/{name}")) for name in names]
    found = [(record.recipient, record.reason, record.status) for result in results for record in result.records]
    assert found == [
        ("r@p351355.pool.example.ne.jp", "mailererror", "5.1.1"),
        ("kijitora@example.jp", "mailboxfull", "5.2.2"),
    ]


def test_dsn_fields_are_extracted(sample, labels):
    name = "maildir/bsd/lhost-postfix-59.eml"
    [record] = parse_bytes(sample(name)).records
    [label] = labels[name]
    assert record.kind == KIND_DSN
    assert (record.action, record.status) == (label["action"], label["deliverystatus"])
    assert record.message_id == label["messageid"]
    assert record.remote_mta == "alt1.gmail-smtp-in.l.google.com"
    assert record.command == "RCPT"
    assert record.reply_code == 550
    # Gmail's per-recipient rate limit, worded over two reply lines.
    assert (record.reason, record.reply_kind, record.hard) == ("toomanyconn", "throttled", False)


def test_dsn_groups_in_unusual_field_order(sample):
    # Diagnostic-Code and Status come before Final-Recipient in this report.
    [record] = parse_bytes(sample("maildir/bsd/rhost-facebook-04.eml")).records
    assert (record.recipient, record.status, record.reason) == ("kijitora@facebook.com", "5.1.1", "userunknown")
    assert "Recipient address does not exist" in record.diagnostic


def test_dsn_with_original_recipient_after_final_recipient_is_one_recipient(sample):
    result = parse_bytes(sample("maildir/bsd/lhost-postfix-32.eml"))
    assert _recipients(result) == ['"neko....nyaan...."@libsisimai.org']


def test_hard_bounce_flags(sample):
    [unknown] = parse_bytes(sample("maildir/bsd/lhost-postfix-33.eml")).records
    [full] = parse_bytes(sample("maildir/bsd/rhost-apple-03.eml")).records
    assert (unknown.reason, unknown.hard, unknown.reply_kind) == ("userunknown", True, "hard")
    assert (full.reason, full.hard, full.reply_kind) == ("mailboxfull", False, "soft")


def test_arf_report(sample, labels):
    name = "maildir/bsd/arf-17.eml"
    result = parse_bytes(sample(name))
    assert result.kind == KIND_ARF
    assert _recipients(result) == _labelled(labels, name)
    for record in result.records:
        assert (record.reason, record.feedback_type, record.hard, record.kind) == ("feedback", "abuse", False, "arf")
        assert record.message_id == labels[name][0]["messageid"]


def test_arf_authentication_results_are_parsed(sample):
    [record] = parse_bytes(sample("maildir/bsd/arf-19.eml")).records
    assert record.feedback_type == "auth-failure"
    results = {(result.method, result.result) for result in record.authentication_results}
    assert ("dkim", "fail") in results
    assert ("spf", "pass") in results
    dkim = next(result for result in record.authentication_results if result.method == "dkim")
    assert ("header.d", "ietf.org") in dkim.properties


def test_arf_recipient_from_the_returned_message_when_the_report_names_none(sample, labels):
    name = "maildir/bsd/arf-19.eml"
    assert _recipients(parse_bytes(sample(name))) == _labelled(labels, name)


def test_microsoft_jmrp_complaint(sample, labels):
    name = "maildir/bsd/arf-22.eml"
    result = parse_bytes(sample(name))
    assert result.kind == KIND_ARF
    assert _recipients(result) == _labelled(labels, name)
    assert {result.method for result in result.records[0].authentication_results} >= {"spf", "dkim"}


def test_ses_complaint_notification_is_feedback(sample):
    [record] = parse_bytes(sample("maildir/bsd/lhost-amazonses-11.eml")).records
    assert (record.recipient, record.reason, record.feedback_type) == (
        "complaint@simulator.amazonses.com", "feedback", "abuse"
    )


def test_exim_unqualified_recipient_comes_from_x_failed_recipients(sample):
    [record] = parse_bytes(sample("maildir/bsd/lhost-exim-04.eml")).records
    assert record.recipient == "kijitora@example.ed.jp"
    assert record.kind == KIND_BOUNCE
    # Refused at MAIL FROM with a "use your ISP's server" text: the sending host is blocked.
    assert (record.command, record.reason) == ("MAIL", "blocked")


def test_message_id_of_the_original(sample, labels):
    for name in ("maildir/bsd/lhost-qmail-01.eml", "maildir/bsd/lhost-zoho-01.eml", "mailbox/mbox-1"):
        [record] = parse_mbox(sample(name))[0].records
        assert record.message_id == labels[name][0]["messageid"]


def test_mbox_holds_many_bounces(sample, labels):
    results = parse_mbox(sample("mailbox/mbox-0"))
    assert len(results) == len(split_mbox(sample("mailbox/mbox-0"))) == 37
    found = sorted(record.recipient for result in results for record in result.records)
    assert found == _labelled(labels, "mailbox/mbox-0")


@pytest.mark.parametrize("name", ["maildir/not/is-not-bounce-01.eml", "maildir/not/is-not-bounce-02.eml",
                                  "mailbox/size-0", "mailbox/size-1"])
def test_ordinary_mail_gives_nothing(sample, name):
    results = parse_mbox(sample(name))
    assert all(result.kind == KIND_NONE and not result.records for result in results)
