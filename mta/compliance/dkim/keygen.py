"""`mta dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N] [--out FILE] [--force]`

Writes a new private key (PKCS#8 PEM, mode 0600; default `DOMAIN.SELECTOR.key` in the current
folder) and prints the DNS TXT record to publish. An existing file is never overwritten unless
--force is given: overwriting a live key breaks every message in flight signed with it.

Wiring (mta/cli/main.py): `keygen.add_parser(sub)` next to the other sub-commands, and dispatch
`args.cmd == "dkim"` to `keygen.run(args)` before the config is loaded (keygen needs none).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mta.compliance.dkim.config import is_domain_name, is_selector
from mta.compliance.dkim.keys import PrivateKey, dns_record_name, dns_record_value

__all__ = ["add_parser", "generate_key", "run", "zone_file_record"]

MAX_TXT_STRING = 255        # one <character-string> in a TXT record (RFC 1035 3.3)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    dkim = subparsers.add_parser("dkim", help="DKIM key tools")
    commands = dkim.add_subparsers(dest="dkim_cmd", required=True)
    keygen = commands.add_parser("keygen", help="make a DKIM key and print its DNS TXT record")
    keygen.add_argument("domain", help="signing domain (d=), e.g. example.com")
    keygen.add_argument("selector", help="selector (s=), e.g. s2026a")
    keygen.add_argument("--type", choices=("rsa", "ed25519"), default="rsa", dest="key_type",
                        help="key type (default rsa; receivers that cannot check ed25519 need an rsa key too)")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    keygen.add_argument("--out", default="", help="private key file (default DOMAIN.SELECTOR.key here)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    return dkim


def generate_key(key_type: str, bits: int = 2048) -> PrivateKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def zone_file_record(name: str, value: str, ttl: int = 3600) -> str:
    """`NAME. TTL IN TXT ( "..." "..." )` with the value split into strings of <= 255 bytes."""
    data = value.encode("ascii")
    strings = [data[i:i + MAX_TXT_STRING].decode("ascii") for i in range(0, len(data), MAX_TXT_STRING)]
    quoted = "\n\t".join(f'"{s}"' for s in strings)
    return f"{name}. {ttl} IN TXT ( {quoted} )"


def run(args: argparse.Namespace) -> int:
    domain = args.domain.lower().rstrip(".")
    if not is_domain_name(domain):
        return _fail(f"not a domain name: {args.domain!r}")
    if not is_selector(args.selector):
        return _fail(f"not a DKIM selector (letters, digits, '-' and '.'): {args.selector!r}")
    if args.key_type == "rsa" and not 1024 <= args.bits <= 8192:
        return _fail(f"--bits: use 2048 (1024 to 8192 allowed), got {args.bits}")
    path = args.out or f"{domain}.{args.selector}.key"
    if os.path.exists(path) and not args.force:
        return _fail(f"{path} exists; not overwriting a key that may be live (use --force to replace it)")
    key = generate_key(args.key_type, args.bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        _write_private(path, pem)
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror}")
    name, value = dns_record_name(domain, args.selector), dns_record_value(key)
    print(f"wrote private key {path} (mode 0600)", file=sys.stderr)
    print(f"name:  {name}")
    print(f"value: {value}")
    print(zone_file_record(name, value))
    return 0


def _write_private(path: str, data: bytes) -> None:
    """Writes via a 0600 temporary file renamed into place: the key is never readable by others,
    not even for a moment, and a crash leaves no half-written key."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".dkim-key-")       # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _fail(message: str) -> int:
    print(f"mta dkim keygen: {message}", file=sys.stderr)
    return 1
