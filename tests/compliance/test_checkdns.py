"""`check-dns` against a real DNS server on loopback, serving good records and then bad ones."""

from __future__ import annotations

import argparse
import base64

import pytest
from cryptography.hazmat.primitives import serialization

from mta.cli import checkdns as checkdns_cli
from mta.compliance.checkdns import CheckResult, SourceAddress, check_dns
from mta.compliance.dkim import DkimKeyConfig, dns_record_value, load_key
from mta.delivery.dnsroute import MxResolver, ResolverConfig
from tests.support.dnsserver import DnsTestServer

DOMAIN = "example.com"
BOUNCE = "bounces.example.com"
INBOUND = "127.0.0.25"
SOURCES = [SourceAddress("ip1", "127.0.0.11", "mta1.example.com"),
           SourceAddress("ip6", "fd00::11", "mta6.example.com")]


def publish_good(server: DnsTestServer, rsa_key, ed_key) -> None:
    server.txt(DOMAIN, "v=spf1 ip4:127.0.0.0/28 include:_spf.provider.test -all", "google-site-verification=x")
    server.txt("_spf.provider.test", "v=spf1 ip6:fd00::/64 ~all")
    server.txt(BOUNCE, "v=spf1 redirect=example.com")
    server.txt(f"s1._domainkey.{DOMAIN}", dns_record_value(rsa_key))
    server.txt(f"e1._domainkey.{DOMAIN}", dns_record_value(ed_key))
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com")
    server.ptr("127.0.0.11", "mta1.example.com")
    server.address("mta1.example.com", "127.0.0.11")
    server.ptr("fd00::11", "mta6.example.com")
    server.address("mta6.example.com", "fd00::11")
    server.mx(BOUNCE, (10, f"mx.{BOUNCE}"))
    server.address(f"mx.{BOUNCE}", INBOUND)


@pytest.fixture
def zone(dns_server, rsa_keys, ed25519_keys, key_file):
    publish_good(dns_server, rsa_keys[0], ed25519_keys[0])
    keys = [load_key(DkimKeyConfig(DOMAIN, "s1", key_file(rsa_keys[0], "s1.key")))[0],
            load_key(DkimKeyConfig(DOMAIN, "e1", key_file(ed25519_keys[0], "e1.key")))[0]]
    return dns_server, keys


def resolver_for(server: DnsTestServer) -> MxResolver:
    return MxResolver(ResolverConfig(nameservers=[server.nameserver], timeout=1.0, lifetime=2.0))


async def run_checks(server: DnsTestServer, keys, *, domain: str = DOMAIN, bounce: str = BOUNCE,
                     sources=SOURCES) -> list[CheckResult]:
    return await check_dns(domain, sources=sources, dkim_keys=keys, bounce_domain=bounce,
                           inbound_addresses=[INBOUND], resolver=resolver_for(server))


def by_name(results: list[CheckResult], prefix: str) -> list[CheckResult]:
    found = [r for r in results if r.name.startswith(prefix)]
    assert found, f"no check named {prefix!r} in {[r.name for r in results]}"
    return found


def only_failure(results: list[CheckResult], prefix: str) -> CheckResult:
    """The failing check, asserting that it is the only one failing and is named `prefix`."""
    failing = [r for r in results if not r.ok]
    assert len(failing) == 1 and failing[0].name.startswith(prefix), [r.line() for r in failing]
    return failing[0]


async def test_good_records_pass_every_check(zone):
    server, keys = zone
    results = await run_checks(server, keys)
    assert all(r.ok for r in results), [r.line() for r in results if not r.ok]
    assert [r.name for r in results] == [
        "spf example.com 127.0.0.11 (ip1)", "spf example.com fd00::11 (ip6)",
        "spf bounces.example.com 127.0.0.11 (ip1)", "spf bounces.example.com fd00::11 (ip6)",
        "dkim s1._domainkey.example.com", "dkim e1._domainkey.example.com",
        "dmarc _dmarc.example.com",
        "fcrdns 127.0.0.11 (ip1)", "fcrdns fd00::11 (ip6)",
        "bounce-mx bounces.example.com", "alignment bounces.example.com",
    ]
    assert "matched ip4:127.0.0.0/28 at example.com" in results[0].detail
    assert "matched include:_spf.provider.test" in results[1].detail
    assert by_name(results, "dmarc")[0].detail == "p=quarantine"
    assert all(line.startswith("PASS ") for line in (r.line() for r in results))


