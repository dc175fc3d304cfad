"""MX resolution against a real DNS server on loopback (tests/support/dnsserver.py)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest

from mta.delivery.dnsroute import (
    MxHost,
    MxResolver,
    ResolverConfig,
    Route,
    RouteError,
    ordered_hosts,
    parse_nameserver,
)
from tests.support.dnsserver import DnsTestServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def shared_server() -> Iterator[DnsTestServer]:
    with DnsTestServer() as server:
        yield server


@pytest.fixture
def dns_server(shared_server: DnsTestServer) -> DnsTestServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_resolver(server: DnsTestServer, clock: FakeClock, **overrides: float) -> MxResolver:
    # Short timeouts keep the "server never answers" tests fast.
    settings: dict = {"timeout": 0.2, "lifetime": 0.5, **overrides}
    return MxResolver(ResolverConfig(nameservers=[server.nameserver], **settings), clock=clock)


@pytest.fixture
def resolver(dns_server: DnsTestServer, clock: FakeClock) -> MxResolver:
    return make_resolver(dns_server, clock)


def two_mx_domain(server: DnsTestServer, domain: str = "example.com", ttl: int = 300) -> None:
    server.mx(domain, (20, "mx2.example.net"), (10, "mx1.example.net"), ttl=ttl)
    server.address("mx1.example.net", "127.0.0.10", "::1", ttl=ttl)
    server.address("mx2.example.net", "127.0.0.11", ttl=ttl)


async def expect_route_error(resolver: MxResolver, domain: str) -> RouteError:
    with pytest.raises(RouteError) as caught:
        await resolver.resolve(domain)
    return caught.value


# -- routes -----------------------------------------------------------------------------------------


async def test_mx_hosts_come_in_preference_order_with_all_addresses(dns_server, resolver, clock):
    two_mx_domain(dns_server)

    route = await resolver.resolve("example.com")

    assert route == Route(
        domain="example.com",
        hosts=(MxHost("mx1.example.net", 10, ("127.0.0.10", "::1")),
               MxHost("mx2.example.net", 20, ("127.0.0.11",))),
        site_key="mx1.example.net,mx2.example.net",
        implicit=False,
        expires=clock.now + 300,
    )


async def test_equal_preferences_are_shuffled_but_never_jump_ahead(dns_server, resolver):
    dns_server.mx("example.com", (10, "a.example.net"), (10, "b.example.net"), (10, "c.example.net"),
                  (50, "backup.example.net"))
    for number, host in enumerate(["a", "b", "c", "backup"], start=1):
        dns_server.address(f"{host}.example.net", f"127.0.0.{number}")
    route = await resolver.resolve("example.com")

    orders = {tuple(h.name for h in ordered_hosts(route, random.Random(seed))) for seed in range(60)}

    assert len(orders) == 6                                   # every order of the three equals appears
    assert all(order[-1] == "backup.example.net" for order in orders)
    assert ordered_hosts(route, random.Random(7)) == ordered_hosts(route, random.Random(7))


async def test_domain_without_mx_but_with_address_is_its_own_implicit_mx(dns_server, resolver):
    dns_server.address("plain.example", "127.0.0.20", "::1")

    route = await resolver.resolve("plain.example")

    assert route.implicit
    assert route.hosts == (MxHost("plain.example", 0, ("127.0.0.20", "::1")),)
    assert route.site_key == "plain.example"


async def test_null_mx_is_a_permanent_5_1_10(dns_server, resolver):
    dns_server.null_mx("nomail.example")
    dns_server.address("nomail.example", "127.0.0.20")      # an address must not revive it

    error = await expect_route_error(resolver, "nomail.example")

    assert (error.permanent, error.status, error.reason) == (True, "5.1.10", "notaccept")


async def test_nxdomain_is_a_permanent_5_1_2(dns_server, resolver):
    error = await expect_route_error(resolver, "missing.example")

    assert (error.permanent, error.status, error.reason) == (True, "5.1.2", "hostunknown")
    assert "does not exist" in error.text


async def test_no_mx_and_no_address_is_a_permanent_5_1_2(dns_server, resolver):
    dns_server.txt("textonly.example", "v=spf1 -all")

    error = await expect_route_error(resolver, "textonly.example")

    assert (error.permanent, error.status, error.reason) == (True, "5.1.2", "hostunknown")


@pytest.mark.parametrize("behaviour", ["servfail", "refuse"])
async def test_server_failure_is_a_temporary_4_4_3(dns_server, resolver, behaviour):
    two_mx_domain(dns_server)
    getattr(dns_server, behaviour)("example.com")

    error = await expect_route_error(resolver, "example.com")

    assert (error.permanent, error.status, error.reason) == (False, "4.4.3", "networkerror")


async def test_unanswered_query_is_a_temporary_4_4_3_after_the_lifetime(dns_server, resolver):
    two_mx_domain(dns_server)
    dns_server.timeout("example.com")

    started = time.monotonic()
    error = await expect_route_error(resolver, "example.com")

    assert (error.permanent, error.status, error.reason) == (False, "4.4.3", "networkerror")
    assert "timeout" in error.text
    assert time.monotonic() - started < 2.0


async def test_mx_host_without_address_is_skipped(dns_server, resolver):
    dns_server.mx("example.com", (10, "gone.example.net"), (20, "noaddr.example.net"), (30, "ok.example.net"))
    dns_server.txt("noaddr.example.net", "exists, but has no A/AAAA")
    dns_server.address("ok.example.net", "127.0.0.12")

    route = await resolver.resolve("example.com")

    assert route.host_names == ("ok.example.net",)
    # The site stays the whole MX set, so a host that is briefly unresolvable does not split it.
    assert route.site_key == "gone.example.net,noaddr.example.net,ok.example.net"


async def test_mx_host_whose_lookup_fails_is_skipped(dns_server, resolver):
    two_mx_domain(dns_server)
    dns_server.servfail("mx1.example.net")

    route = await resolver.resolve("example.com")

    assert route.host_names == ("mx2.example.net",)


async def test_no_mx_host_with_an_address_is_temporary_and_says_why(dns_server, resolver):
    dns_server.mx("example.com", (10, "gone.example.net"), (20, "broken.example.net"))
    dns_server.servfail("broken.example.net")

    error = await expect_route_error(resolver, "example.com")

    assert (error.permanent, error.status, error.reason) == (False, "4.4.3", "networkerror")
    assert "no MX host of example.com has an address" in error.text
    assert "gone.example.net: does not exist" in error.text
    assert "broken.example.net" in error.text


async def test_ip_literal_mx_is_skipped(dns_server, resolver):
    dns_server.mx("example.com", (10, "192.0.2.1"), (20, "mx.example.net"))
    dns_server.address("mx.example.net", "127.0.0.13")

    route = await resolver.resolve("example.com")

    assert route.host_names == ("mx.example.net",)
    assert ("192.0.2.1", "A") not in dns_server.queries


async def test_null_mx_next_to_real_mx_is_ignored(dns_server, resolver):
    dns_server.set("example.com", "MX", "0 .", "10 mx.example.net.")
    dns_server.address("mx.example.net", "127.0.0.13")

    route = await resolver.resolve("example.com")

    assert route.host_names == ("mx.example.net",)
    assert route.site_key == "mx.example.net"


async def test_domains_served_by_one_mx_set_share_a_site_key(dns_server, resolver):
    dns_server.mx("gmail.example", (5, "mx1.google.example"), (10, "mx2.google.example"))
    dns_server.mx("googlemail.example", (10, "MX2.google.example"), (40, "mx1.google.example"))
    dns_server.address("mx1.google.example", "127.0.0.30")
    dns_server.address("mx2.google.example", "127.0.0.31")

    gmail = await resolver.resolve("gmail.example")
    googlemail = await resolver.resolve("googlemail.example")

    assert gmail.site_key == googlemail.site_key == "mx1.google.example,mx2.google.example"
    # Shared MX hosts are looked up once, not once per domain.
    assert dns_server.count("mx1.google.example", "A") == 1


async def test_idn_domain_is_asked_for_as_an_a_label(dns_server, resolver):
    two_mx_domain(dns_server, "xn--bcher-kva.example")

    route = await resolver.resolve("Bücher.example.")

    assert route.domain == "xn--bcher-kva.example"
    assert ("xn--bcher-kva.example", "MX") in dns_server.queries


@pytest.mark.parametrize("domain", ["", ".", "a..example", "exa mple.com", "under_score.example",
                                    "[192.0.2.1]", "192.0.2.1", "-lead.example", "x" * 64 + ".example"])
async def test_invalid_domain_is_permanent_without_asking(dns_server, resolver, domain):
    error = await expect_route_error(resolver, domain)

    assert (error.permanent, error.status, error.reason) == (True, "5.1.2", "hostunknown")
    assert dns_server.queries == []


# -- caching ----------------------------------------------------------------------------------------


async def test_route_is_cached_for_its_shortest_ttl_then_asked_again(dns_server, resolver, clock):
    two_mx_domain(dns_server, ttl=300)
    dns_server.address("mx2.example.net", "127.0.0.11", ttl=60)  # the shortest TTL involved

    first = await resolver.resolve("example.com")
    asked = len(dns_server.queries)
    clock.advance(59)
    assert await resolver.resolve("EXAMPLE.com.") is first   # case and trailing dot: same entry
    assert len(dns_server.queries) == asked

    clock.advance(2)
    await resolver.resolve("example.com")
    assert dns_server.count("example.com", "MX") == 2


async def test_ttl_is_bounded_by_the_configured_minimum(dns_server, clock):
    resolver = make_resolver(dns_server, clock, min_ttl=30)
    two_mx_domain(dns_server, ttl=1)

    route = await resolver.resolve("example.com")

    assert route.expires == clock.now + 30


async def test_permanent_failure_is_cached_for_the_soa_minimum(dns_server, resolver, clock):
    dns_server.soa("example", minimum=60, ttl=3600)

    await expect_route_error(resolver, "missing.example")
    clock.advance(59)
    await expect_route_error(resolver, "missing.example")
    assert dns_server.count("missing.example", "MX") == 1

    clock.advance(2)
    await expect_route_error(resolver, "missing.example")
    assert dns_server.count("missing.example", "MX") == 2


async def test_permanent_failure_without_soa_is_cached_for_the_default(dns_server, resolver, clock):
    await expect_route_error(resolver, "missing.example")
    clock.advance(299)
    await expect_route_error(resolver, "missing.example")
    assert dns_server.count("missing.example", "MX") == 1
    clock.advance(2)
    await expect_route_error(resolver, "missing.example")
    assert dns_server.count("missing.example", "MX") == 2


async def test_temporary_failure_is_cached_briefly_and_a_fixed_zone_is_seen_soon(dns_server, resolver, clock):
    two_mx_domain(dns_server)
    dns_server.servfail("example.com")

    await expect_route_error(resolver, "example.com")
    await expect_route_error(resolver, "example.com")        # served from the cache
    assert dns_server.count("example.com", "MX") == 1

    dns_server.behave_normally("example.com")
    clock.advance(5)
    route = await resolver.resolve("example.com")
    assert route.host_names == ("mx1.example.net", "mx2.example.net")


async def test_concurrent_lookups_of_one_domain_share_one_query(dns_server, resolver):
    two_mx_domain(dns_server)
    dns_server.delay("example.com", 0.1)                     # keep the lookup in flight a while

    routes = await asyncio.gather(*(resolver.resolve("example.com") for _ in range(20)))

    assert all(route is routes[0] for route in routes)
    assert dns_server.count("example.com", "MX") == 1


async def test_cancelled_caller_does_not_cancel_the_shared_lookup(dns_server, resolver):
    two_mx_domain(dns_server)
    dns_server.delay("example.com", 0.1)

    impatient = asyncio.ensure_future(resolver.resolve("example.com"))
    patient = asyncio.ensure_future(resolver.resolve("example.com"))
    await asyncio.sleep(0.02)
    impatient.cancel()

    assert (await patient).host_names == ("mx1.example.net", "mx2.example.net")
    assert dns_server.count("example.com", "MX") == 1


async def test_cache_is_bounded_least_recently_used_first(dns_server, clock):
    resolver = make_resolver(dns_server, clock, cache_size=2)
    for domain in ("a.example", "b.example", "c.example"):
        dns_server.address(domain, "127.0.0.40")

    await resolver.resolve("a.example")
    await resolver.resolve("b.example")
    await resolver.resolve("a.example")                      # a is now the most recently used
    await resolver.resolve("c.example")                      # evicts b
    await resolver.resolve("a.example")
    await resolver.resolve("b.example")

    assert dns_server.count("a.example", "MX") == 1
    assert dns_server.count("b.example", "MX") == 2


# -- generic queries --------------------------------------------------------------------------------


async def test_query_txt_joins_strings_and_falls_back_to_tcp_for_big_answers(dns_server, resolver):
    spf = "v=spf1 ip4:192.0.2.0/24 -all"
    long_key = "v=DKIM1; k=rsa; p=" + "A" * 700
    dns_server.txt("example.com", spf)
    dns_server.txt("sel._domainkey.example.com", long_key)

    assert await resolver.query_txt("example.com") == [spf]
    assert await resolver.query_txt("sel._domainkey.example.com") == [long_key]
    assert await resolver.query_txt("_dmarc.example.com") == []
    assert ("sel._domainkey.example.com", "TXT") in dns_server.queries_over("tcp")


async def test_query_ptr_for_ipv4_and_ipv6(dns_server, resolver):
    dns_server.ptr("192.0.2.7", "Mail.Example.com")
    dns_server.ptr("2001:db8::7", "mail6.example.com")

    assert await resolver.query_ptr("192.0.2.7") == ["mail.example.com"]
    assert await resolver.query_ptr("2001:db8::7") == ["mail6.example.com"]
    assert await resolver.query_ptr("192.0.2.8") == []


async def test_query_a_and_aaaa(dns_server, resolver):
    dns_server.address("mail.example.com", "192.0.2.7", "2001:db8::7")

    assert await resolver.query_a("mail.example.com") == ["192.0.2.7"]
    assert await resolver.query_aaaa("mail.example.com") == ["2001:db8::7"]
    assert await resolver.query_a("nothing.example.com") == []


async def test_query_ptr_rejects_what_is_not_an_address(resolver):
    with pytest.raises(ValueError, match="not an IP address"):
        await resolver.query_ptr("mail.example.com")


async def test_generic_query_failure_is_a_temporary_route_error(dns_server, resolver):
    dns_server.servfail("example.com")

    with pytest.raises(RouteError) as caught:
        await resolver.query_txt("example.com")

    assert not caught.value.permanent


# -- configuration and the test server itself -------------------------------------------------------


@pytest.mark.parametrize(("entry", "expected"), [
    ("192.0.2.53", ("192.0.2.53", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)),
])
def test_nameserver_entries_parse(entry, expected):
    assert parse_nameserver(entry) == expected


@pytest.mark.parametrize("entry", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1]5353"])
def test_bad_nameserver_entries_are_rejected(entry):
    with pytest.raises(ValueError, match="nameserver"):
        ResolverConfig(nameservers=[entry])


async def test_server_listens_on_any_loopback_address(clock):
    with DnsTestServer("127.0.0.2") as server:
        server.address("other.example", "127.0.0.50")
        resolver = make_resolver(server, clock)

        route = await resolver.resolve("other.example")

    assert server.nameserver.startswith("127.0.0.2:")
    assert route.hosts[0].addresses == ("127.0.0.50",)


async def test_server_follows_cnames_within_its_data(dns_server, resolver):
    dns_server.cname("alias.example", "real.example")
    dns_server.mx("real.example", (10, "mx.real.example"))
    dns_server.address("mx.real.example", "127.0.0.60")

    route = await resolver.resolve("alias.example")

    assert route.host_names == ("mx.real.example",)
