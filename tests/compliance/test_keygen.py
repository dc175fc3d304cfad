"""`mta dkim keygen`: the key file (0600, PKCS#8, never clobbered) and the TXT record it prints."""

from __future__ import annotations

import argparse
import os
import re
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mta.compliance.dkim import DkimKeyConfig, DkimSigner, dns_record_value, keygen, public_key_base64
from tests.compliance.messages import message
from tests.compliance.verifiers import dkimpy_results


def run_keygen(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mta")
    keygen.add_parser(parser.add_subparsers(dest="cmd"))
    return keygen.run(parser.parse_args(["dkim", "keygen", *argv]))


def printed(out: str) -> tuple[str, str, list[str]]:
    """(record name, record value, the quoted strings of the zone-file line)."""
    name = re.search(r"^name:\s+(\S+)$", out, re.MULTILINE).group(1)
    value = re.search(r"^value:\s+(.+)$", out, re.MULTILINE).group(1)
    zone = out[out.index(f"{name}. "):]
    return name, value, re.findall(r'"([^"]*)"', zone)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = os.umask(0)               # even a careless umask must not make the key readable
    yield tmp_path
    os.umask(old)


def test_rsa_key_goes_to_domain_selector_key_with_mode_0600(in_tmp, capsys):
    assert run_keygen("Example.COM", "s2026") == 0
    path = in_tmp / "example.com.s2026.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")        # PKCS#8
    name, value, strings = printed(capsys.readouterr().out)
    assert name == "s2026._domainkey.example.com"
    assert value == f"v=DKIM1; k=rsa; p={public_key_base64(key)}"
    assert all(len(s.encode()) <= 255 for s in strings) and len(strings) == 2
    assert "".join(strings) == value


def test_printed_record_verifies_signatures_made_with_the_written_key(in_tmp, capsys):
    assert run_keygen("example.com", "s1", "--out", "dkim.pem") == 0
    name, value, _strings = printed(capsys.readouterr().out)
    signer = DkimSigner([DkimKeyConfig("example.com", "s1", str(in_tmp / "dkim.pem"))])
    msg = message()
    assert dkimpy_results(signer.sign(msg, "example.com") + msg, {name: value}) == [True]


def test_ed25519_key_and_record(in_tmp, capsys):
    assert run_keygen("example.com", "ed1", "--type", "ed25519") == 0
    key = serialization.load_pem_private_key((in_tmp / "example.com.ed1.key").read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    _name, value, strings = printed(capsys.readouterr().out)
    assert value == dns_record_value(key) and value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(strings) == 1


def test_existing_key_is_not_overwritten_without_force(in_tmp, capsys):
    path = in_tmp / "example.com.s1.key"
    path.write_bytes(b"live key")
    assert run_keygen("example.com", "s1") == 1
    assert "exists" in capsys.readouterr().err
    assert path.read_bytes() == b"live key"
    assert run_keygen("example.com", "s1", "--force") == 0
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in in_tmp.iterdir()] == ["example.com.s1.key"]       # no temporary left


@pytest.mark.parametrize("argv", [("not_a_domain", "s1"), ("example.com", "bad selector"),
                                  ("example.com", "s1", "--bits", "512")])
def test_bad_arguments_fail_without_writing(in_tmp, capsys, argv):
    assert run_keygen(*argv) == 1
    assert capsys.readouterr().err.startswith("mta dkim keygen: ")
    assert list(in_tmp.iterdir()) == []


def test_zone_file_record_splits_long_values():
    line = keygen.zone_file_record("s._domainkey.example.com", "x" * 600)
    strings = re.findall(r'"([^"]*)"', line)
    assert [len(s) for s in strings] == [255, 255, 90]
    assert line.startswith("s._domainkey.example.com. 3600 IN TXT ( ")
