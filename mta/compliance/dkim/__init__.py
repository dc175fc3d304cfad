"""DKIM signing (RFC 6376 rsa-sha256, RFC 8463 ed25519-sha256) for messages at acceptance.

Public API:
    DkimKeyConfig, DkimSection, load_dkim_section   the `[[dkim.keys]]` config entries
    DkimSigner(configs, clock=...)                   .sign(message, domain) -> header bytes; .reload()
    DkimKey, load_key, dns_record_name, dns_record_value, DkimKeyError
    keygen.add_parser / keygen.run                   the `mta dkim keygen` command
"""

from mta.compliance.dkim.config import DkimKeyConfig, DkimSection, load_dkim_section, validate_dkim_section
from mta.compliance.dkim.keys import (
    DkimKey,
    DkimKeyError,
    dns_record_name,
    dns_record_value,
    load_key,
    public_key_base64,
)
from mta.compliance.dkim.signer import DkimSigner, ReloadReport

__all__ = [
    "DkimKey",
    "DkimKeyConfig",
    "DkimKeyError",
    "DkimSection",
    "DkimSigner",
    "ReloadReport",
    "dns_record_name",
    "dns_record_value",
    "load_dkim_section",
    "load_key",
    "public_key_base64",
    "validate_dkim_section",
]
