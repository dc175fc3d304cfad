"""classify_reply: synchronous SMTP replies, including the large providers' own wordings."""

from __future__ import annotations

import pytest

from bounce_parser import FINER_REASONS, REASONS, classify, classify_reply

# (code, status, text, reason, kind, detail) - wordings from shared/reference/isp-replies.md.
# ``kind`` and ``detail`` are what the warm-up policy acts on (the reference's meaning);
# ``reason`` is the taxonomy name the labelled corpus gives such a reply, which differs where
# the labels file a throttle under "blocked" (TSS04, 4.7.650) or a busy server under
# "systemerror" (4.7.500).
PROVIDER_REPLIES = [
    # Google
    (421, "4.7.28", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating "
     "from your IP address. To protect our users from spam, mail sent from your IP address has been "
     "temporarily rate limited.", "toomanyconn", "throttled", "speeding"),
    (421, "4.7.0", "Try again later, closing connection. (EHLO) x1-20020a.5 - gsmtp", "blocked", "throttled",
     "speeding"),
    (450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents additional "
     "messages from being delivered.", "toomanyconn", "throttled", "speeding"),
    (550, "5.7.1", "Our system has detected an unusual rate of unsolicited mail originating from your IP "
     "address. To protect our users from spam, mail sent from your IP address has been blocked.",
     "blocked", "blocked", "badreputation"),
    (550, "5.7.28", "There is an unusual volume of mail from your sending IP.", "blocked", "blocked", "badreputation"),
    (550, "5.7.1", "Our system has detected that this message is likely unsolicited mail.", "spamdetected", "soft", ""),
    (550, "5.7.26", "This mail has been blocked because the sender is unauthenticated.", "securityerror", "auth",
     "authfailure"),
    (550, "5.7.27", "The sender's SPF check did not pass.", "securityerror", "auth", "authfailure"),
    (550, "5.7.30", "DKIM check did not pass.", "securityerror", "auth", "authfailure"),
    (550, "5.7.32", "The From: header is not aligned with the authenticated domains.", "securityerror", "auth",
     "authfailure"),
    (421, "4.7.26", "Unauthenticated email from example.com is not accepted.", "securityerror", "auth",
     "authfailure"),
    (550, "5.7.25", "The IP address sending this message does not have a PTR record setup.", "blocked", "blocked",
     "requireptr"),
    (550, "5.1.1", "The email account that you tried to reach does not exist.", "userunknown", "hard", ""),
    (452, "4.2.2", "The email account that you tried to reach is over quota.", "mailboxfull", "soft", ""),
    # Yahoo / AOL
    (421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
     "complaints - 4.16.55.1", "blocked", "throttled", "speeding"),
    (421, "4.7.0", "[TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT "
     "succeed.", "blocked", "blocked", "badreputation"),
    (553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's "
     "list", "blocked", "blocked", "badreputation"),
    (553, "5.7.1", "[BL23] Connections not accepted from IP addresses on Spamhaus XBL", "blocked", "blocked",
     "badreputation"),
    (554, "5.7.9", "Message not accepted for policy reasons.", "policyviolation", "soft", ""),
    (550, "5.7.9", "This mail has been blocked because the sender's domain fails DMARC.", "securityerror",
     "auth", "authfailure"),
    # Microsoft
    (421, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
     "blocked", "throttled", "speeding"),
    (451, "4.7.650", "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
     "blocked", "throttled", "speeding"),
    (451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]. (AS761) [BN1NAM02FT012.eop]",
     "systemerror", "throttled", "speeding"),
    (421, "", "RP-001 (BAY004-MC1F41) Unfortunately, some messages from 192.0.2.1 weren't sent. Please try "
     "again. We have limits for how many messages can be sent per hour and per day.", "toomanyconn",
     "throttled", "speeding"),
    (550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet "
     "service provider since part of their network is on our block list (S3150).", "blocked", "blocked",
     "badreputation"),
    (550, "5.7.1", "Unfortunately, messages from [192.0.2.1] weren't sent. (S3140)", "blocked", "blocked",
     "badreputation"),
    (550, "5.7.511", "Access denied, banned sender[192.0.2.1].", "blocked", "blocked", "badreputation"),
    (550, "", "SC-001 (COL004-MC5F6) Mail rejected by Outlook.com for policy reasons.", "blocked", "blocked",
     "badreputation"),
    (550, "5.7.515", "Access denied, sending domain example.com does not meet the required authentication "
     "level.", "securityerror", "auth", "authfailure"),
    (550, "5.5.0", "Requested action not taken: mailbox unavailable (1234:5678)", "userunknown", "hard", ""),
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     "userunknown", "hard", ""),
]


