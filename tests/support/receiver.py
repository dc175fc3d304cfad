"""A real SMTP receiver for tests (aiosmtpd on a loopback address, in its own thread and loop), so
both in-process daemons and subprocesses can deliver to it.

It records what arrived (source address, EHLO name, envelope, data, connection, TLS, the user
that authenticated) and can be scripted: per-recipient replies (e.g. 4xx twice then 250), a reply
after DATA, a refusing greeting, STARTTLS or TLS from the first byte (`implicit_tls`, port 465
style) with a throw-away certificate, and required AUTH (`users`, as a relay asks).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import ipaddress
import itertools
import os
import random
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    peer_ip: str
    ehlo: str
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int
    tls: bool
    time: float
    auth_user: str = ""         # who authenticated on that connection ("" = nobody)


@dataclass
class Script:
    """How the receiver answers. Callables run on the receiver's thread."""

    rcpt: Callable[[str, int], str | None] | None = None    # (recipient, n-th time seen) -> reply or None=250
    data: Callable[[Received], str | None] | None = None    # -> reply or None=250
    greeting: str | None = None                            # e.g. "421 4.7.0 busy": answer this and hang up
    ehlo: str | None = None                                # e.g. "554 5.7.1 not you": the answer to EHLO
    close_after_messages: int = 0                          # drop the connection after this many (0 = never)
    pipelining: bool = True                                # offer PIPELINING (RFC 2920), as most MX hosts do


class _Handler:
    def __init__(self, owner: Receiver) -> None:
        self.owner = owner

    async def handle_EHLO(self, server: SMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.owner.script.ehlo:
            return [self.owner.script.ehlo]
        if self.owner.script.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        script = self.owner.script
        with self.owner.lock:
            self.owner.rcpt_seen[address] += 1
            n = self.owner.rcpt_seen[address]
        reply = script.rcpt(address, n) if script.rcpt else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        peer = session.peer[0]
        conn_id = getattr(session, "conn_id", 0)
        user = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        msg = Received(peer, session.host_name or "", envelope.mail_from, list(envelope.rcpt_tos),
                       envelope.original_content, conn_id, session.ssl is not None or self.owner.implicit_tls,
                       time.time(), user)
        script = self.owner.script
        reply = script.data(msg) if script.data else None
        if reply and not reply.startswith("2"):
            return reply
        with self.owner.lock:
            self.owner.messages.append(msg)
            per_conn = sum(1 for m in self.owner.messages if m.connection == conn_id)
        if script.close_after_messages and per_conn >= script.close_after_messages:
            server.loop.call_soon(server.transport.close)
        return reply or "250 2.0.0 Ok: queued"


class _ReceiverSMTP(SMTP):
    def __init__(self, owner: Receiver, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            with self.owner.lock:
                self.owner.connections += 1
                self.session.conn_id = next(self.owner._conn_ids)
                self.owner.peers.append(transport.get_extra_info("peername")[0])


class _Refuser(asyncio.Protocol):
    def __init__(self, owner: Receiver) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with self.owner.lock:
            self.owner.connections += 1
        greeting = self.owner.script.greeting or "421 4.3.2 go away"
        transport.write(greeting.encode() + b"\r\n")  # type: ignore[attr-defined]
        transport.close()


def self_signed_cert(hostname: str = "mx.test", ip: str = "") -> tuple[str, str]:
    """Writes a throw-away certificate (for `hostname`, and `ip` when given) and key; returns
    their paths. The certificate is its own CA: a client may trust it as its `ca_file`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(hostname)] + ([x509.IPAddress(ipaddress.ip_address(ip))] if ip else [])),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = tempfile.mkdtemp(prefix="mta-test-tls-")
    cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class Receiver:
    def __init__(self, host: str, port: int, *, script: Script | None = None, tls: bool = False,
                 hostname: str = "mx.test", implicit_tls: bool = False, users: dict[str, str] | None = None,
                 cert: tuple[str, str] | None = None) -> None:
        self.host, self.port, self.hostname = host, port, hostname
        self.implicit_tls = implicit_tls
        self.users = users                  # AUTH required with one of these (name -> password)
        self.auth_failures = 0
        self.script = script or Script()
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.rcpt_seen: Counter[str] = Counter()
        self.connections = 0
        self.peers: list[str] = []
        self._conn_ids = itertools.count(1)
        self._tls = None
        self.cert_path = ""
        if tls or implicit_tls:
            cert_path, key_path = cert or self_signed_cert(hostname, ip=host)
            self.cert_path = cert_path
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(cert_path, key_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _factory(self) -> asyncio.Protocol:
        if self.script.greeting:
            return _Refuser(self)
        auth: dict[str, Any] = {}
        if self.users is not None:
            # Over implicit TLS aiosmtpd sees no STARTTLS, so it must not insist on one for AUTH
            # (and its warning about AUTH without TLS does not apply: the whole session is TLS).
            auth = dict(authenticator=self._authenticate, auth_required=True,
                        auth_require_tls=not self.implicit_tls)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return _ReceiverSMTP(self, _Handler(self), hostname=self.hostname,
                                 tls_context=None if self.implicit_tls else self._tls,
                                 enable_SMTPUTF8=True, data_size_limit=50 * 1024 * 1024, loop=self._loop, **auth)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and self.users is not None
              and self.users.get(data.login.decode()) == data.password.decode())
        if not ok:
            with self.lock:
                self.auth_failures += 1
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> Receiver:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                loop.create_server(self._factory, self.host, self.port, reuse_address=True,
                                   ssl=self._tls if self.implicit_tls else None))
            self._ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=f"receiver-{self.host}")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def tried(self) -> set[str]:
        """Every recipient offered in a RCPT so far (accepted or not); a copy taken under the lock,
        as the receiver's thread adds to it meanwhile."""
        with self.lock:
            return set(self.rcpt_seen)

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.messages for r in m.rcpt_tos]

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f"receiver {self.host}:{self.port} got {len(self.messages)} messages, "
                                 f"wanted {n}")

    async def await_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            await asyncio.sleep(0.02)
        raise AssertionError(f"receiver {self.host}:{self.port} got {self.count()} messages, wanted {n}")


_ports = random.Random()   # its own generator: tests that seed `random` must not get equal ports
# Ports handed out lately. A port is probed free, but the daemon binds it later; a second call
# before that bind (a daemon's submission and inbound ports are picked together) must not get it too.
_recent_ports: collections.deque[int] = collections.deque(maxlen=4000)


def free_port(hosts: list[str]) -> int:
    """A TCP port that is free on every one of `hosts` (all receivers of a test share it).

    Picked below the kernel's ephemeral range (32768 and up on Linux), never from it: a port
    handed to a daemon that binds it later (or again, after a restart) must not meanwhile become
    the source port of some outgoing connection, which would make that bind fail."""
    for _ in range(200):
        port = _ports.randrange(20000, 32768)
        if port in _recent_ports:
            continue
        ok = True
        for h in hosts:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            _recent_ports.append(port)
            return port
    raise RuntimeError("no common free port")

