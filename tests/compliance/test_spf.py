"""The SPF evaluator behind check-dns (RFC 7208), asking a real DNS server on loopback."""

from __future__ import annotations

import pytest

from mta.compliance.spf import spf_check
from mta.delivery.dnsroute import MxResolver, ResolverConfig

IP4 = "192.0.2.10"
IP6 = "2001:db8::10"


@pytest.fixture
def spf(dns_server):
    """spf(record or None, ip) -> (result, detail) for example.com, with a few helper names published."""
    dns_server.address("mail.example.com", IP4, IP6)
    dns_server.mx("example.com", (10, "mail.example.com"))
    dns_server.ptr(IP4, "mail.example.com")
    dns_server.txt("_spf.partner.test", "v=spf1 ip4:198.51.100.0/24 -all")
    resolver = MxResolver(ResolverConfig(nameservers=[dns_server.nameserver], timeout=1.0, lifetime=2.0))

    async def check(record: str | list[str] | None, ip: str = IP4) -> tuple[str, str]:
        records = [record] if isinstance(record, str) else record or []
        dns_server.txt("example.com", *records)
        result = await spf_check(ip, "example.com", resolver, helo="mail.example.com")
        return result.result, result.detail
    return check


@pytest.mark.parametrize("record, ip, expected", [
    ("v=spf1 ip4:192.0.2.0/24 -all", IP4, "pass"),
    ("v=spf1 ip4:192.0.2.10 -all", IP4, "pass"),
    ("v=spf1 ip4:192.0.2.11 -all", IP4, "fail"),
    ("v=spf1 ip4:192.0.2.0/24 ~all", "192.0.3.1", "softfail"),
    ("v=spf1 ?all", IP4, "neutral"),
    ("v=spf1", IP4, "neutral"),
    ("v=spf1 ip6:2001:db8::/32 -all", IP6, "pass"),
    ("v=spf1 ip6:2001:db8:1::/48 -all", IP6, "fail"),
    ("v=spf1 ip4:192.0.2.0/24 -all", IP6, "fail"),           # an IPv4 range never matches IPv6
    ("v=spf1 a:mail.example.com -all", IP4, "pass"),
    ("v=spf1 a:mail.example.com -all", IP6, "pass"),
    ("v=spf1 a:mail.example.com/24 -all", "192.0.2.99", "pass"),
    ("v=spf1 a:mail.example.com//64 -all", "2001:db8::ffff", "pass"),
    ("v=spf1 a -all", IP4, "fail"),                          # example.com itself has no address
    ("v=spf1 mx -all", IP4, "pass"),
    ("v=spf1 mx/30 -all", "192.0.2.9", "pass"),
    ("v=spf1 -mx +all", IP4, "fail"),
    ("v=spf1 ptr -all", IP4, "pass"),
    ("v=spf1 ptr:other.test -all", IP4, "fail"),
    ("v=spf1 include:_spf.partner.test -all", "198.51.100.7", "pass"),
    ("v=spf1 include:_spf.partner.test ~all", IP4, "softfail"),  # include's fail is just "no match"
    ("V=SPF1 IP4:192.0.2.10 -ALL", IP4, "pass"),
])
async def test_mechanisms_and_qualifiers(spf, record, ip, expected):
    result, _detail = await spf(record, ip)
    assert result == expected


async def test_detail_names_the_matching_term(spf):
    assert await spf("v=spf1 mx ip4:192.0.2.0/24 -all") == ("pass", "matched mx at example.com")
    assert await spf("v=spf1 -all") == ("fail", "matched -all at example.com")


async def test_redirect_is_followed_when_nothing_matches(spf, dns_server):
    dns_server.txt("_spf.example.net", "v=spf1 ip4:192.0.2.0/24 -all")
    assert await spf("v=spf1 ip4:203.0.113.1 redirect=_spf.example.net") == \
        ("pass", "matched ip4:192.0.2.0/24 at _spf.example.net")
    # an all mechanism decides before redirect
    assert (await spf("v=spf1 -all redirect=_spf.example.net"))[0] == "fail"


async def test_redirect_to_a_domain_without_spf_is_a_permerror(spf):
    assert await spf("v=spf1 redirect=nospf.example.net") == \
        ("permerror", "example.com: redirect=nospf.example.net has no SPF record")


async def test_include_of_a_domain_without_spf_is_a_permerror(spf):
    result, detail = await spf("v=spf1 include:nospf.example.net -all")
    assert result == "permerror" and "include:nospf.example.net" in detail


async def test_no_record_is_none_and_two_records_are_a_permerror(spf):
    assert (await spf(None))[0] == "none"
    assert await spf(["v=spf1 -all", "v=spf1 +all"]) == ("permerror", "example.com has 2 SPF records (one allowed)")
    assert (await spf(["v=spf10 -all", "something else"]))[0] == "none"


@pytest.mark.parametrize("record", ["v=spf1 ip4:not-an-ip -all", "v=spf1 frobnicate -all", "v=spf1 ip4:2001:db8::1",
                                    "v=spf1 redirect=a.test redirect=b.test", "v=spf1 a:%{z}.example.com -all"])
async def test_syntax_errors_are_permerrors(spf, record):
    assert (await spf(record))[0] == "permerror"


async def test_more_than_ten_lookups_is_a_permerror(spf, dns_server):
    for i in range(11):
        dns_server.txt(f"l{i}.example.net", f"v=spf1 include:l{i + 1}.example.net")
    dns_server.txt("l11.example.net", "v=spf1 ip4:192.0.2.0/24")
    result, detail = await spf("v=spf1 include:l2.example.net -all")
    assert result == "pass"                                   # include l2 .. include l11: 10 lookups
    result, detail = await spf("v=spf1 include:l1.example.net -all")
    assert (result, detail) == ("permerror", "more than 10 DNS-querying terms (RFC 7208 4.6.4)")


async def test_more_than_two_void_lookups_is_a_permerror(spf):
    record = "v=spf1 a:n1.example.net a:n2.example.net a:n3.example.net ip4:192.0.2.10 -all"
    assert await spf(record) == ("permerror", "more than 2 lookups found nothing (RFC 7208 4.6.4)")
    assert (await spf("v=spf1 a:n1.example.net a:n2.example.net ip4:192.0.2.10 -all"))[0] == "pass"


async def test_exists_with_macros(spf, dns_server):
    dns_server.address("10.2.0.192.allow.example.com", "127.0.0.2")
    assert (await spf("v=spf1 exists:%{ir}.allow.%{d} -all"))[0] == "pass"
    assert (await spf("v=spf1 exists:%{ir}.allow.%{d} -all", "192.0.2.11"))[0] == "fail"
    dns_server.address("postmaster.example.com.senders.example.com", "127.0.0.2")
    assert (await spf("v=spf1 exists:%{l}.%{o}.senders.%{d2} -all"))[0] == "pass"


async def test_dns_failure_is_a_temperror(spf, dns_server):
    dns_server.servfail("_spf.partner.test")
    result, _detail = await spf("v=spf1 include:_spf.partner.test -all")
    assert result == "temperror"