@pytest.mark.parametrize(("code", "status", "text", "reason", "kind", "detail"), PROVIDER_REPLIES)
def test_provider_replies_have_their_documented_meaning(code, status, text, reason, kind, detail):
    found = classify_reply(code, status, text)
    assert (found.reason, found.kind, found.detail) == (reason, kind, detail)
    assert found.rule and found.reason_rule, "every decision names the rules that made it"


# Yahoo's answers to RCPT TO for an address that does not exist.
@pytest.mark.parametrize("text", ["delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0]",
                                  "1 Requested mail action aborted, mailbox not found"])
def test_yahoo_unknown_recipient_replies(text):
    found = classify_reply(554, "", text, command="RCPT")
    assert (found.reason, found.kind, found.hard) == ("userunknown", "hard", True)


def test_kind_keeps_the_policy_meaning_whatever_the_name():
    tss04 = classify_reply(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to "
                           "unexpected volume or user complaints")
    assert (tss04.reason, tss04.kind, tss04.detail, tss04.rule) == (
        "blocked", "throttled", "speeding", "yahoo-tss04-deferred")
    gmail_dmarc = classify_reply(550, "5.7.26", "Unauthenticated email from example.com is not accepted due to "
                                 "domain's DMARC policy.")
    assert (gmail_dmarc.reason, gmail_dmarc.kind, gmail_dmarc.detail) == ("policyviolation", "auth", "authfailure")
    # The same reply relayed from Google's own MX is filed as a block of the sender by the labels.
    from_gmail = classify(code=550, status="5.7.26", text="Unauthenticated email from example.com is not accepted "
                          "due to domain's DMARC policy.", remote_host="gmail-smtp-in.l.google.com")
    assert (from_gmail.reason, from_gmail.kind) == ("blocked", "auth")
    dmarc = classify_reply(550, "5.7.1", "Email rejected per DMARC policy for example.com")
    assert (dmarc.reason, dmarc.kind, dmarc.hard) == ("policyviolation", "auth", False)


GENERIC_REPLIES = [
    (550, "5.1.1", "<a@example.com>... User unknown", "userunknown"),
    (550, "5.1.2", "Host unknown", "hostunknown"),
    (552, "5.2.2", "Mailbox full", "mailboxfull"),
    (552, "5.3.4", "Message size exceeds fixed limit", "mesgtoobig"),
    (552, "5.2.3", "Message size exceeds fixed maximum message size", "exceedlimit"),
    (554, "5.7.1", "Relay access denied", "norelaying"),
    (554, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "blocked"),
    (550, "", "Message rejected: virus detected (Eicar-Test-Signature)", "virusdetected"),
    (550, "5.7.1", "Message content rejected, identified as spam", "spamdetected"),
    (550, "5.2.1", "The email account that you tried to reach is disabled.", "suspend"),
    (421, "4.3.2", "Too many connections from your host", "toomanyconn"),
    (530, "5.7.0", "Must issue a STARTTLS command first", "securityerror"),
    (550, "5.1.8", "Sender address rejected: Domain not found", "rejected"),
    (451, "4.3.0", "Temporary local problem: internal server error", "systemerror"),
    (452, "4.3.1", "Insufficient system storage", "systemfull"),
    (554, "5.4.6", "Too many hops", "networkerror"),
    (500, "5.5.2", "Syntax error, command unrecognized", "syntaxerror"),
    (554, "5.6.0", "Message headers are malformed", "contenterror"),
    (556, "5.1.10", "Recipient address has null MX", "notaccept"),
]


@pytest.mark.parametrize(("code", "status", "text", "reason"), GENERIC_REPLIES)
def test_common_wordings_and_status_codes(code, status, text, reason):
    assert classify_reply(code, status, text).reason == reason


def test_success_replies_are_delivered():
    found = classify_reply(250, "2.0.0", "OK queued as 12345")
    assert (found.reason, found.kind, found.hard, found.permanent) == ("delivered", "delivered", False, False)
    assert classify_reply(250, "", "ok").reason == "delivered"


def test_unknown_replies_fall_back_to_their_code_class():
    temporary = classify_reply(451, "", "Please come back some other time")
    permanent = classify_reply(554, "", "Go away")
    assert temporary.reason == permanent.reason == "onhold"
    assert (temporary.permanent, permanent.permanent) == (False, True)
    assert temporary.kind == permanent.kind == "soft"


