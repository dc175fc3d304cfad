"""VERP return paths that say which message (and recipient) a bounce is about, and that cannot
be forged without the key.

Format (local part at the bounce domain, all lower-case):

    b-<queue id>-<mac>@<bounce domain>                       one transaction, several recipients
    b-<queue id>-<mac>-<local>=<domain>@<bounce domain>      exactly one recipient

The bounce domain is `inbound.bounce_domain`, or `<inbound.aligned_bounce_subdomain>.<sending
domain>` when that is configured (its MX must point at the inbound listener; `mta check-dns`
checks it), so the return path's domain aligns with the From domain for DMARC's SPF check.

`mac` is the first 40 bits of HMAC-SHA256(key, "<queue id>|<recipient>") in base32 (8
characters); the recipient is "" in the first form. The recipient part is the recipient's
address with its last "@" replaced by "=" (the domain has no "="), so it can be recovered
without any state: a bounce often arrives after the message has left the spool.

The recipient form is used only when the recipient's address is ASCII and the resulting local
part stays within 64 octets (RFC 5321 4.5.3.1.1); otherwise the message form is used and the
bounce's own report names the recipient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

PREFIX = "b-"
MAX_LOCAL_PART = 64


@dataclass(frozen=True, slots=True)
class VerpInfo:
    queue_id: str
    recipient: str     # "" when the address names the message only


def _mac(key: bytes, queue_id: str, recipient: str) -> str:
    digest = hmac.new(key, f"{queue_id}|{recipient}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:5]).decode().lower()


def encode(key: bytes, queue_id: str, recipient: str | None, bounce_domain: str) -> str:
    qid = queue_id.lower()
    if recipient and recipient.isascii():
        rcpt = recipient.lower()
        local, _at, domain = rcpt.rpartition("@")
        tagged = f"{PREFIX}{qid}-{_mac(key, qid, rcpt)}-{local}={domain}"
        if len(tagged) <= MAX_LOCAL_PART:
            return f"{tagged}@{bounce_domain}"
    return f"{PREFIX}{qid}-{_mac(key, qid, '')}@{bounce_domain}"


class BounceDomains:
    """Where our return paths live: the bounce domain, and with an aligned subdomain configured
    `<subdomain>.<sending domain>` for every sending domain (so SPF aligns for DMARC)."""

    def __init__(self, bounce_domain: str, aligned_subdomain: str = "") -> None:
        self.bounce_domain = bounce_domain.lower()
        self.aligned = aligned_subdomain.lower().strip(".")

    def for_sender(self, sending_domain: str) -> str:
        if self.aligned and sending_domain:
            return f"{self.aligned}.{sending_domain.lower()}"
        return self.bounce_domain

    def __contains__(self, domain: str) -> bool:
        domain = domain.lower()
        if domain == self.bounce_domain:
            return True
        return bool(self.aligned) and domain.startswith(self.aligned + ".") and "." in domain[len(self.aligned) + 1:]


def decode(key: bytes, address: str, domains: BounceDomains | str) -> VerpInfo | None:
    """The VerpInfo of a genuine VERP address of ours, or None (unknown form or forged)."""
    if isinstance(domains, str):
        domains = BounceDomains(domains)
    local, _at, domain = address.lower().rpartition("@")
    if domain not in domains or not local.startswith(PREFIX):
        return None
    parts = local[len(PREFIX):].split("-", 2)
    if len(parts) < 2:
        return None
    qid, mac = parts[0], parts[1]
    recipient = ""
    if len(parts) == 3:
        rcpt_local, eq, rcpt_domain = parts[2].rpartition("=")
        if not eq or not rcpt_local or not rcpt_domain:
            return None
        recipient = f"{rcpt_local}@{rcpt_domain}"
    if not hmac.compare_digest(mac, _mac(key, qid, recipient)):
        return None
    return VerpInfo(qid.upper(), recipient)
