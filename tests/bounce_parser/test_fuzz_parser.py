"""Fuzzing the bounce/DSN/ARF parser with hypothesis (issue 17, item 7).

Two sources of input: corpus samples (shared/corpus/bounces/samples, skipped when absent)
mutated byte-wise and structurally, and MIME trees built from scratch (multipart reports,
delivery-status and feedback-report parts, nested message/rfc822, lying charsets and transfer
encodings, every line-end style). Properties: `parse_bytes` and `parse_mbox` never raise, never
hide a parser exception (the "parser error" defect of the last-resort guard), give records of
the taxonomy only, and finish in bounded time.
"""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import strategies as st

from bounce_parser import KIND_ARF, KIND_BOUNCE, KIND_DSN, KIND_NONE, REASONS, parse_bytes, parse_mbox
from tests.support.fuzz import fuzz, fuzz_examples

SECONDS_PER_INPUT = 10.0       # generous: the machine is shared; a blow-up takes minutes, not seconds
KINDS = {KIND_DSN, KIND_ARF, KIND_BOUNCE, KIND_NONE}

TOKENS = [b"\n--", b"\r\n--", b"\nContent-Type: multipart/mixed; boundary=x\n\n--x\n", b"=?utf-8?B?", b"=?x?Q?=ff?=",
          b"\r", b"\x00", b"\nContent-Transfer-Encoding: base64\n", b"\nContent-Transfer-Encoding: quoted-printable\n",
          b'charset="x-bogus"', b"charset=utf-7", b"charset=iso-2022-jp", b"\nFinal-Recipient: rfc822; ",
          b"\nStatus: 5.1.1\n", b"\nStatus: 9.9.9999999999\n", b"\nAction: failed\n", b"\nDiagnostic-Code: smtp; 550 ",
          b"\nContent-Type: message/rfc822\n\n", b"\nContent-Type: message/delivery-status\n\n",
          b"\nContent-Type: message/feedback-report\n\n", b"\nFeedback-Type: abuse\n", b"<", b">", b"@", b"\"",
          b"\n\n", b"\t", b" " * 300, b"=\n", b"==", b"\xff\xfe", b"\xc3", "\u00e9\u4e2d\U0001f600".encode()]


def check_result(raw: bytes) -> None:
    started = time.perf_counter()
    results = [parse_bytes(raw), *parse_mbox(raw)]
    assert time.perf_counter() - started < SECONDS_PER_INPUT, f"{len(raw)} bytes took too long"
    for result in results:
        assert result.kind in KINDS, result.kind
        assert not any(d.startswith("parser error") for d in result.defects), result.defects
        for record in result.records:
            assert record.reason in REASONS, record.reason
            assert record.recipient == record.recipient.lower(), record.recipient
            assert isinstance(record.hard, bool)


def samples(corpus: Path) -> list[bytes]:
    files = sorted(p for p in (corpus / "samples").rglob("*") if p.is_file() and not p.name.startswith("."))
    return [p.read_bytes() for p in files]


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["byte", "delete", "repeat", "token", "truncate", "insert", "splice", "case"]))
        if op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 400))]
        elif op == "repeat":
            chunk = data[at:at + draw(st.integers(1, 400))]
            data[at:at] = chunk * draw(st.integers(1, 30))
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "splice":                    # a piece of another sample: parts from other reports
            other = draw(st.sampled_from(originals))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[at:at] = other[start:start + draw(st.integers(1, 4000))]
        else:
            data[at:at + 64] = data[at:at + 64].swapcase()
    return bytes(data)


# ---- MIME trees from scratch
header_names = st.sampled_from(["From", "To", "Subject", "Date", "Message-ID", "Content-Type", "MIME-Version",
                                "Content-Transfer-Encoding", "Final-Recipient", "Original-Recipient", "Action",
                                "Status", "Diagnostic-Code", "Remote-MTA", "Reporting-MTA", "Feedback-Type",
                                "Original-Mail-From", "Arrival-Date", "Auto-Submitted", "X-Failed-Recipients",
                                "Authentication-Results", "Return-Path", "X-Anything"]) | st.text(max_size=20)
header_values = (st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
                 | st.sampled_from(["rfc822; gone@example.com", "failed", "5.1.1", "4.7.28",
                                    "smtp; 550 5.1.1 no such user", "dns; mx.example.com", "abuse",
                                    "MAILER-DAEMON@example.net", "auto-replied", "=?utf-8?B?w6k=?=", "=?bogus?Q?x?=",
                                    "<a@b>", "<>", "spf=pass dkim=fail"]))