def test_an_unknown_user_needs_the_status_or_the_command_to_say_so():
    text = "Recipient address rejected: User unknown in local recipient table"
    # In answer to RCPT TO, or with a status of the x.1.1 kind, the address does not exist.
    assert classify_reply(550, "", text, command="RCPT").reason == "userunknown"
    assert classify_reply(550, "5.1.1", text).reason == "userunknown"
    # After the message was sent, or without saying when, it is a recipient-side filter: soft.
    for command in ("DATA", ""):
        found = classify_reply(550, "", text, command=command)
        assert (found.reason, found.hard, found.kind) == ("filtered", False, "soft")
    # x.2.x is a mailbox refusing this message unless the reply answered RCPT TO.
    assert classify_reply(550, "5.2.1", "User unknown").reason == "filtered"
    assert classify_reply(550, "5.2.1", "User unknown", command="RCPT").reason == "userunknown"


def test_status_quoted_with_the_reply_beats_the_report_field():
    # The report says 5.1.1, the reply itself 5.7.1: the reply's words and status decide.
    assert classify(status="5.1.1", text="550 5.7.1 User unknown").reason == "filtered"
    assert classify(status="5.0.0", text="550 5.1.1 Nope").reason == "userunknown"


def test_status_is_found_in_the_text_when_not_given():
    assert classify_reply(550, "", "5.1.1 <x@example.org>: no").reason == "userunknown"
    assert classify_reply(421, "", "4.7.28 Gmail has detected an unusual rate").reason == "toomanyconn"


def test_only_address_level_reasons_are_hard():
    assert classify_reply(550, "5.1.1", "User unknown").hard is True
    assert classify_reply(550, "5.1.2", "Host unknown").hard is True
    # A permanent block is about the sending IP, not about the recipient.
    assert classify_reply(554, "5.7.1", "blocked using bl.spamcop.net").hard is False
    assert classify_reply(552, "5.2.2", "Mailbox full").hard is False
    assert classify_reply(556, "5.1.10", "null MX").hard is True
    assert classify_reply(456, "4.1.10", "null MX").hard is False


def test_the_smtp_command_changes_what_a_wording_is_about():
    # "no such user" in answer to MAIL FROM is about the sender, not the recipient.
    mail_from = classify_reply(550, "", "No such user here", command="MAIL")
    assert (mail_from.reason, mail_from.hard) == ("rejected", False)
    # A "user unknown" after the data was accepted is a filter: the address passed RCPT.
    assert classify_reply(550, "", "Unknown user", command="DATA").reason == "filtered"
    assert classify_reply(550, "", "Unknown user", command="RCPT").reason == "userunknown"
    # Refused at the greeting or HELO: about the sending host.
    assert classify_reply(554, "", "Invalid domain name", command="HELO").reason == "blocked"


def test_multiline_reply_prefixes_do_not_hide_a_wording():
    text = ("550-5.7.1 Our system has detected that this message is\n550-5.7.1 likely suspicious due to the "
            "very low reputation of the sending domain")
    assert classify_reply(550, "5.7.1", text).reason == "blocked"


def test_delayed_report_without_details_is_expired():
    assert classify(status="4.4.0", action="delayed").reason == "expired"


def test_local_delivery_program_exit_codes():
    assert classify(status="5.3.0", text="77", diagnostic_type="X-Unix").reason == "systemerror"
    assert classify(status="5.1.1", text="67", diagnostic_type="X-Unix").reason == "userunknown"
    assert classify(status="5.0.0", text="procmail: bad", diagnostic_type="X-Unix").reason == "mailererror"


# The policy class each finer name belongs to.
_KIND_OF_DETAIL = {"speeding": "throttled", "authfailure": "auth", "badreputation": "blocked", "requireptr": "blocked"}


def test_every_classification_uses_the_taxonomy():
    for code, status, text, *_ in PROVIDER_REPLIES + GENERIC_REPLIES:
        found = classify_reply(code, status, text)
        assert found.reason in REASONS
        # A finer name refines what the policy acts on, so it agrees with the kind, not the name.
        assert not found.detail or FINER_REASONS[found.detail] in REASONS
        assert not found.detail or _KIND_OF_DETAIL[found.detail] == found.kind


def test_classifier_never_raises_on_junk():
    for text in ("", "\x00" * 50, "5" * 10000, "550-" * 5000, "\ud800 broken surrogate"):
        assert classify_reply(550, "", text).reason in REASONS
