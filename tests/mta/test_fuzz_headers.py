"""Fuzzing the header fix-ups of acceptance with hypothesis (issue 17, item 7).

What the submission handler does to a message between DATA and the spool, called directly
(`SubmissionHandler.build` and the pure functions under it): read the stream, tenant, From,
Message-ID and Date; remove the stream and tenant headers; add Received, Message-ID and Date;
add List-Unsubscribe / List-Unsubscribe-Post with a signed token; DKIM-sign last. The input is
what DATA lets through: any bytes with CRLF line ends only (a bare CR or LF is refused as SMTP
smuggling). Properties: nothing raises; the output keeps CRLF-only line ends; the stream and
tenant headers are gone; Message-ID and Date are there; a List-Unsubscribe we add carries a token
that verifies to the recipient; the DKIM signature verifies with dkimpy; the body is marked as going
on the wire unchanged exactly when it needs no dot-stuffing (mta.wireform).
"""

from __future__ import annotations

import email.utils
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import assume
from hypothesis import strategies as st

from mta.compliance.dkim import DkimKeyConfig, DkimSigner, dns_record_value
from mta.compliance.unsubscribe import UnsubscribeTokens
from mta.config import Config, _apply_defaults
from mta.metrics import Metrics
from mta.submission import headers as hdr
from mta.submission.addresses import check_recipient
from mta.submission.handler import SubmissionHandler
from mta.wireform import goes_as_is
from tests.support.fuzz import fuzz, fuzz_examples

NOW = 1_795_500_000.0
SIGNING_DOMAIN = "example.com"
_FIELD_START = re.compile(rb"(?im)^([!-9;-~]+)[ \t]*:")


@dataclass
class Acceptance:
    handler: SubmissionHandler
    tokens: UnsubscribeTokens
    records: dict[str, str]


@pytest.fixture(scope="module")
def acceptance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acceptance]:
    pytest.importorskip("nacl", reason="dkimpy needs PyNaCl to verify ed25519")
    key = ed25519.Ed25519PrivateKey.generate()
    path = Path(tmp_path_factory.mktemp("dkim")) / "ed.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    signer = DkimSigner([DkimKeyConfig(SIGNING_DOMAIN, "e1", str(path), "ed25519-sha256")], clock=lambda: NOW)
    cfg = Config()
    cfg.mta.hostname = "mta.example.com"
    cfg.inbound.bounce_domain = "bounces.example.com"
    cfg.unsubscribe.https_base = "https://unsub.example.com"
    cfg.submission.default_stream = "marketing"     # so most messages get List-Unsubscribe
    _apply_defaults(cfg)
    tokens = UnsubscribeTokens([b"fuzz-secret"], clock=lambda: NOW)

    async def accept(_msg: Any) -> Any:
        raise AssertionError("build only")

    handler = SubmissionHandler(cfg, accept, Metrics(), clock=lambda: NOW, signer=signer, unsubscribe_tokens=tokens)
    yield Acceptance(handler, tokens, {"e1._domainkey.example.com": dns_record_value(key)})


def crlf_only(data: bytes) -> bool:
    return data.count(b"\r\n") == data.count(b"\n") == data.count(b"\r")


def as_data(text: bytes) -> bytes:
    """What DATA could have let through: every line end CRLF, and the last line ended."""
    lines = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join(line + b"\r\n" for line in lines) if text else b""


_WSP_BEFORE_COLON = re.compile(rb"(?m)^[!-9;-~]+[ \t]+:")


def verifier_can_parse(data: bytes) -> bool:
    """False for a header block dkimpy refuses or reads its own way, whatever the signature: a stray
    line with no field name (the client sent a malformed message, and we sign what we got), or a
    field name with white space before its colon ("From :", RFC 5322's obsolete syntax). For the
    latter our signer follows RFC 6376 3.4.2 and Mail::DKIM agrees (tests/compliance/
    test_dkim_obsolete_syntax.py), while dkimpy keeps the space in the name and so skips the field.
    Also a vertical tab or form feed in the header: RFC 6376 squeezes and trims only SP and HTAB,
    as our signer does, but dkimpy (bytes.strip) and Mail::DKIM (Perl's \\s) trim them too at a
    value's end, and not always the same way: such a message fails at either verifier."""
    head = hdr.split_headers(data)[0]
    if _WSP_BEFORE_COLON.search(head) or b"\x0b" in head or b"\x0c" in head:
        return False
    try:
        dkim.rfc822_parse(data)
    except (dkim.MessageFormatError, IndexError):      # IndexError: dkimpy on a leading continuation line
        return False
    return True


def field_names(header_block: bytes) -> list[bytes]:
    return [m.group(1).lower() for m in _FIELD_START.finditer(header_block)]


