"""SPF (RFC 7208): does a domain's policy authorise an IP address? A real evaluator: ip4, ip6, a,
mx, ptr, exists, include (recursive), redirect=, qualifiers, macros, and the 10-lookup and
2-void-lookup limits. Pure-ish: every lookup goes through the resolver passed in (a `DnsLookups`,
which MxResolver is), so tests point it at a loopback DNS server. `mta check-dns` uses it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mta.delivery.dnsroute import MxHost, Route, RouteError

__all__ = ["DnsLookups", "SpfResult", "spf_check"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DnsLookups(Protocol):
    """What the checks ask of DNS (MxResolver has all of it). Temporary failures raise RouteError;
    absent names and records give []."""

    async def query_txt(self, name: str) -> list[str]: ...
    async def query_a(self, name: str) -> list[str]: ...
    async def query_aaaa(self, name: str) -> list[str]: ...
    async def query_ptr(self, ip: str) -> list[str]: ...
    async def resolve(self, domain: str) -> Route: ...


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str             # pass, fail, softfail, neutral, none, permerror, temperror
    detail: str


class _SpfError(Exception):
    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


@dataclass
class _SpfContext:
    ip: IpAddress
    sender: str
    helo: str
    resolver: DnsLookups
    lookups: int = 0
    voids: int = 0


MAX_LOOKUPS = 10            # RFC 7208 4.6.4
MAX_VOID_LOOKUPS = 2
MAX_MX_OR_PTR_NAMES = 10
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_TERM = re.compile(r"^([+\-~?]?)([a-z0-9]+)(?::([^/]*))?(?:/(\d+))?(?://(\d+))?$", re.IGNORECASE)
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.\-]*)=(.*)$", re.IGNORECASE)


async def spf_check(ip: str, domain: str, resolver: DnsLookups, *, sender: str = "", helo: str = "") -> SpfResult:
    """RFC 7208 check_host() for `ip` and `domain`; `sender` defaults to postmaster@domain."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return SpfResult("permerror", f"not an IP address: {ip!r}")
    context = _SpfContext(address, sender or f"postmaster@{domain}", helo or domain, resolver)
    try:
        result, detail = await _check_host(domain, context, depth=0)
    except _SpfError as exc:
        return SpfResult(exc.result, exc.detail)
    return SpfResult(result, detail)


async def _check_host(domain: str, ctx: _SpfContext, depth: int) -> tuple[str, str]:
    if depth > MAX_LOOKUPS:
        raise _SpfError("permerror", "include/redirect loop")
    record = await _spf_record(domain, ctx)
    if record is None:
        return "none", f"no SPF record at {domain}"
    terms = record.split()[1:]
    redirect = ""
    mechanisms: list[tuple[str, str, str | None, int | None, int | None]] = []
    for term in terms:          # parse everything first: a syntax error anywhere is a permerror
        modifier = _MODIFIER.match(term)
        if modifier:
            key = modifier.group(1).lower()
            if key == "redirect":
                if redirect:
                    raise _SpfError("permerror", f"{domain}: more than one redirect=")
                redirect = modifier.group(2)
            continue            # exp= and unknown modifiers do not decide anything
        match = _TERM.match(term)
        if not match:
            raise _SpfError("permerror", f"{domain}: cannot parse SPF term {term!r}")
        qualifier, mechanism, argument, cidr4, cidr6 = match.groups()
        mechanisms.append((_QUALIFIERS[qualifier or "+"], mechanism.lower(), argument,
                           int(cidr4) if cidr4 else None, int(cidr6) if cidr6 else None))
    for result, mechanism, argument, cidr4, cidr6 in mechanisms:
        if await _matches(domain, mechanism, argument, cidr4, cidr6, ctx, depth):
            return result, f"matched {_term_text(result, mechanism, argument, cidr4, cidr6)} at {domain}"
    if redirect:
        target = _expand(redirect, domain, ctx)
        _count_lookup(ctx)
        result, detail = await _check_host(target, ctx, depth + 1)
        if result == "none":
            raise _SpfError("permerror", f"{domain}: redirect={target} has no SPF record")
        return result, detail
    return "neutral", f"{ctx.ip} matched nothing at {domain} (default neutral)"


def _term_text(result: str, mechanism: str, argument: str | None, cidr4: int | None, cidr6: int | None) -> str:
    qualifier = {"pass": "", "fail": "-", "softfail": "~", "neutral": "?"}[result]
    text = qualifier + mechanism + (f":{argument}" if argument is not None else "")
    return text + (f"/{cidr4}" if cidr4 is not None else "") + (f"//{cidr6}" if cidr6 is not None else "")


async def _spf_record(domain: str, ctx: _SpfContext) -> str | None:
    try:
        texts = await ctx.resolver.query_txt(domain)
    except RouteError as exc:
        if exc.permanent:
            return None         # not a valid name: no record
        raise _SpfError("temperror", exc.text) from None
    records = [t.strip() for t in texts if t.strip().lower() == "v=spf1" or t.strip().lower().startswith("v=spf1 ")]
    if len(records) > 1:
        raise _SpfError("permerror", f"{domain} has {len(records)} SPF records (one allowed)")
    return records[0] if records else None


def _count_lookup(ctx: _SpfContext) -> None:
    ctx.lookups += 1
    if ctx.lookups > MAX_LOOKUPS:
        raise _SpfError("permerror", f"more than {MAX_LOOKUPS} DNS-querying terms (RFC 7208 4.6.4)")