content_types = st.sampled_from(["text/plain", "text/html", "message/delivery-status", "message/global-delivery-status",
                                 "message/feedback-report", "message/rfc822", "text/rfc822-headers",
                                 "message/global-headers", "application/octet-stream", "multipart/report",
                                 "multipart/mixed", "multipart/alternative", "multipart/related", "", "x/y"])
encodings = st.sampled_from(["", "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus"])
charsets = st.sampled_from(["", "us-ascii", "utf-8", "iso-8859-1", "iso-2022-jp", "utf-16", "utf-7", "x-bogus",
                            "gb2312"])


def headers_block(draw: st.DrawFn) -> list[str]:
    lines = [f"{draw(header_names)}: {draw(header_values)}" for _ in range(draw(st.integers(0, 6)))]
    if draw(st.booleans()):
        lines.append(f"{draw(header_names)}: {draw(header_values)}\n\t{draw(header_values)}")   # folded
    return lines


@st.composite
def mime_part(draw: st.DrawFn, depth: int = 0) -> str:
    ctype = draw(content_types)
    lines = headers_block(draw)
    params = ""
    if ctype.startswith("multipart/"):
        boundary = draw(st.sampled_from(["b", "==B==", "x" * 70, "", '"q b"']) | st.text(max_size=10))
        params = f"; boundary=\"{boundary}\"" if draw(st.booleans()) else f"; boundary={boundary}"
        if ctype == "multipart/report":
            params += "; report-type=" + draw(st.sampled_from(["delivery-status", "feedback-report", "x"]))
        kids = [draw(mime_part(depth + 1)) if depth < 4 else "" for _ in range(draw(st.integers(0, 4)))]
        body = "".join(f"--{boundary}\n{kid}\n" for kid in kids)
        if draw(st.booleans()):
            body += f"--{boundary}--\n"
        body += draw(st.text(max_size=40))
    elif ctype in ("message/rfc822", "message/global") and depth < 5:
        body = draw(mime_part(depth + 1))
    elif ctype in ("message/delivery-status", "message/global-delivery-status", "message/feedback-report"):
        groups = ["\n".join(f"{draw(header_names)}: {draw(header_values)}" for _ in range(draw(st.integers(0, 6))))
                  for _ in range(draw(st.integers(0, 4)))]
        body = "\n\n".join(groups)
    else:
        body = draw(st.text(max_size=300) | st.sampled_from(["", "550 5.1.1 <gone@example.com> user unknown",
                                                             "This is an auto-reply.", "=\n=41=zz", "AAAA===="]))
    charset = draw(charsets)
    if charset:
        params += f"; charset={charset}"
    if ctype or params:
        lines.append(f"Content-Type: {ctype}{params}")
    encoding = draw(encodings)
    if encoding:
        lines.append(f"Content-Transfer-Encoding: {encoding}")
    return "\n".join(lines) + "\n\n" + body


@st.composite
def mime_message(draw: st.DrawFn) -> bytes:
    text = "From: " + draw(st.sampled_from(["MAILER-DAEMON@mx.example.net", "postmaster@example.com", "x"])) + "\n"
    text += draw(mime_part())
    raw = text.encode("utf-8", "surrogatepass")
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r", b"mixed"]))
    if newline == b"mixed":
        pieces = raw.split(b"\n")
        raw = b"".join(p + draw(st.sampled_from([b"\n", b"\r\n", b"\r"])) for p in pieces)
    elif newline != b"\n":
        raw = raw.replace(b"\n", newline)
    if draw(st.booleans()):
        raw = b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n" + raw + b"\nFrom x\n" + raw   # an mbox of two
    return raw


@fuzz_examples(quick=250, fuzz=60_000)
def test_mutated_corpus_samples_never_break_the_parser(corpus: Path, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, mutated(samples(corpus)))
    def check(raw: bytes) -> None:
        check_result(raw)


@fuzz_examples(quick=250, fuzz=40_000)
def test_arbitrary_mime_structures_never_break_the_parser(max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, mime_message())
    def check(raw: bytes) -> None:
        check_result(raw)


@fuzz_examples(quick=100, fuzz=20_000)
def test_arbitrary_bytes_never_break_the_parser(max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, st.binary(max_size=5000))
    def check(raw: bytes) -> None:
        check_result(raw)
