"""Key files and config entries: loading, permission warnings, reload on SIGHUP, errors that
name the entry."""

from __future__ import annotations

import base64
import logging
import os

import pytest
from cryptography.hazmat.primitives import serialization

from mta.compliance.dkim import DkimKeyConfig, DkimKeyError, DkimSigner, dns_record_value, load_dkim_section, load_key
from tests.compliance.messages import message
from tests.compliance.verifiers import dkimpy_results, signature_fields, tags
from warmup_base.configload import ConfigError


def test_world_readable_key_file_loads_with_a_warning(rsa_keys, key_file, caplog):
    path = key_file(rsa_keys[0], "open.key")
    os.chmod(path, 0o644)
    _key, warnings = load_key(DkimKeyConfig("example.com", "s1", path), "dkim.keys[0]")
    assert len(warnings) == 1
    assert "dkim.keys[0].key_file" in warnings[0] and "world-readable" in warnings[0] and path in warnings[0]
    with caplog.at_level(logging.WARNING, logger="mta.dkim"):
        DkimSigner([DkimKeyConfig("example.com", "s1", path)])
    assert "world-readable" in caplog.text


def test_private_key_file_loads_without_warning(rsa_keys, key_file):
    _key, warnings = load_key(DkimKeyConfig("example.com", "s1", key_file(rsa_keys[0], "k.key")))
    assert warnings == []


def test_missing_key_file_stops_start_up_naming_the_entry(rsa_keys, key_file, tmp_path):
    good = DkimKeyConfig("example.com", "s1", key_file(rsa_keys[0], "k.key"))
    missing = DkimKeyConfig("example.com", "s2", str(tmp_path / "nope.key"))
    with pytest.raises(DkimKeyError, match=r"dkim\.keys\[1\]\.key_file: cannot read DKIM key .*nope\.key"):
        DkimSigner([good, missing])


def test_garbage_key_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "junk.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DkimKeyError, match=r"junk\.key is not a usable private key"):
        load_key(DkimKeyConfig("example.com", "s1", str(path)))


def test_algorithm_that_does_not_fit_the_key_is_an_error(ed25519_keys, key_file):
    path = key_file(ed25519_keys[0], "ed.key")
    with pytest.raises(DkimKeyError, match=r"dkim\.keys\[0\]\.key_file: .* holds a ed25519 key, but the algorithm "
                                           r"is rsa-sha256"):
        load_key(DkimKeyConfig("example.com", "s1", path, "rsa-sha256"), "dkim.keys[0]")


def test_algorithm_defaults_to_the_key_type(ed25519_keys, key_file):
    key, _warnings = load_key(DkimKeyConfig("example.com", "s1", key_file(ed25519_keys[0], "ed.key")))
    assert key.algorithm == "ed25519-sha256" and key.key_type == "ed25519"


def test_traditional_rsa_pem_and_dkimpy_raw_ed25519_seed_load(rsa_keys, ed25519_keys, tmp_path):
    pkcs1 = tmp_path / "pkcs1.key"
    pkcs1.write_bytes(rsa_keys[0].private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.TraditionalOpenSSL,
                                                serialization.NoEncryption()))
    seed = tmp_path / "seed.key"        # what dkimpy's dknewkey writes for ed25519
    raw = ed25519_keys[0].private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    seed.write_bytes(base64.b64encode(raw) + b"\n")
    assert load_key(DkimKeyConfig("example.com", "a", str(pkcs1)))[0].algorithm == "rsa-sha256"
    loaded = load_key(DkimKeyConfig("example.com", "b", str(seed)))[0]
    assert dns_record_value(loaded.private_key) == dns_record_value(ed25519_keys[0])


def test_reload_picks_up_a_replaced_key_file(rsa_keys, key_file):
    path = key_file(rsa_keys[0], "k.key")
    signer = DkimSigner([DkimKeyConfig("example.com", "s1", path)])
    key_file(rsa_keys[1], "k.key")          # the operator put a new key in place, then SIGHUP
    report = signer.reload()
    assert report.ok and report.errors == []
    msg = message()
    headers = signer.sign(msg, "example.com")
    assert dkimpy_results(headers + msg, {"s1._domainkey.example.com": dns_record_value(rsa_keys[1])}) == [True]