def _count_void(ctx: _SpfContext, found: Sequence[object]) -> None:
    if not found:
        ctx.voids += 1
        if ctx.voids > MAX_VOID_LOOKUPS:
            raise _SpfError("permerror", f"more than {MAX_VOID_LOOKUPS} lookups found nothing (RFC 7208 4.6.4)")


async def _matches(domain: str, mechanism: str, argument: str | None, cidr4: int | None, cidr6: int | None,
                   ctx: _SpfContext, depth: int) -> bool:
    if mechanism == "all":
        return True
    if mechanism in ("ip4", "ip6"):
        return _ip_in(ctx.ip, argument or "", cidr4, mechanism, domain)     # ip6's /n lands in cidr4
    target = _expand(argument, domain, ctx) if argument else domain
    if mechanism not in ("include", "a", "mx", "ptr", "exists"):
        raise _SpfError("permerror", f"{domain}: unknown mechanism {mechanism!r}")
    _count_lookup(ctx)
    if mechanism == "include":
        if not argument:
            raise _SpfError("permerror", f"{domain}: include needs a domain")
        result, detail = await _check_host(target, ctx, depth + 1)
        if result == "temperror":
            raise _SpfError("temperror", detail)
        if result in ("permerror", "none"):
            raise _SpfError("permerror", f"include:{target}: {detail}")
        return result == "pass"
    if mechanism == "a":
        addresses = await _addresses(target, ctx)
        _count_void(ctx, addresses)
        return _in_any(ctx.ip, addresses, cidr4, cidr6)
    if mechanism == "mx":
        hosts = await _mx_hosts(target, ctx)
        return any(_in_any(ctx.ip, host.addresses, cidr4, cidr6) for host in hosts)
    if mechanism == "ptr":
        names = await _validated_ptr_names(ctx)
        return any(n == target or n.endswith("." + target) for n in names)
    found = await _query(ctx.resolver.query_a, target)            # exists: always an A query
    _count_void(ctx, found)
    return bool(found)


def _ip_in(ip: IpAddress, argument: str, cidr: int | None, mechanism: str, domain: str) -> bool:
    try:
        network = ipaddress.ip_network(argument + (f"/{cidr}" if cidr is not None else ""), strict=False)
    except ValueError:
        raise _SpfError("permerror", f"{domain}: bad {mechanism}:{argument}") from None
    if (mechanism == "ip4") != (network.version == 4):
        raise _SpfError("permerror", f"{domain}: {mechanism}:{argument} is the wrong address family")
    return ip.version == network.version and ip in network


def _in_any(ip: IpAddress, addresses: Sequence[str], cidr4: int | None, cidr6: int | None) -> bool:
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address.version != ip.version:
            continue
        prefix = (cidr4 if cidr4 is not None else 32) if ip.version == 4 else (cidr6 if cidr6 is not None else 128)
        if ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False):
            return True
    return False


async def _query(lookup: Callable[[str], Awaitable[list[str]]], name: str) -> list[str]:
    try:
        return await lookup(name)
    except RouteError as exc:
        if exc.permanent:
            return []
        raise _SpfError("temperror", exc.text) from None


async def _addresses(name: str, ctx: _SpfContext) -> list[str]:
    return await _query(ctx.resolver.query_a if ctx.ip.version == 4 else ctx.resolver.query_aaaa, name)


async def _mx_hosts(domain: str, ctx: _SpfContext) -> tuple[MxHost, ...]:
    try:
        route = await ctx.resolver.resolve(domain)
    except RouteError as exc:
        if exc.permanent:
            _count_void(ctx, ())
            return ()
        raise _SpfError("temperror", exc.text) from None
    if route.implicit:
        return ()               # SPF's mx does not fall back to the domain's own address
    if len(route.hosts) > MAX_MX_OR_PTR_NAMES:
        raise _SpfError("permerror", f"mx:{domain} has more than {MAX_MX_OR_PTR_NAMES} MX hosts")
    return route.hosts


async def _validated_ptr_names(ctx: _SpfContext) -> list[str]:
    names = (await _query(ctx.resolver.query_ptr, str(ctx.ip)))[:MAX_MX_OR_PTR_NAMES]
    validated = []
    for name in names:
        if str(ctx.ip) in {str(ipaddress.ip_address(a)) for a in await _addresses(name, ctx)}:
            validated.append(name.lower())
    return validated


_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-", re.IGNORECASE)


def _expand(spec: str, domain: str, ctx: _SpfContext) -> str:
    """RFC 7208 7: macro expansion (s l o d i p v h; digits, r, delimiters)."""
    local, _at, sender_domain = ctx.sender.rpartition("@")

    def letter_value(letter: str) -> str:
        if letter == "i":
            if ctx.ip.version == 4:
                return str(ctx.ip)
            return ".".join(ctx.ip.exploded.replace(":", ""))
        return {"s": ctx.sender, "l": local or "postmaster", "o": sender_domain, "d": domain,
                "p": "unknown", "v": "in-addr" if ctx.ip.version == 4 else "ip6", "h": ctx.helo,
                "c": str(ctx.ip), "r": "unknown", "t": "0"}[letter]

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "%%":
            return "%"
        if text == "%_":
            return " "
        if text == "%-":
            return "%20"
        letter, digits, reverse, delimiters = match.groups()
        parts = re.split("[" + re.escape(delimiters or ".") + "]", letter_value(letter.lower()))
        if reverse:
            parts.reverse()
        if digits:
            parts = parts[-int(digits):] if int(digits) else parts
        return ".".join(parts)

    if "%" in _MACRO.sub("", spec):
        raise _SpfError("permerror", f"{domain}: bad macro in {spec!r}")
    return _MACRO.sub(replace, spec).rstrip(".").lower()
