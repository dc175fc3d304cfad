"""Finding and normalising e-mail addresses in free text and header fields."""

from __future__ import annotations

import re

# A pragmatic addr-spec: dot-atom or quoted local part, and a domain with at least one dot (or an
# address literal).  Bounces quote addresses in every style, so the pattern is deliberately loose
# on the local part and strict on the domain, which is what separates an address from noise.
_LOCAL = r"""(?:"[^"\n]{1,128}"|[A-Za-z0-9!#$%&'*+/=?^_`{|}~-][A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,127})"""
_DOMAIN = r"(?:\[[0-9A-Fa-f:.]{3,64}\]|[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})+)"
ADDRESS = re.compile(rf"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-])({_LOCAL}@{_DOMAIN})")

_TYPE_PREFIX = re.compile(r"^\s*(?:rfc822|rfc-822|x-unknown|unknown|utf-8|x400)\s*;\s*", re.IGNORECASE)


def normalise(address: str) -> str:
    """Lower-case, without angle brackets, surrounding quotes of the whole thing or trailing dots."""
    address = address.strip().strip("<>").strip()
    if address.startswith("'") and address.endswith("'"):
        address = address[1:-1]
    return address.rstrip(".").lower()


def find_addresses(text: str) -> list[str]:
    """All addresses in ``text``, normalised, in order, repeats removed."""
    seen: dict[str, None] = {}
    for match in ADDRESS.finditer(text):
        seen.setdefault(normalise(match.group(1)), None)
    return list(seen)


def address_from_field(value: str) -> str:
    """The address in a DSN field such as ``rfc822; <a@b.example>`` ("" if there is none)."""
    value = _TYPE_PREFIX.sub("", value.strip())
    match = ADDRESS.search(value)
    if match:
        return normalise(match.group(1))
    value = normalise(value)
    # An odd form the pattern misses is kept only if it still looks like one mailbox (a source
    # route such as "@relay:user@host" or a bare local part is not one).
    return value if value.count("@") == 1 and not value.startswith("@") and " " not in value else ""


def is_address(text: str) -> bool:
    return bool(ADDRESS.fullmatch(text.strip().strip("<>")))