# ---- strategies
line_bytes = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
names = st.sampled_from([b"From", b"To", b"Subject", b"Date", b"Message-ID", b"X-Stream", b"x-stream", b"X-STREAM ",
                         b"X-Tenant", b"x-tenant\t", b"List-Unsubscribe", b"List-Unsubscribe-Post", b"DKIM-Signature",
                         b"Received", b"MIME-Version", b"Content-Type", b"Reply-To", b"Cc", b"X-Anything"]) | \
    st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b":", b""))
values = line_bytes | st.sampled_from([
    b" user@example.com", b" \"Name\" <news@example.com>", b" <a@sub.example.com>", b" marketing", b" transactional",
    b" acme", b" <id@x>", b"", b" =?utf-8?B?w6k=?=", b" \xff\xfe", " \u00e9l\u00e8ve@\u00e9cole.example.com".encode()])


@st.composite
def structured_data(draw: st.DrawFn) -> bytes:
    """A header block of fields (folded, repeated, odd names and bytes), stray lines, a body."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["field", "field", "field", "fold", "garbage"]))
        if kind == "garbage":
            lines.append(draw(line_bytes))
        else:
            lines.append(draw(names) + b":" + draw(values))
            if kind == "fold":
                lines.extend(draw(st.sampled_from([b" ", b"\t", b"  \t"])) + draw(line_bytes)
                             for _ in range(draw(st.integers(1, 3))))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), b"From: " + draw(st.sampled_from(
            [b"news@example.com", b"x@sub.example.com", b"<a@EXAMPLE.COM>", b"other@example.org"])))
    body = draw(st.lists(line_bytes, max_size=6))
    text = b"\n".join(lines) + (b"\n\n" + b"\n".join(body) if draw(st.booleans()) else b"")
    return as_data(text)


helos = st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")) | st.sampled_from(
    ["", "client.example.net", "[192.0.2.1]", "x\r\ny", "\udcff"])
ascii_locals = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9_-]{1,10}){0,2}\Z")
# What aiosmtpd hands over under SMTPUTF8: the line decoded as UTF-8 with surrogateescape.
utf8_locals = st.text(min_size=1, max_size=20) | st.binary(min_size=1, max_size=30).map(
    lambda b: b.decode("utf-8", "surrogateescape"))
domains = st.from_regex(r"\A([a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\.){1,3}[a-z]{2,6}\Z") | st.sampled_from(
    ["example.com", "ÉCOLE.example", "xn--caf-dma.example"])


@st.composite
def recipient_lists(draw: st.DrawFn) -> tuple[list[str], bool]:
    smtputf8 = draw(st.booleans())
    rcpts = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        local = draw(utf8_locals if smtputf8 and draw(st.booleans()) else ascii_locals)
        address = f"{local}@{draw(domains)}"
        assume(check_recipient(address, smtputf8) is None)     # what RCPT would have accepted
        rcpts.append(address)
    return rcpts, smtputf8


def build(acceptance: Acceptance, data: bytes, helo: str, rcpts: list[str], smtputf8: bool, ssl: bool,
          authenticated: bool) -> Any:
    session = SimpleNamespace(peer=("127.0.0.1", 40000), host_name=helo, extended_smtp=True, ssl=ssl or None,
                              authenticated=authenticated, auth_data=None)
    # What the data reader found: CRLF-only here (see as_data), so only a line's leading period counts.
    content_as_is = not data.startswith(b".") and b"\n." not in data
    envelope = SimpleNamespace(content=data, mail_from="app@example.com", rcpt_tos=rcpts, smtp_utf8=smtputf8,
                               content_as_is=content_as_is)
    return acceptance.handler.build(session, envelope, NOW)


def check_message(acceptance: Acceptance, data: bytes, msg: Any, rcpts: list[str], verify_dkim: bool) -> None:
    body = msg.body
    assert crlf_only(body), body[:500]
    # A body marked as going on the wire unchanged really needs no stuffing; and one made from
    # content that needed none is marked, unless our own lines need some (then it must not be).
    content_as_is = not data.startswith(b".") and b"\n." not in data
    assert msg.body_as_is == (content_as_is and goes_as_is(body)), body[:500]
    head, _rest = hdr.split_headers(body)
    names_out = field_names(head)
    assert b"x-stream" not in names_out and b"x-tenant" not in names_out, head[:1000]
    assert names_out.count(b"received") >= 1 and b"message-id" in names_out and b"date" in names_out, head[:1000]
    if not hdr.read_facts(hdr.split_headers(data)[0], "X-Stream").message_id:     # we added one
        assert f"\r\nMessage-ID: {msg.header_message_id}\r\n".encode() in head, head[:1000]
    added_unsubscribe = b"list-unsubscribe" in names_out and not re.search(rb"(?im)^list-unsubscribe[ \t]*:", data)
    if added_unsubscribe:
        token = re.search(rb"https://unsub\.example\.com/u/([a-z2-7]+)>", head)
        assert token is not None, head[:1000]
        info = acceptance.tokens.verify(token.group(1).decode())
        assert info.recipient == rcpts[0] and len(rcpts) == 1 and info.tenant == msg.tenant
    if verify_dkim and body.startswith(b"DKIM-Signature:") and verifier_can_parse(data):   # ours: prepended last
        assert dkim.DKIM(body).verify(idx=0, dnsfunc=lambda name, timeout=5: acceptance.records.get(
            name.decode().rstrip("."), "").encode()), head[:2000]


def run_build(acceptance: Acceptance, data: bytes, helo: str, rcpt: tuple[list[str], bool], ssl: bool,
              authenticated: bool, verify_dkim: bool) -> None:
    rcpts, smtputf8 = rcpt
    msg = build(acceptance, data, helo, rcpts, smtputf8, ssl, authenticated)
    check_message(acceptance, data, msg, rcpts, verify_dkim)


# ---- properties
@fuzz_examples(quick=200, fuzz=20_000)
def test_arbitrary_crlf_data_is_accepted_with_crlf_only_headers(acceptance: Acceptance, max_examples: int,
                                                                  quick: bool) -> None:
    @fuzz(max_examples, quick, st.binary(max_size=3000).map(as_data), helos, recipient_lists(), st.booleans(),
          st.booleans())
    def check(data: bytes, helo: str, rcpt: tuple[list[str], bool], ssl: bool, authenticated: bool) -> None:
        run_build(acceptance, data, helo, rcpt, ssl, authenticated, verify_dkim=False)


@fuzz_examples(quick=250, fuzz=20_000)
def test_structured_headers_are_fixed_up_signed_and_verify(acceptance: Acceptance, max_examples: int,
                                                             quick: bool) -> None:
    @fuzz(max_examples, quick, structured_data(), helos, recipient_lists(), st.booleans(), st.booleans())
    def check(data: bytes, helo: str, rcpt: tuple[list[str], bool], ssl: bool, authenticated: bool) -> None:
        run_build(acceptance, data, helo, rcpt, ssl, authenticated, verify_dkim=True)


@fuzz_examples(quick=200, fuzz=40_000)
def test_the_pure_header_functions_never_raise_on_arbitrary_bytes(acceptance: Acceptance, max_examples: int,
                                                                    quick: bool) -> None:
    signer = acceptance.handler.builder.signer
    assert signer is not None

    @fuzz(max_examples, quick, st.binary(max_size=2000), st.text(st.characters(exclude_categories=()), max_size=40),
          st.sets(names.map(lambda n: n.strip().lower()), max_size=4))
    def check(raw: bytes, text: str, drop: set[bytes]) -> None:
        head, rest = hdr.split_headers(raw)
        assert head + rest == raw
        hdr.read_facts(head, "X-Stream")
        kept = hdr.remove_fields(head, drop)
        assert not set(field_names(kept)) & drop
        received = hdr.received_field(helo=text, client_ip="192.0.2.1", hostname="mta.example.com", protocol="ESMTP",
                                      queue_id="Q1", recipient=None, now=NOW)
        assert crlf_only(received) and received.endswith(b"\r\n")
        signature = signer.sign(raw, SIGNING_DOMAIN)
        assert crlf_only(signature) and signature.startswith(b"DKIM-Signature:")


def _from_domain_by_parseaddr(value: str) -> str:
    addr = email.utils.parseaddr(value)[1]
    return addr.rpartition("@")[2].lower().rstrip(">").strip() if "@" in addr else ""


from_values = st.text(st.sampled_from(list('aZ.-_+é @<>"(),:;[]\\ \t')), max_size=30) | st.builds(
    lambda name, local, domain: f"{name} <{local}@{domain}>", st.text(max_size=12), ascii_locals, domains)


@fuzz_examples(quick=400, fuzz=100_000)
def test_from_domain_agrees_with_parseaddr(max_examples: int, quick: bool) -> None:
    # hdr.from_domain reads the common forms itself and leaves the rest to email.utils.parseaddr.
    @fuzz(max_examples, quick, from_values)
    def check(value: str) -> None:
        assert hdr.from_domain(value) == _from_domain_by_parseaddr(value), value


def test_dates_are_formatted_once_a_second_as_email_utils_does() -> None:
    for t in (NOW, NOW + 0.25, NOW + 0.999999, NOW + 1.5, NOW + 86_400.01):
        assert hdr.rfc5322_date(t) == email.utils.formatdate(int(t), localtime=False)
