"""DKIM signatures: what is signed, how, and that dkimpy agrees they verify."""

from __future__ import annotations

import dkim.canonicalization
import pytest

from mta.compliance.dkim import DkimKeyConfig, DkimSigner, dns_record_value
from mta.compliance.dkim.canon import relaxed_body, relaxed_header
from mta.compliance.dkim.signer import OVERSIGNED_HEADERS
from tests.compliance.messages import message
from tests.compliance.verifiers import dkimpy_results, signature_fields, tags

NOW = 1_795_500_000.0


def signer_for(configs: list[DkimKeyConfig], now: float = NOW) -> DkimSigner:
    return DkimSigner(configs, clock=lambda: now)


@pytest.fixture
def rsa_setup(rsa_keys, key_file):
    path = key_file(rsa_keys[0], "rsa.key")
    records = {"s1._domainkey.example.com": dns_record_value(rsa_keys[0])}
    return signer_for([DkimKeyConfig("example.com", "s1", path)]), records


def test_rsa_signature_verifies_with_dkimpy(rsa_setup):
    signer, records = rsa_setup
    msg = message(20_000)
    signed = signer.sign(msg, "example.com") + msg
    assert dkimpy_results(signed, records) == [True]


def test_ed25519_signature_verifies_with_dkimpy(ed25519_keys, key_file):
    path = key_file(ed25519_keys[0], "ed.key")
    signer = signer_for([DkimKeyConfig("example.com", "e1", path, "ed25519-sha256")])
    msg = message()
    headers = signer.sign(msg, "example.com")
    assert tags(headers)["a"] == "ed25519-sha256"
    assert dkimpy_results(headers + msg, {"e1._domainkey.example.com": dns_record_value(ed25519_keys[0])}) == [True]


def test_signature_field_tags(rsa_setup):
    signer, _records = rsa_setup
    field = signer.sign(message(), "example.com")
    found = tags(field)
    assert found["v"] == "1" and found["a"] == "rsa-sha256" and found["c"] == "relaxed/relaxed"
    assert found["d"] == "example.com" and found["s"] == "s1"
    assert found["t"] == str(int(NOW))
    assert len(found["bh"]) == 44 and found["b"]


def test_from_and_subject_are_over_signed(rsa_setup):
    signer, _records = rsa_setup
    names = tags(signer.sign(message(), "example.com"))["h"].split(":")
    assert names.count("from") == 2 and names.count("subject") == 2
    assert names.count("to") == 1 and names.count("date") == 1 and names.count("message-id") == 1
    assert "x-mailer" not in names          # not in the signed list
    assert "cc" not in names                # absent headers are not listed, except the over-signed
    assert set(OVERSIGNED_HEADERS) == {"from", "subject"}


def test_absent_subject_is_still_listed_so_none_can_be_added(rsa_setup):
    signer, records = rsa_setup
    msg = message().replace(b"Subject: Our  autumn\r\n  sale starts today\r\n", b"")
    headers = signer.sign(msg, "example.com")
    assert tags(headers)["h"].split(":").count("subject") == 1
    assert dkimpy_results(headers + msg, records) == [True]
    assert dkimpy_results(headers + b"Subject: added later\r\n" + msg, records) == [False]


