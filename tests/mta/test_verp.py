"""VERP return paths: encode/decode, forgery, aligned bounce subdomains."""

from __future__ import annotations

from mta.inbound.verp import BounceDomains, decode, encode

KEY = b"k" * 32


def test_round_trip_with_and_without_recipient():
    one = encode(KEY, "0123456789ABCDEF01", "User.Name+tag@Example.org", "bounces.test")
    assert one.startswith("b-0123456789abcdef01-") and one.endswith("-user.name+tag=example.org@bounces.test")
    info = decode(KEY, one, "bounces.test")
    assert info is not None and info.queue_id == "0123456789ABCDEF01" and info.recipient == "user.name+tag@example.org"
    many = encode(KEY, "0123456789ABCDEF01", None, "bounces.test")
    assert decode(KEY, many, "bounces.test").recipient == ""
    assert decode(KEY, many.upper(), "bounces.test") is not None   # some MTAs change the case


def test_forgeries_and_foreign_domains_are_refused():
    addr = encode(KEY, "0123456789ABCDEF01", "u@example.org", "bounces.test")
    qid_swapped = addr.replace("0123456789abcdef01", "0123456789abcdef02")
    rcpt_swapped = addr.replace("u=example.org", "victim=example.org")
    assert decode(KEY, qid_swapped, "bounces.test") is None
    assert decode(KEY, rcpt_swapped, "bounces.test") is None
    assert decode(b"other key", addr, "bounces.test") is None
    assert decode(KEY, addr.replace("@bounces.test", "@evil.test"), "bounces.test") is None
    assert decode(KEY, "postmaster@bounces.test", "bounces.test") is None


def test_long_recipient_falls_back_to_message_form():
    addr = encode(KEY, "0123456789ABCDEF01", "a" * 60 + "@example.org", "bounces.test")
    assert len(addr.split("@")[0]) <= 64
    assert decode(KEY, addr, "bounces.test").recipient == ""


def test_aligned_bounce_subdomain():
    domains = BounceDomains("bounces.test", "bounces")
    assert domains.for_sender("Sender.Example") == "bounces.sender.example"
    assert BounceDomains("bounces.test").for_sender("sender.example") == "bounces.test"
    addr = encode(KEY, "0123456789ABCDEF01", "u@example.org", domains.for_sender("sender.example"))
    assert addr.endswith("@bounces.sender.example")
    assert decode(KEY, addr, domains) is not None
    assert "bounces.test" in domains and "bounces.other.example" in domains
    assert "bounces" not in domains and "notbounces.example" not in domains
