"""Wording families (``wordings``) and the order of evidence in ``naming``, on made-up replies.

Each phrasing below is written for this test, in the shape servers use, not copied from a
corpus file: a family must recognise a reason however a server words it.
"""

from __future__ import annotations

import pytest

from bounce_parser import classify
from bounce_parser.naming import Evidence, reference_reason
from bounce_parser.wordings import first_reason, reasons_in


def _name(text: str, status: str = "", command: str = "", **extra) -> str:
    return reference_reason(Evidence(status=status, text=text, command=command, **extra))[0]


@pytest.mark.parametrize(("text", "reason"), [
    ("550 Recipient [bob@example.net] does not exist here", "userunknown"),
    ("550 bob@example.net is not a registered user of this service", "userunknown"),
    ("550 No mail-box here by that name", "userunknown"),
    ("550 BAD_DESTINATION mailbox", "userunknown"),
    ("550 Invalid username", "userunknown"),
    ("552 The mailbox of this user is currently full", "mailboxfull"),
    ("452 Mailbox storage limit reached", "mailboxfull"),
    ("550 User has too many messages in the mailbox", "mailboxfull"),
    ("554 Message size of 31000000 bytes exceeds the allowed size", "mesgtoobig"),
    ("550 This account is temporarily disabled", "suspend"),
    ("551 bob@example.net is a suspended account", "suspend"),
    ("553 Server is not configured to let you use it as a relay", "norelaying"),
    ("554 Sorry, that domain isn't in my list of allowed rcpthosts", "norelaying"),
    ("554 Your message scored too high on our anti-spam checks", "spamdetected"),
    ("550 Rejected: looks like bulk e-mail", "spamdetected"),
    ("554 Message refused: malicious attachment found", "virusdetected"),
    ("550 Client IP 192.0.2.9 is listed on a DNS block list", "blocked"),
    ("554 192.0.2.9 has been blacklisted", "blocked"),
    ("550 Message rejected because it violates our content policy", "policyviolation"),
    ("421 Too many simultaneous connections from your host", "toomanyconn"),
    ("Delivery failed after 14 attempts", "expired"),
])
def test_a_family_recognises_its_reason_however_worded(text, reason):
    assert _name(text, command="DATA" if reason in ("spamdetected", "virusdetected") else "RCPT") == reason


def test_a_sending_host_refused_to_relay_without_authentication_is_not_a_block():
    assert "blocked" not in reasons_in("192.0.2.1 is not permitted to relay without authentication")


def test_a_senders_address_is_not_the_recipients():
    assert first_reason("553 Sender address <a@example.org> unknown") == "rejected"


def test_a_postfix_host_line_is_not_a_block_of_our_server():
    text = "host mx.example.net[192.0.2.5] said: 550 Recipient address rejected (in reply to RCPT TO command)"
    assert _name(text, command="RCPT") == "userunknown"


def test_a_dns_failure_in_a_temporary_report_is_a_network_error():
    text = "DNS Error: lookup of example.net responded with NXDOMAIN. Domain name not found"
    assert _name(text, status="4.0.0", action="delayed") == "networkerror"
    assert _name("DNS Error: Domain name not found", status="5.0.0") == "hostunknown"


def test_the_reply_status_comes_before_the_reports_general_words():
    # "giving up" describes the whole report; this recipient's 4.4.4 says why it failed.
    evidence = Evidence(status="4.4.4", text="454 4.4.4 no route for domain", context=("", "giving up on it"))
    assert reference_reason(evidence)[0] == "networkerror"


def test_a_refused_mail_from_is_about_the_sender():
    assert _name("550 5.7.1 Access denied", command="MAIL") == "rejected"


def test_a_vague_status_with_nothing_said_is_onhold():
    assert _name("421 4.3.0 Upstream trouble") == "onhold"


def test_a_local_program_that_says_why_is_read_for_its_words():
    found = classify(status="5.2.2", text="The recipient mailbox has exceeded its disk space limit.",
                     diagnostic_type="X-Unix")
    assert found.reason == "mailboxfull"
    assert classify(status="5.0.0", text="procmail: No such user", diagnostic_type="X-Unix").reason == "mailererror"
