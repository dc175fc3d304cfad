"""Independent DKIM verifiers for the tests: dkimpy, Mail::DKIM (Perl) and OpenDKIM.

Each gets the public keys from DNS: dkimpy through a lookup function over a dict, Mail::DKIM
through a Net::DNS resolver pointed at a loopback `DnsTestServer`, and opendkim-testmsg (which
only knows the system resolver) in a private mount namespace whose /etc/resolv.conf names a
`DnsTestServer` on port 53 of a loopback address.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from tests.support.dnsserver import DnsTestServer

OPENDKIM_TESTMSG = "/usr/sbin/opendkim-testmsg"
_PERL_VERIFIER = Path(__file__).with_name("mail_dkim_verify.pl")


def signature_fields(headers: bytes) -> list[bytes]:
    """The DKIM-Signature fields (each with its CRLF) in a block of prepended header fields."""
    starts = [m.start() for m in re.finditer(rb"(?im)^DKIM-Signature:", headers)]
    ends = [*starts[1:], len(headers)]
    return [headers[s:e] for s, e in zip(starts, ends, strict=True)]


def tags(field: bytes) -> dict[str, str]:
    value = field.split(b":", 1)[1].decode()
    out = {}
    for part in value.split(";"):
        name, _eq, tag_value = part.partition("=")
        out[name.strip()] = re.sub(r"\s+", "", tag_value)
    return out


# -- dkimpy -----------------------------------------------------------------------------------------

def dkimpy_results(message: bytes, records: dict[str, str]) -> list[bool]:
    """dkimpy's verdict on every signature of `message`; `records` maps TXT names to values."""
    if b"a=ed25519-sha256" in message:
        pytest.importorskip("nacl", reason="dkimpy needs PyNaCl to verify ed25519 (pip install pynacl)")

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip("."), "").encode()

    def verify(index: int) -> bool:
        try:
            return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=lookup))
        except dkim.DKIMException:      # some failures (body hash mismatch) raise instead of returning False
            return False

    count = len(re.findall(rb"(?im)^DKIM-Signature:", message))
    return [verify(i) for i in range(count)]


# -- Mail::DKIM -------------------------------------------------------------------------------------

@functools.cache
def _have_mail_dkim() -> bool:
    probe = subprocess.run(["perl", "-MMail::DKIM::Verifier", "-MNet::DNS::Resolver", "-e", "1"],
                           capture_output=True, check=False) if shutil.which("perl") else None
    return probe is not None and probe.returncode == 0


def mail_dkim_results(message: bytes, server: DnsTestServer) -> list[str]:
    """Mail::DKIM's result per signature ("pass", "fail (message has been altered)", ...)."""
    if not _have_mail_dkim():
        pytest.skip("Mail::DKIM not installed: apt-get install --no-install-recommends libmail-dkim-perl")
    host, _sep, port = server.nameserver.rpartition(":")
    run = subprocess.run(["perl", str(_PERL_VERIFIER), host, port], input=message, capture_output=True,
                         timeout=60, check=True)
    lines = run.stdout.decode().splitlines()
    return [line.split(": ", 1)[1] for line in lines if line.startswith("signature ")]


# -- OpenDKIM ---------------------------------------------------------------------------------------

def start_port53_dns() -> tuple[DnsTestServer | None, str]:
    """A DnsTestServer on port 53 of a random 127.53.x.y, or (None, why not)."""
    if not os.path.exists(OPENDKIM_TESTMSG):
        return None, "opendkim-testmsg not installed: apt-get install --no-install-recommends opendkim-tools"
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"):
        return None, "opendkim-testmsg only uses the system resolver: the test needs root and unshare(1)"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None, f"cannot make a mount namespace for opendkim-testmsg: {probe.stderr.decode().strip()}"
    for _attempt in range(5):
        host = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
        try:
            return DnsTestServer(host=host, port=53).start(), ""
        except OSError:
            continue
    return None, "cannot bind a loopback DNS server on port 53"


class OpendkimVerifier:
    """Runs opendkim-testmsg with /etc/resolv.conf (in its own mount namespace) naming `server`."""

    def __init__(self, server: DnsTestServer, folder: Path) -> None:
        self.server = server
        self._resolv_conf = folder / "resolv.conf"
        self._resolv_conf.write_text(f"nameserver {server.host}\noptions timeout:2 attempts:2\n")

    def verify(self, message: bytes) -> tuple[bool, str]:
        """(True, "") when every signature verifies; else (False, opendkim's complaint)."""
        script = f"mount --bind {self._resolv_conf} /etc/resolv.conf && exec {OPENDKIM_TESTMSG}"
        run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                             input=message, capture_output=True, timeout=60, check=False)
        return run.returncode == 0, run.stderr.decode().strip()
