"""A field name with white space before its colon ("From :", RFC 5322 4.5's obsolete syntax).

RFC 6376 3.4.2 (relaxed) deletes the white space before the colon, so "From :" is a From field
and is signed as one. Mail::DKIM verifies such signatures; dkimpy does not (it keeps the space in
the field name, so h=from does not select the field). Found by fuzzing the header fix-ups
(tests/mta/test_fuzz_headers.py); the signer is kept as the RFC and Mail::DKIM read it.
"""

from __future__ import annotations

import pytest

from mta.compliance.dkim import DkimKeyConfig, DkimSigner, dns_record_value
from tests.compliance.verifiers import mail_dkim_results


@pytest.mark.parametrize("head", [b"From : a@example.com\r\nSubject: hi\r\n",
                                  b"From\t: a@example.com\r\nSubject  : hi\r\nTo:b@example.org\r\n"])
def test_mail_dkim_verifies_a_message_with_space_before_the_colon(rsa_keys, key_file, dns_server, head):
    signer = DkimSigner([DkimKeyConfig("example.com", "r1", key_file(rsa_keys[0], "r1.key"))])
    dns_server.txt("r1._domainkey.example.com", dns_record_value(rsa_keys[0]))
    msg = head + b"\r\nbody\r\n"
    field = signer.sign(msg, "example.com")
    assert b"h=from:from:subject:subject" in field.replace(b"\r\n\t", b"")
    assert mail_dkim_results(field + msg, dns_server) == ["pass"]
