"""`mta check-dns`: is DNS ready for a sending domain? Pure-ish: every lookup goes through the
resolver passed in (an `MxResolver`), so tests point it at a loopback DNS server.

Checks, each a `CheckResult(name, ok, detail)`:
- spf        the domain's SPF (and the bounce domain's, which receivers actually evaluate: it is the
             MAIL FROM domain) authorises every source IP, by the RFC 7208 evaluator in
             mta.compliance.spf.
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
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mta.compliance.dkim.keys import DkimKey, dns_record_name
from mta.compliance.spf import DnsLookups, spf_check
from mta.delivery.dnsroute import RouteError

__all__ = ["NO_DKIM_KEY", "CheckResult", "SourceAddress", "check_dns"]

NO_DKIM_KEY = "no DKIM key configured for this domain"


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
