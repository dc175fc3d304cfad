"""Hostile and broken input: the parser returns what it can and never raises.

The default run covers one case of each kind quickly; ``-m fuzz`` mutates corpus samples at
random for longer.
"""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path

import pytest

from bounce_parser import REASONS, parse_bytes, parse_mbox
from bounce_parser.mime import MAX_INPUT_BYTES

DSN = b"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: sender@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

<gone@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1 <gone@example.com>:
    Recipient address rejected: User unknown (in reply to RCPT TO command)

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; gone@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown

--B
Content-Type: message/rfc822

Message-ID: <original-1@example.org>
From: sender@example.org
To: gone@example.com
Subject: hello

hi
--B--
"""


def _only_record(raw: bytes):
    result = parse_bytes(raw)
    assert [record.recipient for record in result.records] == ["gone@example.com"]
    return result.records[0]


def test_the_well_formed_report_parses():
    record = _only_record(DSN)
    assert (record.reason, record.status, record.message_id) == ("userunknown", "5.1.1", "original-1@example.org")


@pytest.mark.parametrize(
    "raw", [b"", b" ", b"\n\n\n", b"\x00" * 4096, b"From \n", b"Content-Type: multipart/mixed\n\n"]
)
def test_degenerate_input_gives_nothing(raw):
    assert parse_mbox(raw) == [] or all(not result.records for result in parse_mbox(raw))


def test_binary_garbage_gives_nothing():
    rng = random.Random(7)
    garbage = bytes(rng.getrandbits(8) for _ in range(256 * 1024))
    result = parse_bytes(garbage)
    assert result.records == []


def test_truncated_report_keeps_what_arrived():
    cut = DSN[: DSN.index(b"Action: failed")]
    result = parse_bytes(cut)
    assert [record.recipient for record in result.records] == ["gone@example.com"]
    # Without Status and Diagnostic-Code the reason still comes from the human-readable part.
    assert result.records[0].reason == "userunknown"


def test_unknown_and_lying_charsets():
    unknown = DSN.replace(b"charset=us-ascii", b"charset=x-no-such-charset")
    assert _only_record(unknown).reason == "userunknown"
    # Declared ISO-2022-JP, but the bytes are not: the ASCII (addresses, codes) must survive.
    lying = (b"From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n"
             b"Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B\xff\xfe\x80 oops\n"
             b"<gone@example.com>:\n550 5.1.1 user unknown\n")
    assert _only_record(lying).status == "5.1.1"


def test_huge_attachment_is_not_read_whole():
    attachment = base64.encodebytes(bytes(8 * 1024 * 1024))
    raw = DSN.replace(
        b"--B\nContent-Type: message/rfc822",
        b"--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + attachment
        + b"\n--B\nContent-Type: message/rfc822",
    )
    assert len(raw) > MAX_INPUT_BYTES
    started = time.perf_counter()
    result = parse_bytes(raw)
    assert time.perf_counter() - started < 5
    assert [record.recipient for record in result.records] == ["gone@example.com"]
    assert "input truncated" in result.defects


def test_deeply_nested_multiparts_do_not_recurse_without_end():
    raw = b"From: MAILER-DAEMON@mx.example.net\nContent-Type: multipart/mixed; boundary=b0\n\n"
    raw += b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(5000))
    nested_messages = b"From: MAILER-DAEMON@mx.example.net\n" + b"Content-Type: message/rfc822\n\n" * 5000
    for hostile in (raw, nested_messages):
        started = time.perf_counter()
        result = parse_bytes(hostile)
        assert time.perf_counter() - started < 5
        assert result.records == []
        assert "repetitive input cut off" in result.defects


def test_a_report_with_thousands_of_recipients_is_capped():
    groups = b"".join(
        b"Final-Recipient: rfc822; user%d@example.com\nAction: failed\nStatus: 5.1.1\n\n" % index
        for index in range(5000)
    )
    raw = DSN.replace(
        b"Final-Recipient: rfc822; gone@example.com\n", groups + b"Final-Recipient: rfc822; x@y.example\n"
    )
    started = time.perf_counter()
    result = parse_bytes(raw)
    assert time.perf_counter() - started < 5
    assert 0 < len(result.records) <= 1000


def test_one_enormous_line_of_addresses():
    raw = b"From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\n" + b"a@b.example " * 100_000
    started = time.perf_counter()
    parse_bytes(raw)
    assert time.perf_counter() - started < 5


def _mutations(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if not data:
            break
        position = rng.randrange(len(data))
        if choice < 0.3:
            data[position] = rng.getrandbits(8)
        elif choice < 0.45:
            del data[position : position + rng.randint(1, 200)]
        elif choice < 0.6:
            chunk = data[position : position + rng.randint(1, 400)]
            data[position:position] = chunk * rng.randint(1, 20)
        elif choice < 0.7:
            data[position:position] = rng.choice(
                [b"\n--", b"\nContent-Type: multipart/mixed; boundary=x\n\n--x\n", b"=?utf-8?B?", b"\r", b"\x00",
                 b"\nContent-Transfer-Encoding: base64\n", b"charset=\"x-bogus\"", b"\nFinal-Recipient: rfc822; "]
            )
        elif choice < 0.8:
            data = data[: rng.randrange(len(data) + 1)]
        else:
            data[position:position] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    return bytes(data)


@pytest.mark.fuzz
def test_random_mutations_of_corpus_samples(corpus: Path):
    files = sorted(path for path in (corpus / "samples").rglob("*") if path.is_file())
    originals = [path.read_bytes() for path in files]
    rng = random.Random(20240229)
    for _ in range(5000):
        raw = _mutations(rng, rng.choice(originals))
        for result in parse_mbox(raw):
            assert not any(defect.startswith("parser error") for defect in result.defects), result.defects
            for record in result.records:
                assert record.reason in REASONS
                assert record.recipient == record.recipient.lower()
