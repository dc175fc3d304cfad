"""`mta check-dns`: is DNS ready for a sending domain? Pure-ish: every lookup goes through the
resolver passed in (an `MxResolver`), so tests point it at a loopback DNS server.

Checks, each a `CheckResult(name, ok, detail)`:
- spf        the domain's SPF (and the bounce domain's, which receivers actually evaluate: it is the
             MAIL FROM domain) authorises every source IP. A real SPF evaluator (RFC 7208): ip4,
             ip6, a, mx, ptr, exists, include (recursive), redirect=, qualifiers, macros, and the
             10-lookup and 2-void-lookup limits.
- dkim       each key's TXT at SELECTOR._domainkey.DOMAIN holds the key's public half (and k= fits).
- dmarc      _dmarc.DOMAIN (or the parent domain's, which receivers fall back to) exists; its policy.
- fcrdns     each source IP's PTR names a host whose A/AAAA include the IP and which is the
             source's EHLO name.
- bounce-mx  the bounce domain's MX hosts include the inbound listener's address.
- alignment  the bounce domain is the domain or under it, so SPF aligns for DMARC.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mta.compliance.dkim.keys import DkimKey, dns_record_name
from mta.delivery.dnsroute import MxHost, Route, RouteError

__all__ = ["NO_DKIM_KEY", "CheckResult", "DnsLookups", "SourceAddress", "SpfResult", "check_dns", "spf_check"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NO_DKIM_KEY = "no DKIM key configured for this domain"


class DnsLookups(Protocol):
    """What the checks ask of DNS (MxResolver has all of it). Temporary failures raise RouteError;
    absent names and records give []."""

    async def query_txt(self, name: str) -> list[str]: ...
    async def query_a(self, name: str) -> list[str]: ...
    async def query_aaaa(self, name: str) -> list[str]: ...
    async def query_ptr(self, ip: str) -> list[str]: ...
    async def resolve(self, domain: str) -> Route: ...


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str               # e.g. "spf example.com 192.0.2.10 (ip1)"
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class SourceAddress:
    name: str               # egress source name
    address: str            # its IP
    ehlo: str               # its EHLO name


async def check_dns(domain: str, *, sources: Sequence[SourceAddress], dkim_keys: Sequence[DkimKey],
                    bounce_domain: str, inbound_addresses: Sequence[str], resolver: DnsLookups) -> list[CheckResult]:
    """Every check for `domain`, in a stable order; ok is False for anything a receiver would hold
    against the mail (or that could not be verified)."""
    domain = domain.lower().rstrip(".")
    bounce_domain = bounce_domain.lower().rstrip(".")
    dmarc = await _dmarc_record(domain, resolver)
    checks = []
    usable = [s for s in sources if s.address]
    if not usable:
        checks.append(_static(CheckResult("sources", False, "no source IP configured (egress.sources[].address): "
                                          "SPF and reverse DNS cannot be checked")))
    spf_domains = [domain] + ([bounce_domain] if bounce_domain and bounce_domain != domain else [])
    checks += [_check_spf(d, s, resolver) for d in spf_domains for s in usable]
    if not dkim_keys:
        checks.append(_static(CheckResult(f"dkim {domain}", False, NO_DKIM_KEY)))
    checks += [_check_dkim(domain, key, dmarc, resolver) for key in dkim_keys]
    checks.append(_static(_dmarc_result(domain, dmarc)))
    checks += [_check_fcrdns(s, resolver) for s in usable]
    if bounce_domain:
        checks.append(_check_bounce_mx(bounce_domain, inbound_addresses, resolver))
        checks.append(_static(_alignment_result(domain, bounce_domain, dmarc)))
    return list(await asyncio.gather(*checks))


async def _static(result: CheckResult) -> CheckResult:
    """A result known without DNS, as an awaitable so it keeps its place among the others."""
    return result


def _dns_failure(name: str, exc: RouteError) -> CheckResult:
    return CheckResult(name, False, f"DNS lookup failed, try again: {exc.text}")


# -- SPF --------------------------------------------------------------------------------------------

async def _check_spf(domain: str, source: SourceAddress, resolver: DnsLookups) -> CheckResult:
    name = f"spf {domain} {source.address} ({source.name})"
    result = await spf_check(source.address, domain, resolver, helo=source.ehlo)
    if result.result == "pass":
        return CheckResult(name, True, f"pass ({result.detail})")
    return CheckResult(name, False, f"{result.result}: {result.detail}")


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


# -- DKIM -------------------------------------------------------------------------------------------

def parse_tags(record: str) -> dict[str, str]:
    """A DKIM/DMARC tag list: "v=DKIM1; k=rsa; p=..." -> {"v": "DKIM1", ...}; whitespace trimmed."""
    tags = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags[name.strip().lower()] = value.strip()
    return tags


async def _check_dkim(domain: str, key: DkimKey, dmarc: _Dmarc, resolver: DnsLookups) -> CheckResult:
    record_name = dns_record_name(key.domain, key.selector)
    name = f"dkim {record_name}"
    try:
        texts = await resolver.query_txt(record_name)
    except RouteError as exc:
        return _dns_failure(name, exc)
    records = [t for t in texts if "p=" in t]
    if not records:
        return CheckResult(name, False, f"no DKIM record; publish: v=DKIM1; k={key.key_type}; p=...")
    if len(records) > 1:
        return CheckResult(name, False, f"{len(records)} DKIM records (receivers may use any): keep one")
    tags = parse_tags(records[0])
    published = re.sub(r"\s+", "", tags.get("p", ""))
    key_type = tags.get("k", "rsa").lower()
    if not published:
        return CheckResult(name, False, "the record has an empty p= (key revoked)")
    if tags.get("v", "DKIM1") != "DKIM1":
        return CheckResult(name, False, f"v={tags['v']}, expected DKIM1")
    if key_type != key.key_type:
        return CheckResult(name, False, f"k={key_type} in DNS, but the configured key is {key.key_type}")
    if "h" in tags and "sha256" not in [h.strip().lower() for h in tags["h"].split(":")]:
        return CheckResult(name, False, f"h={tags['h']} does not allow sha256")
    if not _same_public_key(published, key):
        return CheckResult(name, False, f"p= does not match the public key of {key.key_file or 'the configured key'}")
    if key.domain != domain and dmarc.tags.get("adkim", "r").lower() == "s":
        return CheckResult(name, False, f"d={key.domain} does not align with {domain} under DMARC adkim=s")
    testing = " (t=y: testing mode, receivers may ignore failures)" if "y" in tags.get("t", "").split(":") else ""
    return CheckResult(name, True, f"k={key_type} public key matches {key.key_file or 'the configured key'}{testing}")


def _same_public_key(published: str, key: DkimKey) -> bool:
    try:
        der = base64.b64decode(published, validate=True)
    except (binascii.Error, ValueError):
        return False
    public = key.private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return der == public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert isinstance(public, rsa.RSAPublicKey)
    try:
        loaded = serialization.load_der_public_key(der)
    except ValueError:
        # Some publish the bare PKCS#1 RSAPublicKey instead of SubjectPublicKeyInfo; both verify.
        pem = b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
        try:
            loaded = serialization.load_pem_public_key(pem)
        except ValueError:
            return False
    return isinstance(loaded, rsa.RSAPublicKey) and loaded.public_numbers() == public.public_numbers()


# -- DMARC ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Dmarc:
    where: str                      # the _dmarc name the record came from, "" if none
    tags: dict[str, str]
    problem: str = ""


async def _dmarc_record(domain: str, resolver: DnsLookups) -> _Dmarc:
    """The record at _dmarc.DOMAIN, else at the parent domains' (a stand-in for the organisational
    domain: without the public suffix list we stop at two labels)."""
    labels = domain.split(".")
    for i in range(len(labels) - 1):
        name = "_dmarc." + ".".join(labels[i:])
        try:
            texts = await resolver.query_txt(name)
        except RouteError as exc:
            return _Dmarc("", {}, f"DNS lookup of {name} failed, try again: {exc.text}")
        records = [t for t in texts if re.match(r"^\s*v\s*=\s*DMARC1\s*(;|$)", t)]
        if len(records) > 1:
            return _Dmarc(name, {}, f"{name} has {len(records)} DMARC records; receivers then ignore them all")
        if records:
            return _Dmarc(name, parse_tags(records[0]))
    return _Dmarc("", {}, f"no DMARC record at _dmarc.{domain}")


def _dmarc_result(domain: str, dmarc: _Dmarc) -> CheckResult:
    name = f"dmarc _dmarc.{domain}"
    if dmarc.problem:
        return CheckResult(name, False, dmarc.problem)
    inherited = dmarc.where != f"_dmarc.{domain}"
    policy = (dmarc.tags.get("sp") or dmarc.tags.get("p", "")) if inherited else dmarc.tags.get("p", "")
    policy = policy.lower()
    if policy not in ("none", "quarantine", "reject"):
        return CheckResult(name, False, f"{dmarc.where}: p= missing or invalid ({policy!r})")
    source = f" (from {dmarc.where})" if inherited else ""
    note = {"none": " (monitoring only: receivers act on nothing)"}.get(policy, "")
    return CheckResult(name, True, f"p={policy}{note}{source}")


# -- reverse DNS ------------------------------------------------------------------------------------

async def _check_fcrdns(source: SourceAddress, resolver: DnsLookups) -> CheckResult:
    name = f"fcrdns {source.address} ({source.name})"
    try:
        ptr_names = await resolver.query_ptr(source.address)
        if not ptr_names:
            return CheckResult(name, False, f"no PTR record for {source.address}; set it to {source.ehlo}")
        ip = ipaddress.ip_address(source.address)
        confirmed, unconfirmed = [], []
        for ptr in ptr_names:
            forward = await resolver.query_a(ptr) + await resolver.query_aaaa(ptr)
            (confirmed if ip in {ipaddress.ip_address(a) for a in forward} else unconfirmed).append(ptr)
    except RouteError as exc:
        return _dns_failure(name, exc)
    except ValueError as exc:
        return CheckResult(name, False, str(exc))
    ehlo = source.ehlo.lower().rstrip(".")
    if ehlo in confirmed:
        return CheckResult(name, True, f"PTR {ehlo} resolves back to {source.address} and is the EHLO name")
    if confirmed:
        return CheckResult(name, False, f"PTR {', '.join(confirmed)} is forward-confirmed, but the EHLO name is {ehlo}")
    return CheckResult(name, False, f"PTR {', '.join(unconfirmed)} does not resolve back to {source.address}")


# -- bounce domain ----------------------------------------------------------------------------------

async def _check_bounce_mx(bounce_domain: str, inbound_addresses: Sequence[str],
                           resolver: DnsLookups) -> CheckResult:
    name = f"bounce-mx {bounce_domain}"
    try:
        route = await resolver.resolve(bounce_domain)
    except RouteError as exc:
        if not exc.permanent:
            return _dns_failure(name, exc)
        return CheckResult(name, False, f"bounces cannot reach us: {exc.text}")
    if route.implicit:
        return CheckResult(name, False, "no MX record (senders fall back to its A record); "
                                        "add an MX pointing at the inbound listener")
    wanted = {ipaddress.ip_address(a) for a in inbound_addresses}
    ours = [h.name for h in route.hosts if wanted & {ipaddress.ip_address(a) for a in h.addresses}]
    hosts = ", ".join(f"{h.name} ({' '.join(h.addresses)})" for h in route.hosts)
    if not wanted:
        return CheckResult(name, False, f"inbound listener address unknown; MX: {hosts}")
    if ours:
        return CheckResult(name, True, f"MX {', '.join(ours)} reaches the inbound listener")
    listener = ", ".join(sorted(str(a) for a in wanted))
    return CheckResult(name, False, f"no MX host has the inbound listener's address {listener}; MX: {hosts}")


def _alignment_result(domain: str, bounce_domain: str, dmarc: _Dmarc) -> CheckResult:
    name = f"alignment {bounce_domain}"
    strict = dmarc.tags.get("aspf", "r").lower() == "s"
    if bounce_domain == domain or (not strict and bounce_domain.endswith("." + domain)):
        mode = "strict" if strict else "relaxed"
        return CheckResult(name, True, f"return path domain aligns with {domain} ({mode} SPF alignment)")
    why = "DMARC aspf=s needs the same domain" if strict and bounce_domain.endswith("." + domain) else \
        f"use a bounce domain under {domain}"
    return CheckResult(name, False, f"return path domain does not align with {domain} for DMARC; {why}")
