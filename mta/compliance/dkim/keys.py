"""DKIM private keys: loading them (with a permission check), and their public DNS records.

Keys are held as `cryptography` objects so the private-key step runs in OpenSSL (0.26 ms for
RSA-2048 against 7 ms in pure Python; see shared/reference/costs.md).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mta.compliance.dkim.config import DkimKeyConfig

__all__ = ["DkimKey", "DkimKeyError", "dns_record_name", "dns_record_value", "load_key", "public_key_base64"]

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
MIN_RSA_BITS = 1024         # receivers (Gmail among them) reject shorter keys outright


class DkimKeyError(Exception):
    """A key file cannot be used; the message names the file (and config key when known)."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str                 # lower case, no trailing dot
    selector: str
    algorithm: str              # "rsa-sha256" or "ed25519-sha256"
    private_key: PrivateKey
    key_file: str = ""

    def sign(self, data: bytes) -> bytes:
        """The raw signature over `data` (the canonicalised headers), per the key's algorithm."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463: Ed25519 signs the SHA-256 digest of the header data, not the data itself.
        digest = hashes.Hash(hashes.SHA256())
        digest.update(data)
        return self.private_key.sign(digest.finalize())

    @property
    def key_type(self) -> str:
        """The DNS record's k= value."""
        return "rsa" if self.algorithm == "rsa-sha256" else "ed25519"


def public_key_base64(private_key: PrivateKey) -> str:
    """The p= value: DER SubjectPublicKeyInfo for RSA, the raw 32-byte key for Ed25519 (RFC 8463)."""
    public = private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode("ascii")


def dns_record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain.rstrip('.')}"


def dns_record_value(private_key: PrivateKey) -> str:
    key_type = "ed25519" if isinstance(private_key, ed25519.Ed25519PrivateKey) else "rsa"
    return f"v=DKIM1; k={key_type}; p={public_key_base64(private_key)}"


def algorithm_of(private_key: PrivateKey) -> str:
    return "ed25519-sha256" if isinstance(private_key, ed25519.Ed25519PrivateKey) else "rsa-sha256"


def load_key(config: DkimKeyConfig, where: str = "") -> tuple[DkimKey, list[str]]:
    """(key, warnings) for one `[[dkim.keys]]` entry; DkimKeyError when the file cannot be used.

    `where` is the config path of the entry (e.g. "dkim.keys[0]") so messages name it."""
    label = f"{where}.key_file: " if where else ""
    path = config.key_file
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read()
    except OSError as exc:
        raise DkimKeyError(f"{label}cannot read DKIM key {path}: {exc.strerror}") from None
    warnings = []
    if mode & stat.S_IROTH:
        warnings.append(f"{label}DKIM key {path} is world-readable (mode {stat.S_IMODE(mode):04o}); "
                        f"anyone on this host can sign as {config.domain}: chmod 600 it")
    private_key = _parse_private_key(data, f"{label}DKIM key {path}")
    algorithm = algorithm_of(private_key)
    if config.algorithm and config.algorithm != algorithm:
        raise DkimKeyError(f"{label}DKIM key {path} holds a {algorithm.split('-')[0]} key, "
                           f"but the algorithm is {config.algorithm}")
    if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size < MIN_RSA_BITS:
        raise DkimKeyError(f"{label}DKIM key {path} has {private_key.key_size} bits; "
                           f"receivers reject RSA keys under {MIN_RSA_BITS} bits")
    key = DkimKey(config.domain.lower().rstrip("."), config.selector, algorithm, private_key, path)
    return key, warnings


def _parse_private_key(data: bytes, what: str) -> PrivateKey:
    """PEM (PKCS#8 or PKCS#1), DER, or the bare base64 Ed25519 seed that dkimpy's dknewkey writes."""
    loaded = None
    try:
        if b"-----BEGIN" in data:
            loaded = serialization.load_pem_private_key(data, password=None)
        else:
            stripped = data.strip()
            seed = _base64_or_none(stripped)
            if seed is not None and len(seed) == 32:
                loaded = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            else:
                loaded = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise DkimKeyError(f"{what} is encrypted; DKIM keys must be stored without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise DkimKeyError(f"{what} is not a usable private key ({exc})") from None
    if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"{what} is a {type(loaded).__name__}; DKIM needs an RSA or Ed25519 key")
    return loaded


def _base64_or_none(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
