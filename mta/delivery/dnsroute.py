"""MX resolution for delivery: domain -> Route (MX hosts with addresses and a site key).

A thin asyncio shell around dnspython's stub resolver. The rules that decide (what is permanent,
what a site key is, host order) live in `mta.delivery.dnsroute_core`; this module asks DNS, caches by TTL
on an injected clock and lets concurrent callers for one domain share one lookup.

Failure policy (RFC 5321 section 5.1, RFC 7505):
- NXDOMAIN, or neither MX nor A/AAAA at the domain: permanent 5.1.2 (hostunknown).
- Null MX (a single MX "."): permanent 5.1.10 (notaccept).
- SERVFAIL, REFUSED, timeouts, network errors, or no MX host with an address: temporary 4.4.3.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.SOA import SOA

from mta.delivery.dnsroute_core import (
    MxHost,
    Route,
    RouteError,
    TtlCache,
    bounded,
    exchange_host_name,
    host_unknown,
    normalize_domain,
    not_accepting,
    ordered_hosts,
    routing_failed,
    site_key_for,
)

__all__ = [
    "MxHost",
    "MxResolver",
    "ResolverConfig",
    "Route",
    "RouteError",
    "ordered_hosts",
    "parse_nameserver",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """How to ask DNS and how long to believe the answers (all durations in seconds)."""

    nameservers: Sequence[str] = ()     # "host" or "host:port" ("[v6]:port"); empty: /etc/resolv.conf
    timeout: float = 5.0                # one query to one server
    lifetime: float = 10.0              # one lookup, retries included
    min_ttl: float = 5.0                # floor for every cached answer
    max_ttl: float = 86400.0            # ceiling for positive answers
    negative_ttl: float = 300.0         # permanent failures when the answer carries no SOA
    max_negative_ttl: float = 3600.0    # ceiling for permanent failures
    temporary_failure_ttl: float = 5.0  # SERVFAIL & co: long enough not to hammer, short enough to heal
    cache_size: int = 100_000           # domains (and, separately, MX host names) kept

    def __post_init__(self) -> None:
        object.__setattr__(self, "nameservers", tuple(self.nameservers))
        for entry in self.nameservers:
            parse_nameserver(entry)
        for key in ("timeout", "lifetime", "temporary_failure_ttl", "min_ttl", "negative_ttl"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive")
        if self.max_ttl < self.min_ttl:
            raise ValueError("max_ttl must not be below min_ttl")
        if self.max_negative_ttl < self.min_ttl:
            raise ValueError("max_negative_ttl must not be below min_ttl")
        if self.cache_size < 1:
            raise ValueError("cache_size must be at least 1")


def parse_nameserver(entry: str) -> tuple[str, int]:
    """"192.0.2.53", "192.0.2.53:5353", "::1" or "[::1]:5353" -> (address, port)."""
    text = entry.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"nameserver {entry!r}: expected [address]:port")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {entry!r}: not an IP address") from None
    port = 53
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"nameserver {entry!r}: bad port")
        port = int(port_text)
    return host, port


@dataclass(frozen=True, slots=True)
class _Answer:
    """One DNS answer reduced to what routing needs."""

    exists: bool                    # False: NXDOMAIN
    records: tuple[object, ...]     # rdata of the asked type (empty: NODATA or NXDOMAIN)
    ttl: float                      # how long this answer, positive or negative, may be kept


@dataclass(frozen=True, slots=True)
class _HostAddresses:
    """A + AAAA of one host name; `problem` says why there are none."""

    addresses: tuple[str, ...]
    expires: float
    problem: str = ""
    temporary: bool = False         # the problem may go away (lookup failed, not "no records")


@dataclass(slots=True)
class _SharedLookups:
    """A TTL cache plus the lookups in flight, so one key is asked once however many wait."""

    cache: TtlCache
    in_flight: dict[str, asyncio.Future] = field(default_factory=dict)


class MxResolver:
    """Resolves mail domains to Routes with caching and coalescing; one per process is enough."""

    def __init__(self, config: ResolverConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or ResolverConfig()
        self._clock = clock
        self._resolver = self._make_resolver(self.config)
        self._routes = _SharedLookups(TtlCache(self.config.cache_size, clock))
        # MX hosts are shared by many domains (every Google Workspace domain names the same five),
        # so their addresses get their own cache: a new domain then costs one MX query.
        self._hosts = _SharedLookups(TtlCache(self.config.cache_size, clock))

    @staticmethod
    def _make_resolver(config: ResolverConfig) -> dns.asyncresolver.Resolver:
        if config.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(entry))
                                    for entry in config.nameservers]
        else:
            resolver = dns.asyncresolver.Resolver()      # reads /etc/resolv.conf
        resolver.timeout = config.timeout
        resolver.lifetime = config.lifetime
        resolver.cache = None                           # we cache routes, not raw answers
        return resolver

    # -- routes ---------------------------------------------------------------------------------

    async def resolve(self, domain: str) -> Route:
        """The Route for `domain`, or RouteError (permanent or temporary)."""
        key = normalize_domain(domain)
        outcome = await self._shared(self._routes, key, lambda: self._lookup_route(key))
        if isinstance(outcome, RouteError):
            raise outcome.copy()
        return outcome

    def forget(self, domain: str) -> None:
        """Drops the cached route of one domain (operator "retry now")."""
        self._routes.cache.discard(normalize_domain(domain))

    def clear_cache(self) -> None:
        self._routes.cache.clear()
        self._hosts.cache.clear()

    async def _lookup_route(self, domain: str) -> tuple[Route | RouteError, float]:
        """(Route or error, expiry time): never raises RouteError, so failures can be cached."""
        try:
            mx = await self._query(domain, dns.rdatatype.MX)
        except RouteError as error:
            return error, self._clock() + self.config.temporary_failure_ttl
        if not mx.exists:
            return host_unknown(f"domain {domain} does not exist"), self._negative_expiry(mx)
        if not mx.records:
            return await self._implicit_route(domain, mx)
        records = [record for record in mx.records if isinstance(record, MX)]
        if len(records) == 1 and records[0].exchange == dns.name.root:
            error = not_accepting(f"domain {domain} does not accept mail (null MX)")
            return error, self._negative_expiry(mx)
        return await self._explicit_route(domain, mx, records)

    async def _explicit_route(self, domain: str, mx: _Answer,
                              records: list[MX]) -> tuple[Route | RouteError, float]:
        now = self._clock()
        preference_of: dict[str, int] = {}
        skipped: list[str] = []
        for record in records:
            exchange = record.exchange.to_text(omit_final_dot=True)
            name = exchange_host_name(exchange)
            if name is None:
                # "." next to real MXs is a broken null MX: nothing to connect to, so ignore it.
                skipped.append(f"{exchange}: not a host name")
                continue
            # A host listed twice keeps its best preference.
            preference_of[name] = min(record.preference, preference_of.get(name, record.preference))
        names = sorted(preference_of)
        looked_up = await asyncio.gather(*(self._host_addresses(name) for name in names))
        hosts = []
        expires = now + mx.ttl
        for name, found in zip(names, looked_up, strict=True):
            expires = min(expires, found.expires)
            if found.addresses:
                hosts.append(MxHost(name, preference_of[name], found.addresses))
            else:
                skipped.append(f"{name}: {found.problem}")
        if not hosts:
            why = "; ".join(skipped) or "no MX records"
            error = routing_failed(f"no MX host of {domain} has an address ({why})")
            return error, now + self.config.temporary_failure_ttl
        hosts.sort(key=lambda host: (host.preference, host.name))
        expires = now + bounded(expires - now, self.config.min_ttl, self.config.max_ttl)
        # The site is the whole MX set, usable or not, so a host that is briefly unresolvable
        # does not split a domain from its siblings.
        return Route(domain, tuple(hosts), site_key_for(names), False, expires), expires

    async def _implicit_route(self, domain: str, mx: _Answer) -> tuple[Route | RouteError, float]:
        found = await self._host_addresses(domain)
        now = self._clock()
        if not found.addresses:
            if found.temporary:
                return routing_failed(f"no MX for {domain}, and {found.problem}"), found.expires
            error = host_unknown(f"domain {domain} has no MX and no A/AAAA records")
            return error, found.expires
        expires = now + bounded(min(mx.ttl, found.expires - now), self.config.min_ttl, self.config.max_ttl)
        host = MxHost(domain, 0, found.addresses)
        return Route(domain, (host,), site_key_for([domain]), True, expires), expires

    # -- host addresses -------------------------------------------------------------------------

    async def _host_addresses(self, name: str) -> _HostAddresses:
        return await self._shared(self._hosts, name, lambda: self._lookup_host(name))

    async def _lookup_host(self, name: str) -> tuple[_HostAddresses, float]:
        ipv4, ipv6 = await asyncio.gather(self._query(name, dns.rdatatype.A),
                                          self._query(name, dns.rdatatype.AAAA),
                                          return_exceptions=True)
        now = self._clock()
        answers = [answer for answer in (ipv4, ipv6) if isinstance(answer, _Answer)]
        failures = [answer for answer in (ipv4, ipv6) if isinstance(answer, BaseException)]
        for failure in failures:
            if not isinstance(failure, RouteError):
                raise failure
        addresses = tuple(record.to_text() for answer in answers for record in answer.records)
        if failures:
            # Half an answer is still worth using, but only until the other half can be asked again.
            ttl = self.config.temporary_failure_ttl
            problem = "" if addresses else str(failures[0].text)
            found = _HostAddresses(addresses, now + ttl, problem, temporary=not addresses)
        elif addresses:
            ttl = bounded(min(answer.ttl for answer in answers), self.config.min_ttl, self.config.max_ttl)
            found = _HostAddresses(addresses, now + ttl)
        else:
            ttl = bounded(min(answer.ttl for answer in answers), self.config.min_ttl,
                          self.config.max_negative_ttl)
            problem = "no A/AAAA records" if all(answer.exists for answer in answers) else "does not exist"
            found = _HostAddresses((), now + ttl, problem)
        return found, found.expires

    # -- generic queries (check-dns) --------------------------------------------------------------

    async def query_txt(self, name: str) -> list[str]:
        """TXT records of `name`, each record's strings joined; [] if none. Not cached."""
        answer = await self._query(self._query_name(name), dns.rdatatype.TXT)
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer.records]

    async def query_ptr(self, ip: str) -> list[str]:
        """Reverse DNS names of an IPv4/IPv6 address (lower case, no trailing dot); [] if none.

        Raises ValueError when `ip` is not an address."""
        try:
            reverse = dns.reversename.from_address(ip).to_text()
        except dns.exception.SyntaxError:
            raise ValueError(f"not an IP address: {ip!r}") from None
        answer = await self._query(reverse, dns.rdatatype.PTR)
        return [record.target.to_text(omit_final_dot=True).lower() for record in answer.records]

    async def query_a(self, name: str) -> list[str]:
        """IPv4 addresses of `name`; [] if none."""
        answer = await self._query(self._query_name(name), dns.rdatatype.A)
        return [record.to_text() for record in answer.records]

    async def query_aaaa(self, name: str) -> list[str]:
        """IPv6 addresses of `name`; [] if none."""
        answer = await self._query(self._query_name(name), dns.rdatatype.AAAA)
        return [record.to_text() for record in answer.records]

    @staticmethod
    def _query_name(name: str) -> str:
        # Not normalize_domain: TXT names such as "_dmarc.example.com" are not host names.
        try:
            return dns.name.from_unicode(name.strip().rstrip("."), idna_codec=dns.name.IDNA_DEFAULT).to_text()
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            raise host_unknown(f"invalid name {name!r}: {exc}") from None

    # -- plumbing ---------------------------------------------------------------------------------

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Answer:
        """One lookup; absence is an answer, a failure to get one is a temporary RouteError."""
        qname = dns.name.from_text(name)
        kind = dns.rdatatype.to_text(rdtype)
        try:
            answer = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())
            return _Answer(False, (), self._negative_ttl(responses[0] if responses else None))
        except dns.resolver.LifetimeTimeout:
            raise routing_failed(f"DNS timeout looking up {kind} {name}") from None
        except dns.resolver.NoNameservers as exc:
            raise routing_failed(f"DNS failure looking up {kind} {name}: {exc}") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise routing_failed(f"DNS error looking up {kind} {name}: {exc}") from None
        if answer.rrset is None:
            return _Answer(True, (), self._negative_ttl(answer.response))
        return _Answer(True, tuple(answer.rrset), float(answer.chaining_result.minimum_ttl))

    def _negative_ttl(self, response: dns.message.Message | None) -> float:
        """RFC 2308: a negative answer lives min(SOA TTL, SOA minimum), within our bounds."""
        ttl = self.config.negative_ttl
        for rrset in response.authority if response is not None else ():
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                soa = rrset[0]
                assert isinstance(soa, SOA)
                ttl = min(rrset.ttl, soa.minimum)
                break
        return bounded(ttl, self.config.min_ttl, self.config.max_negative_ttl)

    def _negative_expiry(self, answer: _Answer) -> float:
        return self._clock() + bounded(answer.ttl, self.config.min_ttl, self.config.max_negative_ttl)

    async def _shared(self, lookups: _SharedLookups, key: str,
                      compute: Callable[[], Awaitable[tuple[T, float]]]) -> T:
        """Cached value, or the one lookup in flight for `key`, or a new lookup that others may join."""
        cached = lookups.cache.get(key)
        if cached is not None:
            return cached
        pending = lookups.in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(lookups, key, compute))
            lookups.in_flight[key] = pending
        # shield: one caller giving up must not cancel the lookup the others are waiting on.
        return await asyncio.shield(pending)

    async def _fill(self, lookups: _SharedLookups, key: str,
                    compute: Callable[[], Awaitable[tuple[T, float]]]) -> T:
        try:
            value, expires = await compute()
            lookups.cache.put(key, value, expires)
            return value
        finally:
            lookups.in_flight.pop(key, None)
