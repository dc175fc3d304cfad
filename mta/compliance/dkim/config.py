"""The `[dkim]` config section: which keys sign for which sending domain.

Proposed TOML (the MTA's config gains `dkim: DkimSection` built by `warmup_base.configload.build`):

    [dkim]
    [[dkim.keys]]
    domain = "example.com"
    selector = "s2026a"
    key_file = "dkim/example.com.s2026a.key"     # relative to the config file
    algorithm = "rsa-sha256"                     # or "ed25519-sha256"; "" = from the key file

Several entries for one domain all sign: two selectors during a rotation (both live while DNS
catches up), or an RSA and an Ed25519 key side by side (receivers that do not know Ed25519 ignore
that signature and use the RSA one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from warmup_base.configload import ConfigError, build

__all__ = ["ALGORITHMS", "DkimKeyConfig", "DkimSection", "load_dkim_section", "validate_dkim_section"]

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")

# A DNS label as DKIM's selector and domain grammar allows (RFC 6376 3.1: sub-domain).
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass
class DkimKeyConfig:
    domain: str
    selector: str
    key_file: str
    algorithm: str = ""                 # "" = whatever the key file holds (RSA or Ed25519)


@dataclass
class DkimSection:
    keys: list[DkimKeyConfig] = field(default_factory=list)


def is_domain_name(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    return len(value) <= 253 and len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def is_selector(value: str) -> bool:
    # A selector may itself have dots ("2026.eu"); each part is a label.
    return bool(value) and all(_LABEL.match(part) for part in value.split("."))


def validate_dkim_section(section: DkimSection, prefix: str = "dkim") -> None:
    """Raises ConfigError naming the bad key, e.g. `dkim.keys[0].key_file`. Files are not read here."""
    seen: set[tuple[str, str]] = set()
    for i, key in enumerate(section.keys):
        where = f"{prefix}.keys[{i}]"
        if not is_domain_name(key.domain):
            raise ConfigError(f"{where}.domain: not a domain name: {key.domain!r}")
        if not is_selector(key.selector):
            raise ConfigError(f"{where}.selector: not a DKIM selector (DNS labels): {key.selector!r}")
        if not key.key_file:
            raise ConfigError(f"{where}.key_file: required")
        if key.algorithm and key.algorithm not in ALGORITHMS:
            raise ConfigError(f"{where}.algorithm: one of {', '.join(ALGORITHMS)}, got {key.algorithm!r}")
        pair = (key.domain.lower().rstrip("."), key.selector.lower())
        if pair in seen:
            # One selector names one DNS record, so it can hold only one public key.
            raise ConfigError(f"{where}.selector: selector {key.selector!r} is used twice for {key.domain}")
        seen.add(pair)


def load_dkim_section(table: Any, base_dir: str, prefix: str = "dkim") -> DkimSection:
    """Builds and validates the section from a raw TOML table; key files relative to `base_dir`."""
    section = build(DkimSection, table if table is not None else {}, prefix)
    for key in section.keys:
        key.domain = key.domain.lower().rstrip(".")
        if key.key_file and not os.path.isabs(key.key_file):
            key.key_file = os.path.normpath(os.path.join(base_dir, key.key_file))
    validate_dkim_section(section, prefix)
    return section
