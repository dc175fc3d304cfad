"""`mta check-dns DOMAIN [--config FILE]`: prints a PASS/FAIL line per check, exits 1 on any failure
(2 when the config cannot be used).

Reads from the MTA config: egress sources (IP and EHLO name), DKIM keys (`[[dkim.keys]]`), the
bounce domain and inbound listen addresses, and dns.nameservers. Options override or add to it.

Wiring (mta/cli/main.py): `checkdns_cli.add_parser(sub)`, then `return checkdns_cli.run(args, cfg)` for
`args.cmd == "check-dns"` once the config is loaded (or `run(args)` to let it load the config).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import sys

from mta.compliance.checkdns import NO_DKIM_KEY, CheckResult, SourceAddress, check_dns
from mta.compliance.dkim.config import DkimKeyConfig
from mta.compliance.dkim.keys import DkimKey, DkimKeyError, dns_record_name, load_key
from mta.config import Config, ConfigError, load_config
from mta.delivery.dnsroute import MxResolver, ResolverConfig, RouteError
from mta.inbound.verp import BounceDomains
from warmup_base.listen import parse_hostport

__all__ = ["add_parser", "run"]

# Sections this feature proposes; until Config has them, they are read from the raw TOML here.
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("check-dns", help="check SPF, DKIM, DMARC, reverse DNS and the bounce MX of a domain")
    p.add_argument("domain", help="sending domain, e.g. example.com")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.add_argument("--bounce-domain", default="",
                   help="return path domain (default: inbound.aligned_bounce_subdomain.DOMAIN if set, "
                        "else inbound.bounce_domain)")
    p.add_argument("--inbound-address", action="append", default=[], metavar="IP",
                   help="public address of the inbound listener (default: from inbound.listen)")
    p.add_argument("--dkim-key", action="append", default=[], metavar="SELECTOR=FILE",
                   help="a DKIM key of DOMAIN to check besides those in the config")
    return p


def run(args: argparse.Namespace, cfg: Config | None = None) -> int:
    domain = args.domain.lower().rstrip(".")
    try:
        if cfg is None:
            cfg = load_config(args.config)
        key_configs = _dkim_key_configs(cfg, domain, args.dkim_key)
    except ConfigError as exc:
        print(f"mta check-dns: config error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(domain, cfg, key_configs, args))


async def _run(domain: str, cfg: Config, key_configs: list[tuple[str, DkimKeyConfig]],
               args: argparse.Namespace) -> int:
    resolver = MxResolver(ResolverConfig(nameservers=cfg.dns.nameservers, timeout=float(cfg.dns.timeout),
                                         lifetime=float(cfg.dns.timeout) * 2))
    unloadable: list[CheckResult] = []
    keys: list[DkimKey] = []
    for where, key_config in key_configs:
        try:
            keys.append(load_key(key_config, where)[0])
        except DkimKeyError as exc:
            name = f"dkim {dns_record_name(key_config.domain, key_config.selector)}"
            unloadable.append(CheckResult(name, False, str(exc)))
    sources = [SourceAddress(s.name, s.address, s.ehlo or cfg.mta.hostname) for s in cfg.egress.sources]
    inbound, note = await _inbound_addresses(cfg, args.inbound_address, resolver)
    if note:
        print(f"note: {note}")
    # The return path domain the MTA uses for this sender: the aligned subdomain when configured.
    bounce_domain = args.bounce_domain or BounceDomains(
        cfg.inbound.bounce_domain, getattr(cfg.inbound, "aligned_bounce_subdomain", "")).for_sender(domain)
    checked = await check_dns(domain, sources=sources, dkim_keys=keys, bounce_domain=bounce_domain,
                              inbound_addresses=inbound, resolver=resolver)
    if unloadable:
        # A key that failed to load already says what is wrong; "no key configured" would mislead.
        checked = [r for r in checked if r.detail != NO_DKIM_KEY]
    results = unloadable + checked
    for result in results:
        print(result.line())
    failing = sum(not r.ok for r in results)
    print(f"{domain}: {len(results)} checks, {failing} failing")
    return 1 if failing else 0


async def _inbound_addresses(cfg: Config, given: list[str], resolver: MxResolver) -> tuple[list[str], str]:
    if given:
        return given, ""
    addresses: list[str] = []
    for entry in cfg.inbound.listen:
        host, _port = parse_hostport(entry, "inbound.listen")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            with contextlib.suppress(RouteError):      # then the bounce-mx check says what is missing
                addresses += await resolver.query_a(host) + await resolver.query_aaaa(host)
            continue
        if not address.is_unspecified:
            addresses.append(str(address))
    if addresses:
        return addresses, ""
    fallback = [s.address for s in cfg.egress.sources if s.address]
    return fallback, ("inbound.listen binds all addresses; checking the bounce MX against the source IPs "
                      "(or give --inbound-address)")


def _dkim_key_configs(cfg: Config, domain: str, extra: list[str]) -> list[tuple[str, DkimKeyConfig]]:
    """(config path, entry) of the keys that sign for `domain`: its own, else its closest parent's."""
    entries = [(f"dkim.keys[{i}]", k) for i, k in enumerate(cfg.dkim.keys)]
    candidates = domain
    chosen: list[tuple[str, DkimKeyConfig]] = []
    while "." in candidates and not chosen:
        chosen = [(where, k) for where, k in entries if k.domain.lower().rstrip(".") == candidates]
        candidates = candidates.partition(".")[2]
    for i, text in enumerate(extra):
        selector, eq, path = text.partition("=")
        if not eq or not selector or not path:
            raise ConfigError(f"--dkim-key[{i}]: expected SELECTOR=FILE, got {text!r}")
        chosen.append((f"--dkim-key[{i}]", DkimKeyConfig(domain, selector, os.path.abspath(path))))
    return chosen