# -- SPF --------------------------------------------------------------------------------------------

async def test_spf_that_does_not_cover_a_source_fails(zone):
    server, keys = zone
    server.txt(DOMAIN, "v=spf1 ip4:127.0.0.0/29 include:_spf.provider.test -all")      # .11 is outside /29
    failing = [r for r in await run_checks(server, keys) if not r.ok]
    # The bounce domain redirects to the domain's record, so it fails the same way.
    assert [r.name for r in failing] == ["spf example.com 127.0.0.11 (ip1)", "spf bounces.example.com 127.0.0.11 (ip1)"]
    assert failing[0].detail == "fail: matched -all at example.com"


async def test_missing_spf_fails(zone):
    server, keys = zone
    server.txt(BOUNCE)
    failing = [r for r in await run_checks(server, keys) if not r.ok]
    assert [r.name for r in failing] == ["spf bounces.example.com 127.0.0.11 (ip1)",
                                         "spf bounces.example.com fd00::11 (ip6)"]
    assert failing[0].detail == "none: no SPF record at bounces.example.com"


async def test_softfail_from_an_include_is_not_a_pass(zone):
    server, keys = zone
    server.txt("_spf.provider.test", "v=spf1 ip6:fd01::/64 ~all")
    failing = [r for r in await run_checks(server, keys) if not r.ok]
    assert [r.name for r in failing] == ["spf example.com fd00::11 (ip6)", "spf bounces.example.com fd00::11 (ip6)"]
    assert failing[0].detail == "fail: matched -all at example.com"


# -- DKIM -------------------------------------------------------------------------------------------

async def test_dkim_record_with_another_key_fails(zone, rsa_keys):
    server, keys = zone
    server.txt(f"s1._domainkey.{DOMAIN}", dns_record_value(rsa_keys[1]))
    failure = only_failure(await run_checks(server, keys), "dkim s1._domainkey")
    assert failure.detail.startswith("p= does not match the public key of ") and "s1.key" in failure.detail


async def test_missing_dkim_record_fails(zone):
    server, keys = zone
    server.remove(f"e1._domainkey.{DOMAIN}")
    failure = only_failure(await run_checks(server, keys), "dkim e1._domainkey")
    assert failure.detail == "no DKIM record; publish: v=DKIM1; k=ed25519; p=..."


async def test_dkim_record_of_the_wrong_key_type_fails(zone, ed25519_keys):
    server, keys = zone
    server.txt(f"e1._domainkey.{DOMAIN}", dns_record_value(ed25519_keys[0]).replace("k=ed25519", "k=rsa"))
    failure = only_failure(await run_checks(server, keys), "dkim e1._domainkey")
    assert failure.detail == "k=rsa in DNS, but the configured key is ed25519"


async def test_revoked_dkim_record_fails(zone):
    server, keys = zone
    server.txt(f"s1._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=")
    assert "revoked" in only_failure(await run_checks(server, keys), "dkim s1").detail


async def test_dkim_record_in_pkcs1_form_and_folded_passes(zone, rsa_keys):
    server, keys = zone
    pkcs1 = rsa_keys[0].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    p = base64.b64encode(pkcs1).decode()
    server.txt(f"s1._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={p[:100]} {p[100:]}")
    results = await run_checks(server, keys)
    assert all(r.ok for r in results), [r.line() for r in results if not r.ok]


async def test_no_dkim_key_configured_fails(zone):
    server, _keys = zone
    failure = only_failure(await run_checks(server, []), "dkim example.com")
    assert failure.detail == "no DKIM key configured for this domain"


# -- DMARC ------------------------------------------------------------------------------------------

