"""DKIM signing cost per 20 KB message: rsa-2048, ed25519, and both at once (the issue's budget
is <= 0.5 ms per message for one signature). Compares with dkimpy's `dkim.sign` for RSA.

    .venv/bin/python bench/dkim_bench.py [--messages N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mta.compliance.dkim import DkimKeyConfig, DkimSigner


def make_message(size: int) -> bytes:
    headers = (b"From: Example News <news@example.com>\r\nTo: alice@example.net\r\n"
               b"Subject: Weekly  news\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
               b"Message-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    line = b"Lorem ipsum dolor sit amet,  consectetur\tadipiscing elit, sed do eiusmod tempor. \r\n"
    return headers + line * (max(size - len(headers), 0) // len(line) + 1)


def write_key(folder: str, name: str, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(path, 0o600)
    return path


def per_message_ms(sign, message: bytes, count: int) -> tuple[float, float]:
    """(median, best) of 5 rounds of `count` signings, in ms per message."""
    sign(message)               # warm up
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            sign(message)
        rounds.append((time.perf_counter() - start) * 1000 / count)
    return statistics.median(rounds), min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="signings per round (default 400)")
    parser.add_argument("--size", type=int, default=20 * 1024, help="message size in bytes (default 20 KB)")
    args = parser.parse_args()
    message = make_message(args.size)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        rsa_cfg = DkimKeyConfig("example.com", "r1", write_key(folder, "r.key", rsa_key))
        ed_cfg = DkimKeyConfig("example.com", "e1", write_key(folder, "e.key", ed_key))
        signers = {"rsa-2048": DkimSigner([rsa_cfg]), "ed25519": DkimSigner([ed_cfg]),
                   "rsa-2048 + ed25519": DkimSigner([rsa_cfg, ed_cfg])}
        print(f"DKIM signing, {len(message)} byte message, {args.messages} per round, median (best) of 5 rounds")
        for name, signer in signers.items():
            median, best = per_message_ms(lambda m, s=signer: s.sign(m, "example.com"), message, args.messages)
            print(f"  mta.dkim {name:<20} {median:7.3f} ms/message ({best:.3f})")
        pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        median, best = per_message_ms(
            lambda m: dkim.sign(m, b"r1", b"example.com", pem, canonicalize=(b"relaxed", b"relaxed")),
            message, max(args.messages // 20, 5))
        print(f"  dkimpy   {'rsa-2048 (dkim.sign)':<20} {median:7.3f} ms/message ({best:.3f})")


if __name__ == "__main__":
    main()
