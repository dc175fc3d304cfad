"""The naming conventions of the reference labelling (``naming``), on synthetic replies.

Each case is a kind of reply, not a corpus file: the same conventions were observed on the
labelled corpus and on the labelling tool run over made-up messages.
"""

from __future__ import annotations

import pytest

from bounce_parser import classify, classify_reply
from bounce_parser.naming import Evidence, naming_status, reference_reason, status_name


def _name(text: str, status: str = "", command: str = "", **extra) -> str:
    return reference_reason(Evidence(status=status, text=text, command=command, **extra))[0]


@pytest.mark.parametrize(("status", "reason"), [
    ("5.1.1", "userunknown"), ("5.1.0", "userunknown"), ("5.1.2", "hostunknown"),
    ("5.2.1", "filtered"), ("4.2.1", "suspend"),  # the class changes the meaning
    ("5.2.2", "mailboxfull"), ("4.2.2", "mailboxfull"), ("5.2.3", "exceedlimit"), ("5.3.4", "mesgtoobig"),
    ("4.7.1", "blocked"), ("5.7.25", "blocked"), ("5.7.13", "suspend"), ("5.5.3", "toomanyconn"),
    ("5.0.0", ""), ("5.4.1", ""), ("5.7.1", ""),  # too generic to name anything on their own
])
def test_status_names(status, reason):
    assert status_name(status) == reason


def test_a_generic_status_falls_back_on_its_class():
    assert _name("550 5.7.1 Go elsewhere") == "securityerror"
    assert _name("554 5.6.0 Nope") == "contenterror"
    assert _name("550 5.0.0 Nope") == "onhold"


# In answer to MAIL FROM, the only address given was the sender's: its refusal is "rejected".
@pytest.mark.parametrize(("command", "reason"), [("RCPT", "userunknown"), ("DATA", "filtered"), ("", "filtered"),
                                                 ("MAIL", "rejected"), ("HELO", "blocked")])
def test_an_unknown_user_depends_on_the_command(command, reason):
    assert _name("550 User unknown", command=command) == reason


def test_an_unknown_user_status_is_trusted_unless_the_words_say_otherwise():
    assert _name("550 5.1.1 Nope", command="DATA") == "userunknown"
    assert _name("550 5.1.1 Message rejected as spam", command="DATA") == "userunknown"
    assert _name("550 5.1.1 Relay access denied") == "norelaying"


def test_mailbox_reasons_come_before_the_others():
    assert _name("552 5.2.2 User unknown", command="RCPT") == "mailboxfull"
    assert _name("550 5.1.1 Mailbox full") == "mailboxfull"
    assert _name("552 5.2.3 Message size exceeds fixed maximum message size") == "exceedlimit"
    assert _name("552 Message size exceeds fixed limit") == "mesgtoobig"


def test_content_judgements_need_the_content():
    # A spam verdict before the message was sent cannot be about its content.
    assert _name("550 5.2.0 Message rejected as spam", command="RCPT") == "filtered"
    assert _name("550 5.2.0 Message rejected as spam", command="DATA") == "spamdetected"
    assert _name("451 4.7.1 Message rejected as spam", command="RCPT") == "blocked"


def test_the_status_given_with_the_reply_wins_over_the_report_field():
    assert naming_status("5.1.1", "550 5.7.1 Nope") == "5.7.1"
    assert naming_status("5.1.3", "553 sorry, not in my list (#5.7.1)") == "5.7.1"
    assert naming_status("5.0.0", "5.1.0 - Unknown address error 550-'...'") == "5.0.0"
    assert naming_status("", "no code here") == ""


@pytest.mark.parametrize(("text", "reason"), [
    ("550 5.7.1 Email rejected per DMARC policy for example.org", "policyviolation"),
    ("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints",
     "blocked"),
    ("550 Bad SPF records for [example.org:192.0.2.2]", "blocked"),
    ("554 5.7.9 Header error", "policyviolation"),
    ("550 Please turn on SMTP Authentication. 192.0.2.1 is not permitted to relay without authentication.",
     "securityerror"),
    ("Connected to 192.0.2.1 but sender was rejected. Remote host said: 421 4.7.0 [TSS04] Messages deferred",
     "rejected"),
])
def test_wordings_the_labels_file_elsewhere(text, reason):
    assert _name(text) == reason