async def test_missing_dmarc_fails(zone):
    server, keys = zone
    server.remove(f"_dmarc.{DOMAIN}")
    failure = only_failure(await run_checks(server, keys), "dmarc")
    assert failure.detail == "no DMARC record at _dmarc.example.com"


async def test_dmarc_without_a_policy_fails_and_two_records_fail(zone):
    server, keys = zone
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; rua=mailto:d@example.com")
    assert "p= missing or invalid" in only_failure(await run_checks(server, keys), "dmarc").detail
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none", "v=DMARC1; p=reject")
    assert "2 DMARC records" in only_failure(await run_checks(server, keys), "dmarc").detail


async def test_subdomain_inherits_the_parent_dmarc_policy(zone):
    server, _keys = zone
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; sp=none")
    sub = "news.example.com"
    server.txt(sub, "v=spf1 redirect=example.com")
    results = await check_dns(sub, sources=SOURCES, dkim_keys=[], bounce_domain=BOUNCE,
                              inbound_addresses=[INBOUND], resolver=resolver_for(server))
    dmarc = by_name(results, "dmarc")[0]
    assert dmarc.ok and dmarc.detail == "p=none (monitoring only: receivers act on nothing) (from _dmarc.example.com)"


# -- reverse DNS ------------------------------------------------------------------------------------

async def test_missing_ptr_fails(zone):
    server, keys = zone
    server.remove("11.0.0.127.in-addr.arpa")
    failure = only_failure(await run_checks(server, keys), "fcrdns 127.0.0.11")
    assert failure.detail == "no PTR record for 127.0.0.11; set it to mta1.example.com"


async def test_ptr_that_does_not_resolve_back_fails(zone):
    server, keys = zone
    server.address("mta1.example.com", "127.0.0.12")
    failure = only_failure(await run_checks(server, keys), "fcrdns 127.0.0.11")
    assert failure.detail == "PTR mta1.example.com does not resolve back to 127.0.0.11"


async def test_ptr_that_is_not_the_ehlo_name_fails(zone):
    server, keys = zone
    server.ptr("fd00::11", "host-11.isp.example")
    server.address("host-11.isp.example", "fd00::11")
    failure = only_failure(await run_checks(server, keys), "fcrdns fd00::11")
    assert failure.detail == "PTR host-11.isp.example is forward-confirmed, but the EHLO name is mta6.example.com"


# -- bounce domain ----------------------------------------------------------------------------------

async def test_bounce_mx_elsewhere_fails(zone):
    server, keys = zone
    server.address(f"mx.{BOUNCE}", "127.0.0.99")
    failure = only_failure(await run_checks(server, keys), "bounce-mx")
    assert failure.detail.startswith("no MX host has the inbound listener's address 127.0.0.25")


async def test_bounce_domain_without_mx_fails(zone):
    server, keys = zone
    server.remove(BOUNCE, "MX")
    server.address(BOUNCE, INBOUND)
    failure = only_failure(await run_checks(server, keys), "bounce-mx")
    assert failure.detail.startswith("no MX record")


async def test_bounce_domain_outside_the_sending_domain_does_not_align(zone):
    server, keys = zone
    other = "bounces.mailer.test"
    server.txt(other, "v=spf1 redirect=example.com")
    server.mx(other, (10, f"mx.{BOUNCE}"))
    failure = only_failure(await run_checks(server, keys, bounce=other), "alignment")
    assert failure.detail == ("return path domain does not align with example.com for DMARC; "
                              "use a bounce domain under example.com")


async def test_strict_spf_alignment_needs_the_same_domain(zone):
    server, keys = zone
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; aspf=s")
    failure = only_failure(await run_checks(server, keys), "alignment")
    assert "aspf=s" in failure.detail


async def test_dns_failure_is_a_failure_not_a_crash(zone):
    server, keys = zone
    server.servfail(f"_dmarc.{DOMAIN}")
    failure = only_failure(await run_checks(server, keys), "dmarc")
    assert "try again" in failure.detail


# -- the command ------------------------------------------------------------------------------------