def test_list_unsubscribe_headers_are_signed(rsa_setup):
    signer, records = rsa_setup
    extra = (b"List-Unsubscribe: <https://u.example.com/u/abc>,\r\n <mailto:unsub-abc@bounces.example.com>\r\n"
             b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    msg = message(extra_headers=extra)
    headers = signer.sign(msg, "example.com")
    names = tags(headers)["h"].split(":")
    assert "list-unsubscribe" in names and "list-unsubscribe-post" in names
    assert dkimpy_results(headers + msg, records) == [True]
    changed = msg.replace(b"u.example.com/u/abc", b"u.example.com/u/abd")
    assert dkimpy_results(headers + changed, records) == [False]


@pytest.mark.parametrize("added", [b"From: Mallory <mallory@example.org>\r\n", b"Subject: Urgent: verify now\r\n"])
def test_adding_a_second_from_or_subject_breaks_the_signature(rsa_setup, added):
    signer, records = rsa_setup
    msg = message()
    headers = signer.sign(msg, "example.com")
    assert dkimpy_results(headers + msg, records) == [True]
    assert dkimpy_results(headers + added + msg, records) == [False]


def test_changed_body_breaks_the_signature(rsa_setup):
    signer, records = rsa_setup
    msg = message()
    headers = signer.sign(msg, "example.com")
    assert dkimpy_results(headers + msg.replace(b"line 00003", b"line 00004"), records) == [False]


def test_rotation_two_selectors_give_two_signatures_that_both_verify(rsa_keys, key_file):
    old, new = key_file(rsa_keys[0], "old.key"), key_file(rsa_keys[1], "new.key")
    signer = signer_for([DkimKeyConfig("example.com", "2026a", old), DkimKeyConfig("example.com", "2026b", new)])
    msg = message()
    headers = signer.sign(msg, "example.com")
    assert [tags(f)["s"] for f in signature_fields(headers)] == ["2026a", "2026b"]
    records = {"2026a._domainkey.example.com": dns_record_value(rsa_keys[0]),
               "2026b._domainkey.example.com": dns_record_value(rsa_keys[1])}
    assert dkimpy_results(headers + msg, records) == [True, True]
    # While DNS still lacks the new selector, the old signature alone carries the message.
    only_old = {k: v for k, v in records.items() if k.startswith("2026a")}
    assert dkimpy_results(headers + msg, only_old) == [True, False]


def test_rsa_and_ed25519_sign_together(rsa_keys, ed25519_keys, key_file):
    signer = signer_for([DkimKeyConfig("example.com", "r1", key_file(rsa_keys[0], "r.key")),
                         DkimKeyConfig("example.com", "e1", key_file(ed25519_keys[0], "e.key"))])
    msg = message(20_000)
    headers = signer.sign(msg, "example.com")
    fields = signature_fields(headers)
    assert [tags(f)["a"] for f in fields] == ["rsa-sha256", "ed25519-sha256"]
    assert tags(fields[0])["bh"] == tags(fields[1])["bh"]       # one body hash for both
    records = {"r1._domainkey.example.com": dns_record_value(rsa_keys[0]),
               "e1._domainkey.example.com": dns_record_value(ed25519_keys[0])}
    assert dkimpy_results(headers + msg, records) == [True, True]


def test_domain_without_key_is_left_unsigned(rsa_setup):
    signer, _records = rsa_setup
    assert signer.sign(message(), "other.example") == b""
    assert signer.sign(message(), "com") == b""


def test_subdomain_is_signed_with_the_parent_domain_key(rsa_setup):
    signer, records = rsa_setup
    msg = message().replace(b"news@example.com", b"news@mail.example.com")
    headers = signer.sign(msg, "Mail.Example.COM")
    assert tags(headers)["d"] == "example.com"
    assert dkimpy_results(headers + msg, records) == [True]


def test_signature_field_is_folded_with_crlf_and_short_lines(rsa_setup):
    signer, _records = rsa_setup
    field = signer.sign(message(), "example.com")
    assert field.startswith(b"DKIM-Signature: ") and field.endswith(b"\r\n")
    lines = field[:-2].split(b"\r\n")
    assert len(lines) > 3
    assert all(line.startswith(b"\t") for line in lines[1:])
    assert all(len(line) <= 78 for line in lines)
    assert b"\n" not in field.replace(b"\r\n", b"")


def test_bare_lf_message_is_signed_as_it_goes_on_the_wire(rsa_setup):
    """aiosmtplib sends bare LF and bare CR as CRLF; the signature must match that."""
    signer, records = rsa_setup
    msg = message()
    headers = signer.sign(msg.replace(b"\r\n", b"\n"), "example.com")
    assert dkimpy_results(headers + msg, records) == [True]


@pytest.mark.parametrize("body", [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"one line without an end",
    b"trailing blanks  \t \r\n\r\n \t\r\n",
    b"  leading\t\tand  inner   runs \r\n",
    b"a\r\n\r\nb\r\n\r\n",
    b"tab at end\t",
    b"x" + b" \t" * 100 + b"y\r\n" + b" " * 33 + b"\r\n\tz\r\n",
])
def test_relaxed_body_matches_dkimpy(body):
    assert relaxed_body(body) == dkim.canonicalization.Relaxed.canonicalize_body(as_sent(body))


def as_sent(body: bytes) -> bytes:
    """SMTP ends every message with CRLF (aiosmtplib adds one), so a last line always has one."""
    return body + b"\r\n" if body and not body.endswith(b"\r\n") else body


@pytest.mark.parametrize("raw", [
    b"Subject: plain",
    b"SUBJECT :  runs   of\t\tspace  \t",
    b"Subject:\r\n folded\r\n\tacross  lines ",
    b"X-Empty:",
    b"To:   a@example.net,\r\n    b@example.net",
])
def test_relaxed_header_matches_dkimpy(raw):
    name = raw.split(b":")[0].rstrip(b" ").lower()
    [(dkimpy_name, dkimpy_value)] = dkim.canonicalization.Relaxed.canonicalize_headers([raw.split(b":", 1)])
    assert relaxed_header(name, raw) == dkimpy_name + b":" + dkimpy_value


@pytest.mark.parametrize("body", [b"", b"only\r\n\r\n\r\n", b"no final crlf  ", b"x \t y\r\n \r\n"])
def test_edge_case_bodies_verify(rsa_setup, body):
    signer, records = rsa_setup
    msg = message(0).split(b"\r\n\r\n")[0] + b"\r\n\r\n" + body
    assert dkimpy_results(signer.sign(msg, "example.com") + as_sent(msg), records) == [True]
