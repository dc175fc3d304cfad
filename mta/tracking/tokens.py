"""Signed open and click tokens: everything an engagement event needs travels in the URL.

Pure: no I/O, an injected clock. A token is URL-safe base64 (no padding) of

    version (1) | kind (1: b"o" open, b"c" click) | issued at, unix seconds (4)
    | queue id, recipient, tenant, campaign, variant, url (each: length (2) + UTF-8)
    | HMAC-SHA256(key, label | all of the above), first 12 bytes

so the tracking listener needs no lookup table and no database: a valid token is a fact signed by
us, a tampered one fails the MAC (404, no event). Several keys verify and the first signs, so the
secret can be rotated without breaking links in mail already delivered. Tokens do not expire by
default (a newsletter is opened months later); `max_age` can bound them.

The URL of a click token is the original link, so a redirect cannot be turned into an open
redirect: only a URL we signed is ever a Location.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["InvalidTrackingToken", "TrackingInfo", "TrackingTokens"]

VERSION = 1
OPEN = "o"
CLICK = "c"
_MAC_BYTES = 12
_LABEL = b"warmup-mta tracking v1|"     # keeps these MACs apart from the key's other uses
_FIELDS = ("queue_id", "recipient", "tenant", "campaign", "variant", "url")
_FIELD_LIMIT = 4096                      # bytes; a URL longer than this is not rewritten
_MAX_TOKEN = 8192
_CLOCK_SKEW = 300.0


@dataclass(frozen=True, slots=True)
class TrackingInfo:
    kind: str                   # OPEN or CLICK
    queue_id: str
    recipient: str
    tenant: str
    campaign: str
    variant: str
    url: str                    # the original link of a click; "" for an open
    issued_at: int              # unix seconds: when the message was accepted


class InvalidTrackingToken(ValueError):
    """Malformed, forged (or signed with a retired key), or expired."""


class TrackingTokens:
    def __init__(self, keys: Sequence[bytes], *, max_age: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not keys or not all(keys):
            raise ValueError("tracking tokens need at least one non-empty key")
        self._keys = [bytes(k) for k in keys]
        self._max_age = max_age
        self._clock = clock

    def issue(self, kind: str, *, queue_id: str, recipient: str, tenant: str = "", campaign: str = "",
              variant: str = "", url: str = "", issued_at: float | None = None) -> str:
        """ValueError if a field is too long (the caller leaves that link alone)."""
        if kind not in (OPEN, CLICK):
            raise ValueError(f"unknown tracking kind {kind!r}")
        values = (queue_id, recipient, tenant, campaign, variant, url)
        encoded = [v.encode("utf-8") for v in values]
        for name, value in zip(_FIELDS, encoded, strict=True):
            if len(value) > _FIELD_LIMIT:
                raise ValueError(f"{name} is too long for a tracking token ({len(value)} bytes)")
        when = int(self._clock() if issued_at is None else issued_at) & 0xFFFFFFFF
        payload = struct.pack("!Bc I", VERSION, kind.encode("ascii"), when)
        payload += b"".join(struct.pack("!H", len(v)) + v for v in encoded)
        return base64.urlsafe_b64encode(payload + _mac(self._keys[0], payload)).decode("ascii").rstrip("=")

    def verify(self, token: str) -> TrackingInfo:
        raw = _decode(token)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not any(hmac.compare_digest(mac, _mac(key, payload)) for key in self._keys):
            raise InvalidTrackingToken("bad signature")
        info = _parse(payload)
        age = self._clock() - info.issued_at
        if self._max_age and age > self._max_age:
            raise InvalidTrackingToken("expired")
        if age < -_CLOCK_SKEW:
            raise InvalidTrackingToken("issued in the future")
        return info


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _LABEL + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _decode(token: str) -> bytes:
    if not token or len(token) > _MAX_TOKEN:
        raise InvalidTrackingToken("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidTrackingToken("malformed") from None
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
        raise InvalidTrackingToken("malformed")        # not the one spelling we issue
    if len(raw) < 6 + 2 * len(_FIELDS) + _MAC_BYTES:
        raise InvalidTrackingToken("malformed (too short)")
    return raw


def _parse(payload: bytes) -> TrackingInfo:
    """Only called on payloads our key signed: a failure here is a retired format or a bug."""
    version, kind, issued_at = struct.unpack_from("!Bc I", payload)
    if version != VERSION or kind not in (b"o", b"c"):
        raise InvalidTrackingToken(f"unknown format (version {version})")
    at, values = struct.calcsize("!Bc I"), []
    try:
        for _ in _FIELDS:
            (n,) = struct.unpack_from("!H", payload, at)
            values.append(payload[at + 2:at + 2 + n].decode("utf-8"))
            at += 2 + n
    except (struct.error, UnicodeDecodeError):
        raise InvalidTrackingToken("malformed") from None
    if at != len(payload):
        raise InvalidTrackingToken("malformed")
    queue_id, recipient, tenant, campaign, variant, url = values
    return TrackingInfo(kind.decode("ascii"), queue_id, recipient, tenant, campaign, variant, url, issued_at)
