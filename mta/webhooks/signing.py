"""Standard Webhooks signatures (symmetric, `v1`): pure, no I/O.

The signed content is `"<webhook-id>.<webhook-timestamp>.<body>"` (bytes of the body exactly as
sent), the key is the secret's decoded bytes, the signature header is `v1,<base64 HMAC-SHA256>`;
several space-separated signatures may stand in the header (secret rotation), one match suffices.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["PREFIX", "InvalidSecret", "parse_secret", "sign", "signed_headers", "verify"]

PREFIX = "whsec_"
MIN_KEY_BYTES = 24      # the spec's minimum (192 bits)
MAX_KEY_BYTES = 64      # the spec's maximum (512 bits)


class InvalidSecret(ValueError):
    """A secret that is not `whsec_` + base64 of 24 to 64 bytes."""


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    if not secret.startswith(PREFIX):
        raise InvalidSecret(f"must start with {PREFIX!r} (then base64 of {MIN_KEY_BYTES}-{MAX_KEY_BYTES} random "
                            "bytes, e.g. from `python3 -c \"import base64,os; "
                            "print('whsec_'+base64.b64encode(os.urandom(32)).decode())\"`)")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("the part after whsec_ is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecret(f"must hold {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, has {len(key)}")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one request."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.' (it delimits the signed content)")
    content = msg_id.encode() + b"." + str(int(timestamp)).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (the timestamp is the attempt's)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": sign(key, msg_id, timestamp, body)}


def verify(key: bytes, headers: dict[str, str], body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """True if one `v1` signature in the headers matches and the timestamp is within `tolerance`
    of `now` (replay protection). For receivers written in Python, and for our tests."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or "." in msg_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign(key, msg_id, int(stamp), body).encode()
    return any(hmac.compare_digest(expected, candidate.encode())
               for candidate in headers.get("webhook-signature", "").split())