def write_config(tmp_path, server: DnsTestServer, key_path: str, inbound_extra: str = "") -> str:
    config = tmp_path / "mta.toml"
    config.write_text(f"""
[mta]
hostname = "mta1.example.com"
spool_dir = "spool"

[inbound]
listen = ["{INBOUND}:2526"]
bounce_domain = "{BOUNCE}"
{inbound_extra}

[dns]
nameservers = ["{server.nameserver}"]
timeout = "1s"

[[egress.sources]]
name = "ip1"
address = "127.0.0.11"
ehlo = "mta1.example.com"

[[dkim.keys]]
domain = "{DOMAIN}"
selector = "s1"
key_file = "{key_path}"
""")
    return str(config)


def run_cli(config: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mta")
    parser.add_argument("--config")
    checkdns_cli.add_parser(parser.add_subparsers(dest="cmd"))
    return checkdns_cli.run(parser.parse_args(["check-dns", DOMAIN, "--config", config, *argv]))


def test_command_passes_on_good_records(zone, tmp_path, capsys):
    server, _keys = zone
    config = write_config(tmp_path, server, "s1.key")       # relative to the config file
    assert run_cli(config) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "example.com: 7 checks, 0 failing"
    assert all(line.startswith("PASS ") for line in out[:-1]), out
    assert "PASS dkim s1._domainkey.example.com: k=rsa public key matches" in "\n".join(out)


def test_command_fails_with_a_clear_line_and_exit_1(zone, tmp_path, capsys):
    server, _keys = zone
    server.remove(f"_dmarc.{DOMAIN}")
    server.remove("11.0.0.127.in-addr.arpa")
    assert run_cli(write_config(tmp_path, server, "s1.key")) == 1
    out = capsys.readouterr().out
    assert "FAIL dmarc _dmarc.example.com: no DMARC record at _dmarc.example.com" in out
    assert "FAIL fcrdns 127.0.0.11 (ip1): no PTR record for 127.0.0.11" in out
    assert out.splitlines()[-1] == "example.com: 7 checks, 2 failing"


def test_command_reports_a_missing_key_file_by_its_config_key(zone, tmp_path, capsys):
    server, _keys = zone
    # The config itself is invalid (as `mta check-config` says too): exit 2, the key named.
    assert run_cli(write_config(tmp_path, server, "missing.key")) == 2
    err = capsys.readouterr().err
    assert "dkim.keys[0].key_file: no such file" in err


def test_command_takes_extra_keys_and_overrides(zone, tmp_path, capsys, ed25519_keys, key_file):
    server, _keys = zone
    extra = key_file(ed25519_keys[0], "extra.key")
    assert run_cli(write_config(tmp_path, server, "s1.key"), "--dkim-key", f"e1={extra}",
                   "--inbound-address", "127.0.0.99") == 1
    out = capsys.readouterr().out
    assert "PASS dkim e1._domainkey.example.com" in out
    assert "FAIL bounce-mx bounces.example.com: no MX host has the inbound listener's address 127.0.0.99" in out


def test_command_checks_the_aligned_bounce_subdomain_when_configured(zone, tmp_path, capsys):
    server, _keys = zone
    config = write_config(tmp_path, server, "s1.key", inbound_extra='aligned_bounce_subdomain = "rp"')
    assert run_cli(config) == 1
    out = capsys.readouterr().out
    assert "FAIL bounce-mx rp.example.com: " in out
    server.mx("rp.example.com", (10, f"mx.{BOUNCE}"))
    server.txt("rp.example.com", "v=spf1 redirect=example.com")
    assert run_cli(config) == 0
    assert "PASS alignment rp.example.com: " in capsys.readouterr().out


def test_command_config_error_exits_2(tmp_path, capsys):
    config = tmp_path / "mta.toml"
    config.write_text('[[dkim.keys]]\ndomain = "example.com"\nselector = "s1"\n')
    assert run_cli(str(config)) == 2
    assert "dkim.keys[0].key_file: required key is missing" in capsys.readouterr().err