def test_reload_keeps_the_old_key_when_the_file_is_broken(rsa_keys, key_file, caplog):
    path = key_file(rsa_keys[0], "k.key")
    signer = DkimSigner([DkimKeyConfig("example.com", "s1", path)])
    with open(path, "wb") as f:
        f.write(b"half a key")
    with caplog.at_level(logging.ERROR, logger="mta.dkim"):
        report = signer.reload()
    assert not report.ok
    assert report.errors[0].startswith("dkim.keys[0].key_file: ")
    assert path in report.errors[0] and "still signing with the key loaded before" in report.errors[0]
    assert path in caplog.text
    msg = message()
    headers = signer.sign(msg, "example.com")
    assert dkimpy_results(headers + msg, {"s1._domainkey.example.com": dns_record_value(rsa_keys[0])}) == [True]


def test_reload_with_new_config_adds_a_selector_and_skips_a_new_broken_entry(rsa_keys, key_file, tmp_path):
    first = DkimKeyConfig("example.com", "s1", key_file(rsa_keys[0], "a.key"))
    signer = DkimSigner([first])
    second = DkimKeyConfig("example.com", "s2", key_file(rsa_keys[1], "b.key"))
    broken = DkimKeyConfig("example.org", "s1", str(tmp_path / "missing.key"))
    report = signer.reload([first, second, broken])
    assert report.errors == [f"dkim.keys[2].key_file: cannot read DKIM key {tmp_path / 'missing.key'}: "
                             "No such file or directory"]
    assert [k.selector for k in signer.keys_for("example.com")] == ["s1", "s2"]
    assert signer.sign(message(), "example.org") == b""
    assert [tags(f)["s"] for f in signature_fields(signer.sign(message(), "example.com"))] == ["s1", "s2"]


# -- config section ---------------------------------------------------------------------------------

def test_config_section_resolves_key_files_against_the_config_folder(tmp_path):
    section = load_dkim_section({"keys": [{"domain": "Example.COM.", "selector": "s1", "key_file": "keys/a.key"},
                                          {"domain": "example.com", "selector": "s2", "key_file": "/abs/b.key",
                                           "algorithm": "ed25519-sha256"}]}, str(tmp_path))
    assert section.keys[0].key_file == str(tmp_path / "keys" / "a.key")
    assert section.keys[0].domain == "example.com" and section.keys[0].algorithm == ""
    assert section.keys[1].key_file == "/abs/b.key"
    assert load_dkim_section(None, str(tmp_path)).keys == []


@pytest.mark.parametrize("entry, error", [
    ({"domain": "example.com", "selector": "s1"}, r"dkim\.keys\[0\]\.key_file: required key is missing"),
    ({"domain": "example.com", "selector": "s1", "key_file": ""}, r"dkim\.keys\[0\]\.key_file: required"),
    ({"domain": "example.com", "selector": "s1", "key_file": "k", "algorithm": "rsa-sha1"},
     r"dkim\.keys\[0\]\.algorithm: one of rsa-sha256, ed25519-sha256"),
    ({"domain": "not a domain", "selector": "s1", "key_file": "k"}, r"dkim\.keys\[0\]\.domain: not a domain name"),
    ({"domain": "example.com", "selector": "bad_selector!", "key_file": "k"}, r"dkim\.keys\[0\]\.selector"),
    ({"domain": "example.com", "selector": "s1", "keyfile": "k"}, r"dkim\.keys\[0\]\.keyfile: unknown key"),
    ({"domain": "example.com", "selector": 7, "key_file": "k"}, r"dkim\.keys\[0\]\.selector: expected a string"),
])
def test_config_errors_name_the_bad_key(entry, error, tmp_path):
    with pytest.raises(ConfigError, match=error):
        load_dkim_section({"keys": [entry]}, str(tmp_path))


def test_config_rejects_one_selector_twice_for_a_domain(tmp_path):
    entry = {"domain": "example.com", "selector": "s1", "key_file": "k"}
    with pytest.raises(ConfigError, match=r"dkim\.keys\[1\]\.selector: selector 's1' is used twice"):
        load_dkim_section({"keys": [entry, dict(entry)]}, str(tmp_path))
