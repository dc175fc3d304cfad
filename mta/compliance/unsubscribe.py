"""One-click unsubscribe (RFC 8058 / RFC 2369): signed tokens and the headers that carry them.

Pure: no I/O, an injected clock. The HTTP endpoint lives in `mta.http.unsubscribe`; the inbound
listener recognises `unsub-TOKEN@<mailto domain>` with `token_from_address`.

Token: base32 (lower case, no padding; safe in a URL path and in a mail local part, and immune to
MTAs that fold local parts to lower case) of

    version (1) | issued at, unix seconds (4) | queue id, tenant, sending domain, recipient
    (each: length (1) + UTF-8) | HMAC-SHA256(key, label | all of the above), first 12 bytes

The token carries everything the suppression entry needs, so an unsubscribe works long after the
message has left the spool, with no state. Several keys may verify (the first one issues), so
the secret can be rotated without breaking the links in mail already sent.

Several recipients: the headers are added once per message at acceptance, and a token names one
recipient. A message with several recipients gets no List-Unsubscribe from us (see
`one_click_recipient`): a message-wide token would let any one recipient's click (or a mail
client's automatic one-click POST) unsubscribe all the others, and a one-click POST carries
nothing that says who clicked. Senders of marketing mail submit one recipient per message (Gmail
and Yahoo require a working one-click unsubscribe for each recipient); an app that wants several
recipients and unsubscribe links can set its own List-Unsubscribe header, which we leave alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from warmup_base.configload import ConfigError, Duration

__all__ = [
    "LOCAL_PART_PREFIX",
    "InvalidToken",
    "UnsubscribeConfig",
    "UnsubscribeInfo",
    "UnsubscribeTokens",
    "has_list_unsubscribe",
    "is_local_host",
    "list_unsubscribe_headers",
    "mailto_address",
    "one_click_recipient",
    "token_from_address",
    "validate_unsubscribe_config",
]

VERSION = 1
LOCAL_PART_PREFIX = "unsub-"
DEFAULT_MAX_AGE = 90 * 86400.0
_MAC_BYTES = 12                 # 96 bits: forging one online is out of reach
_CLOCK_SKEW = 300.0             # tokens "from the future" within this are accepted (other nodes' clocks)
_LABEL = b"warmup-mta unsubscribe v1|"   # keeps these MACs apart from other uses of the same key
_TOKEN_CHARS = re.compile(r"^[a-z2-7]+$")
_FIELD_LIMIT = 255


@dataclass(frozen=True, slots=True)
class UnsubscribeInfo:
    """What a valid token says: who asked not to get mail from whom, and from which message."""

    recipient: str
    tenant: str
    sending_domain: str
    queue_id: str
    issued_at: int              # unix seconds


class InvalidToken(ValueError):
    """A token that is malformed, forged (or signed with a retired key), or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsubscribeTokens:
    """Issues and verifies tokens. `keys[0]` signs; every key verifies (rotation)."""

    def __init__(self, keys: Sequence[bytes], *, max_age: float = DEFAULT_MAX_AGE,
                 clock: Callable[[], float] = time.time) -> None:
        if not keys or not all(keys):
            raise ValueError("unsubscribe tokens need at least one non-empty key")
        self._keys = [bytes(k) for k in keys]
        self._max_age = max_age
        self._clock = clock

    def issue(self, *, recipient: str, tenant: str, sending_domain: str, queue_id: str) -> str:
        """A token for one recipient of one message. ValueError if a field is over 255 bytes."""
        parts = [queue_id, tenant, sending_domain.lower(), recipient]
        encoded = [p.encode("utf-8") for p in parts]
        for name, value in zip(("queue_id", "tenant", "sending_domain", "recipient"), encoded, strict=True):
            if len(value) > _FIELD_LIMIT:
                raise ValueError(f"{name} is too long for an unsubscribe token ({len(value)} bytes)")
        payload = struct.pack("!BI", VERSION, int(self._clock()) & 0xFFFFFFFF)
        payload += b"".join(bytes([len(v)]) + v for v in encoded)
        raw = payload + _mac(self._keys[0], payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def verify(self, token: str) -> UnsubscribeInfo:
        """The token's content, or InvalidToken saying why not (malformed, bad signature, expired)."""
        raw = _decode(token)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not any(hmac.compare_digest(mac, _mac(key, payload)) for key in self._keys):
            raise InvalidToken("the link is not one of ours (bad signature)")
        info = _parse_payload(payload)
        age = self._clock() - info.issued_at
        if age > self._max_age:
            raise InvalidToken(f"the link has expired (issued {int(age // 86400)} days ago)")
        if age < -_CLOCK_SKEW:
            raise InvalidToken("the link was issued in the future")
        return info


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _LABEL + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _decode(token: str) -> bytes:
    text = token.strip().lower()
    if not text or len(text) > 1024 or not _TOKEN_CHARS.match(text):
        raise InvalidToken("the link is malformed")
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise InvalidToken("the link is malformed") from None
    if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != text:
        raise InvalidToken("the link is malformed")     # stray bits in the last character: not ours
    if len(raw) < 5 + 4 + _MAC_BYTES:
        raise InvalidToken("the link is malformed (too short)")
    return raw


def _parse_payload(payload: bytes) -> UnsubscribeInfo:
    """Only called on payloads our key signed, so a parse failure means a bug or a retired format."""
    version, issued_at = struct.unpack_from("!BI", payload)
    if version != VERSION:
        raise InvalidToken(f"the link has an unknown format (version {version})")
    fields, at = [], 5
    try:
        for _ in range(4):
            n = payload[at]
            fields.append(payload[at + 1:at + 1 + n].decode("utf-8"))
            at += 1 + n
    except (IndexError, UnicodeDecodeError):
        raise InvalidToken("the link is malformed") from None
    if at != len(payload):
        raise InvalidToken("the link is malformed")
    queue_id, tenant, sending_domain, recipient = fields
    return UnsubscribeInfo(recipient, tenant, sending_domain, queue_id, issued_at)


# -- addresses and headers --------------------------------------------------------------------------

def mailto_address(token: str, mailto_domain: str) -> str:
    return f"{LOCAL_PART_PREFIX}{token}@{mailto_domain}"


def token_from_address(address: str, mailto_domain: str) -> str | None:
    """The token in `unsub-TOKEN@mailto_domain` (case-insensitive), or None if the address is not one."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or domain.lower().rstrip(".") != mailto_domain.lower().rstrip("."):
        return None
    local = local.lower()
    if not local.startswith(LOCAL_PART_PREFIX) or len(local) == len(LOCAL_PART_PREFIX):
        return None
    return local[len(LOCAL_PART_PREFIX):]


def one_click_recipient(recipients: Sequence[str]) -> str | None:
    """The recipient the unsubscribe headers may name: the only one, or None for several (see top)."""
    return recipients[0] if len(recipients) == 1 else None


_LIST_UNSUBSCRIBE = re.compile(rb"(?im)^list-unsubscribe[ \t]*:")


def has_list_unsubscribe(header_block: bytes) -> bool:
    """True if the app already set List-Unsubscribe: then we add nothing (two would confuse receivers)."""
    return bool(_LIST_UNSUBSCRIBE.search(header_block))


def list_unsubscribe_headers(tokens: UnsubscribeTokens, *, recipient: str, tenant: str, sending_domain: str,
                             queue_id: str, https_base: str = "", mailto_domain: str = "") -> bytes:
    """`List-Unsubscribe` (https and/or mailto) and, with https, `List-Unsubscribe-Post`, as CRLF
    header lines to add at acceptance, before DKIM signing (RFC 8058 4: the signature must cover
    both). b"" if the recipient cannot be put in a token."""
    if not https_base and not mailto_domain:
        raise ValueError("list_unsubscribe_headers needs https_base or mailto_domain")
    try:
        token = tokens.issue(recipient=recipient, tenant=tenant, sending_domain=sending_domain,
                             queue_id=queue_id)
    except ValueError:
        return b""
    uris = []
    if https_base:
        uris.append(f"<{https_base.rstrip('/')}/u/{token}>")
    if mailto_domain:
        uris.append(f"<mailto:{mailto_address(token, mailto_domain)}>")
    lines = "List-Unsubscribe: " + ",\r\n ".join(uris) + "\r\n"
    if https_base:
        lines += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    return lines.encode("ascii")


# -- config -----------------------------------------------------------------------------------------

@dataclass
class UnsubscribeConfig:
    """Proposed `[unsubscribe]` section of the MTA config."""

    enabled: bool = False
    streams: list[str] = field(default_factory=lambda: ["marketing"])   # streams that get the headers
    https_base: str = ""            # "https://unsub.example.com" -> https://unsub.example.com/u/TOKEN
    mailto_domain: str = ""         # "" = inbound.bounce_domain (the inbound listener takes unsub-*@ there)
    listen: str = ""                # "127.0.0.1:8025": the HTTP endpoint (TLS in front, or tls_cert/tls_key)
    tls_cert: str = ""
    tls_key: str = ""
    secret: str = ""                # HMAC key; or secret_file; "" and no file = the VERP key
    secret_file: str = ""
    previous_secrets: list[str] = field(default_factory=list)   # still verify, never issue (rotation)
    token_max_age: Duration = Duration(DEFAULT_MAX_AGE)

    def keys(self, fallback: bytes = b"") -> list[bytes]:
        """Verification keys, the issuing one first; `fallback` (the VERP key) when none is set."""
        first = self.secret.encode()
        if not first and self.secret_file:
            with open(self.secret_file, "rb") as f:
                first = f.read().strip()
        keys = [first or fallback, *(s.encode() for s in self.previous_secrets)]
        return [k for k in keys if k]


def validate_unsubscribe_config(section: UnsubscribeConfig, prefix: str = "unsubscribe") -> None:
    """Raises ConfigError naming the bad key."""
    if section.https_base:
        parts = urlsplit(section.https_base)
        if not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"{prefix}.https_base: expected a URL such as https://unsub.example.com, "
                              f"got {section.https_base!r}")
        # RFC 8058 3.1: the one-click URI must be HTTPS; plain http only for local trials.
        if parts.scheme != "https" and not (parts.scheme == "http" and is_local_host(parts.hostname)):
            raise ConfigError(f"{prefix}.https_base: must be an https:// URL (RFC 8058), got {section.https_base!r}")
    if section.enabled and not section.https_base and not section.mailto_domain:
        # mailto_domain "" is filled from inbound.bounce_domain by the loader, so this is only a guard.
        raise ConfigError(f"{prefix}.https_base: set https_base or mailto_domain when enabled")
    if section.listen:
        host, sep, port = section.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{prefix}.listen: expected host:port, got {section.listen!r}")
    if bool(section.tls_cert) != bool(section.tls_key):
        raise ConfigError(f"{prefix}.tls_cert / {prefix}.tls_key: give both or neither")
    if section.token_max_age <= 0:
        raise ConfigError(f"{prefix}.token_max_age: must be positive")
    for i, secret in enumerate(section.previous_secrets):
        if not secret:
            raise ConfigError(f"{prefix}.previous_secrets[{i}]: must not be empty")


def is_local_host(host: str) -> bool:
    """localhost or a loopback address: where plain-http URLs are fine (local trials)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