def test_provider_hosts_name_their_own_replies():
    dmarc = "550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy."
    assert _name(dmarc, remote_host="gmail-smtp-in.l.google.com") == "blocked"
    assert _name(dmarc, remote_host="mx.example.net") == "policyviolation"
    assert _name("550 DMARC check failed.", remote_host="mx3.qq.com") == "blocked"
    # docomo takes every known address at RCPT TO; a 550 after the message is a sender filter.
    assert _name("550 Unknown user x@docomo.ne.jp", command="DATA", remote_host="mfsmax.docomo.ne.jp") == "rejected"
    assert _name("550 Unknown user x@docomo.ne.jp", command="RCPT", remote_host="mfsmax.docomo.ne.jp") == "userunknown"


@pytest.mark.parametrize(("code", "reason"), [("OFR004_104", "toomanyconn"), ("LPN007_416", "userunknown"),
                                              ("OFR_506", "spamdetected"), ("LPN001_108", "undefined")])
def test_orange_codes(code, reason):
    assert _name(f"550 5.5.0 Service refuse. {code}") == reason


@pytest.mark.parametrize(("code", "reason"), [("RCP-P1", "userunknown"), ("RCP-P2", "filtered"),
                                              ("POL-P2", "blocked"), ("INT-P2", "mesgtoobig")])
def test_facebook_codes(code, reason):
    text = f"550 5.1.1 {code} http://postmaster.facebook.com/response_codes?ip=192.0.2.1#rcp Nope"
    assert _name(text) == reason


def test_recipient_preferences_alone_do_not_outweigh_an_unknown_user_status():
    assert _name("550 5.1.1 Refused due to recipient preferences") == "userunknown"
    assert _name("550 5.0.0 Refused due to recipient preferences") == "filtered"


@pytest.mark.parametrize(("number", "reason"), [(1000, "blocked"), (1310, "toomanyconn"), (1530, "mesgtoobig")])
def test_spectrum_codes(number, reason):
    text = f"550 5.1.0 sender rejected. See https://www.spectrum.net/support/internet/ AUP#In-{number}"
    assert _name(text) == reason
    # Without Spectrum's page or host, "AUP#" is just text and the status decides.
    assert _name(f"550 5.1.0 sender rejected AUP#In-{number}", remote_host="mx.example.net") == "userunknown"


def test_systems_that_look_the_address_up_themselves():
    # A gateway's own "no such user" is about the address, whatever the report says of the command.
    assert _name("550 Unknown user kijitora@example.org", family="mcafee") == "userunknown"
    assert _name("550 Unknown user kijitora@example.org") == "filtered"
    assert _name("550 5.2.1 User Unknown", vendor_category="bad-mailbox") == "userunknown"
    assert _name("550 Nope", vendor_category="quota-issues") == "mailboxfull"
    assert _name("550 5.1.1 Mailbox does not exist", family="ses-inbound") == "filtered"


def test_refused_at_helo_is_about_the_sending_host():
    assert _name("501 5.0.0 Invalid domain name", command="HELO") == "blocked"
    assert _name("550 Nope", command="CONN") == "blocked"


def test_a_delayed_report_without_words_expires():
    assert _name("", action="delayed") == "expired"
    assert _name("") == "undefined"


def test_naming_never_changes_the_policy_kind():
    for text, kind in [("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume",
                        "throttled"),
                       ("451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP "
                        "reputation.", "throttled"),
                       ("550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC "
                        "policy.", "auth"),
                       ("550 5.7.1 Email rejected per DMARC policy for example.org", "auth")]:
        for host in ("", "gmail-smtp-in.l.google.com", "x.olc.protection.outlook.com"):
            assert classify(text=text, remote_host=host).kind == kind
    assert classify_reply(421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail originating "
                          "from your IP address ... temporarily rate limited").kind == "throttled"
