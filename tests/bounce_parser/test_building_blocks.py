"""The pure helpers under parse_bytes: mbox splitting, MIME decoding, report fields, text scanning."""

from __future__ import annotations

import base64

from bounce_parser import parse_bytes, split_mbox
from bounce_parser.addresses import address_from_field, find_addresses
from bounce_parser.fields import group_fields
from bounce_parser.mime import decode_bytes, load_message, part_text
from bounce_parser.smtp_text import find_command, find_reply_code, find_status, join_continuations
from bounce_parser.textscan import scan, split_at_original


def test_mbox_split_on_from_lines_after_blank_lines():
    raw = (b"From a@example.org Thu Apr 29 23:34:45 2021\nSubject: one\n\nbody\nFrom here on, prose\n\n"
           b"From b@example.org Fri Apr 30 00:00:00 2021\nSubject: two\n\nsecond\n")
    messages = split_mbox(raw)
    assert [message.split(b"\n", 1)[0] for message in messages] == [b"Subject: one", b"Subject: two"]
    assert b"From here on, prose" in messages[0]


def test_mbox_with_crlf_and_cr_line_ends():
    crlf = b"From a 2021\r\nSubject: one\r\n\r\nx\r\n\r\nFrom b 2021\r\nSubject: two\r\n\r\ny\r\n"
    assert len(split_mbox(crlf)) == 2
    assert len(split_mbox(crlf.replace(b"\r\n", b"\r"))) == 2


def test_a_plain_message_is_its_own_single_message():
    assert split_mbox(b"Subject: x\n\nhi\n") == [b"Subject: x\n\nhi\n"]
    assert split_mbox(b"") == []


def test_decode_falls_back_without_losing_ascii():
    assert decode_bytes("caf\u00e9".encode(), "x-unknown") == "caf\u00e9"
    assert decode_bytes(b"\x1b$B\xff <a@b.example>", "iso-2022-jp").endswith("<a@b.example>")
    assert decode_bytes("\u3042".encode("iso-2022-jp"), "ISO-2022-JP") == "\u3042"


def test_part_text_decodes_transfer_encodings_and_html():
    html = base64.b64encode(b"<style>p{color:red}</style><p>User unknown</p>")
    message, defects = load_message(
        b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + html + b"\n"
    )
    assert defects == []
    assert part_text(message).strip() == "User unknown"


def test_bare_cr_line_ends_are_read():
    message, _ = load_message(b"Subject: x\rX-Failed-Recipients: a@b.example\r\rbody\r")
    assert message["X-Failed-Recipients"] == "a@b.example"


def test_report_fields_grouped_without_blank_lines_and_in_any_order():
    per_message, groups = group_fields(
        "Reporting-MTA: dns; mx.example\n\n"
        "Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\n"
        "Final-Recipient: rfc822; b@example.com\nOriginal-Recipient: rfc822; alias@example.com\n"
        "Action: delayed\nDiagnostic-Code: smtp; 450-first line\n450 second line\n"
    )
    assert per_message == {"reporting-mta": "dns; mx.example"}
    assert [group["final-recipient"] for group in groups] == ["rfc822; a@example.com", "rfc822; b@example.com"]
    assert groups[1]["original-recipient"] == "rfc822; alias@example.com"
    assert groups[1]["diagnostic-code"] == "smtp; 450-first line 450 second line"


def test_addresses_in_fields_and_text():
    assert address_from_field("RFC822; <Kiji.Tora@Example.COM>") == "kiji.tora@example.com"
    assert address_from_field('rfc822; "a b"@example.org') == '"a b"@example.org'
    assert address_from_field("rfc822;@relay.example:user@host") == ""
    assert find_addresses("x <a@b.example>, a@b.example. c@d.example") == ["a@b.example", "c@d.example"]


def test_smtp_facts_in_free_text():
    text = "host mx.example[192.0.2.1] said: 250 2.1.5 Ok ... 550 5.7.1 <a@b.example>: rejected (in reply to RCPT TO)"
    assert find_status(text) == "5.7.1"
    assert find_reply_code(text) == 550
    assert find_command(text) == "RCPT"
    assert find_status("IP 192.0.2.5 said no") == ""
    joined = join_continuations("550-5.1.1 The account 550-5.1.1 does not exist")
    assert joined == "550-5.1.1 The account does not exist"


def test_original_copy_is_cut_off_the_bounce_text():
    own, pasted = split_at_original(
        "<a@b.example>:\n550 no\n--- Below this line is a copy of the message.\nTo: x@y.example\n"
    )
    assert own == "<a@b.example>:\n550 no"
    assert pasted == "To: x@y.example\n"


def test_scan_skips_senders_and_takes_the_bracketed_address():
    text = ("A message sent by\n  <sender@example.org>\ncould not be delivered:\n"
            "  typo@example.com <real@example.com>: malformed address\n"
            "SMTP error from remote mail server after MAIL FROM:<sender@example.org>:\n")
    assert [found.address for found in scan(text, set())] == ["real@example.com"]


def test_scan_keeps_the_diagnostic_under_each_recipient():
    text = ("<a@example.com>:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 unknown\n\n"
            "<b@example.com>:\nRemote host said: 552 5.2.2 mailbox full\n")
    found = {item.address: item.diagnostic for item in scan(text, set())}
    assert found == {
        "a@example.com": "192.0.2.1 does not like recipient. Remote host said: 550 5.1.1 unknown",
        "b@example.com": "Remote host said: 552 5.2.2 mailbox full",
    }


def test_ordinary_mail_mentioning_addresses_is_not_a_bounce():
    raw = (b"From: Alice <alice@example.org>\nTo: bob@example.com\nSubject: lunch\n\n"
           b"Hi Bob, ask carol@example.net, she could not be delivered the memo.\n")
    assert parse_bytes(raw).records == []


def test_auto_reply_names_its_sender_as_away():
    raw = (b"From: Bob <bob@example.com>\nTo: alice@example.org\nSubject: Automatic reply: lunch\n"
           b"Auto-Submitted: auto-replied\n\nI am out of the office until Monday.\n")
    [record] = parse_bytes(raw).records
    assert (record.recipient, record.reason, record.hard) == ("bob@example.com", "vacation", False)
