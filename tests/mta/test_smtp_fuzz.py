"""Property-based fuzzing of both SMTP listeners over real sockets to a running `mta serve`.

Hypothesis generates command lines (arbitrary bytes: non-UTF-8, encoded lone surrogates, NUL,
bare CR, overlong), MAIL/RCPT addresses and parameters, pipelined garbage and DATA with bare CR
and LF. For every example:

- every reply line is a well-formed SMTP reply (code 2xx-5xx, then space or hyphen, printable
  UTF-8, at most 512 octets) that names no Python exception and holds no traceback;
- the daemon keeps serving (a fresh connection is greeted with 220);
- no open relay: the fuzz client is bound to 127.0.5.1, outside `trusted_networks`
  (127.0.4.1/32, the one address the DATA fuzz on submission submits from), and never gets a
  250 for RCPT on submission; on the inbound listener only the feedback address is accepted.

At the end the daemon's metrics show no `internal_error` refusal and nothing was queued from
the untrusted address. The default run uses a few hundred examples (seconds); `-m fuzz` runs
FUZZ_EXAMPLES per property (`FUZZ_EXAMPLES=n` to change).
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta.spool.store import SpoolStore
from tests.mta.conftest import write_config
from tests.mta.proc import MtaProcess
from tests.support.receiver import free_port

UNTRUSTED = "127.0.5.1"
TRUSTED = "127.0.4.1"     # the only trusted address; the fuzz clients (and their TIME-WAIT churn) stay off 127.0.0.1
LISTEN = "127.0.0.1"
FEEDBACK = "fbl@bounces.fuzz.example"
DEFAULT_EXAMPLES = 60
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5000"))

REPLY_LINE = re.compile(r"[2-5][0-9][0-9]([ -][\x20-\x7e\u00a0-\U0010ffff]*)?")
LEAK = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z]*(Error|Exception)\b|\bError: \(")


@dataclass
class Daemon:
    proc: MtaProcess
    submission: tuple[str, int]
    inbound: tuple[str, int]
    metrics: tuple[str, int]
    spool_dir: str


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    ports = [free_port([LISTEN]) for _ in range(3)]
    dead_dns = free_port([LISTEN])     # nothing answers: accepted mail waits in the queue
    cfg = {
        "mta": {"hostname": "mta.fuzz.example", "spool_dir": os.path.join(tmp, "spool"), "log_level": "info"},
        "submission": {"listen": [f"{LISTEN}:{ports[0]}"], "trusted_networks": [f"{TRUSTED}/32"],
                       "max_message_size": 65536, "max_connections_per_ip": 1000},
        "inbound": {"listen": [f"{LISTEN}:{ports[1]}"], "bounce_domain": "bounces.fuzz.example",
                    "verp_secret": "fuzz-secret", "feedback_addresses": [FEEDBACK], "max_message_size": 65536},
        "dns": {"nameservers": [f"127.0.0.1:{dead_dns}"], "timeout": 1},
        "metrics": {"listen": f"{LISTEN}:{ports[2]}"},
    }
    path = write_config(tmp, cfg)
    proc = MtaProcess(path, os.path.join(tmp, "mta.log")).start((LISTEN, ports[0]))
    d = Daemon(proc, (LISTEN, ports[0]), (LISTEN, ports[1]), (LISTEN, ports[2]), cfg["mta"]["spool_dir"])
    yield d
    try:
        assert proc.proc is not None and proc.proc.poll() is None, proc.log_tail()
        metrics = urllib.request.urlopen(f"http://{LISTEN}:{ports[2]}/metrics", timeout=10).read().decode()
        assert 'reason="internal_error"' not in metrics, metrics
        with open(proc.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert "Traceback" not in log, proc.log_tail(60)
        assert _queued_from(d.spool_dir, UNTRUSTED) == 0
    finally:
        proc.terminate()


def _queued_from(spool_dir: str, client: str) -> int:
    store = SpoolStore(spool_dir, readonly=True)
    try:
        return store.db.execute("SELECT COUNT(*) FROM messages WHERE client = ?", (client,)).fetchone()[0]
    finally:
        store.close()


# ---------------------------------------------------------------------------- a raw client
class Conn:
    def __init__(self, addr: tuple[str, int], source: str) -> None:
        self.sock = socket.create_connection(addr, timeout=10, source_address=(source, 0))
        self.buf = b""
        self.lines: list[bytes] = []

    def readline(self, timeout: float = 10.0) -> bytes | None:
        self.sock.settimeout(timeout)
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        self.lines.append(line)
        return line

    def reply(self, timeout: float = 10.0) -> str:
        """One complete reply (lines joined by newlines); every line is checked as it comes."""
        out = []
        while True:
            line = self.readline(timeout)
            assert line is not None, f"no reply; so far: {self.lines!r}"
            check_line(line)
            text = line.decode()
            out.append(text)
            if len(text) == 3 or text[3] == " ":
                return "\n".join(out)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: bytes) -> str:
        self.send(line + b"\r\n")
        return self.reply()

    def drain(self, timeout: float = 5.0) -> list[bytes]:
        """Every remaining line until the server closes (or stays quiet for `timeout`)."""
        got = []
        while (line := self.readline(timeout)) is not None:
            check_line(line)
            got.append(line)
        return got

    def close(self) -> None:
        self.sock.close()


def check_line(line: bytes) -> None:
    assert len(line) + 2 <= 512, f"reply line over 512 octets: {line[:80]!r}..."
    text = line.decode("utf-8")          # raises on anything but UTF-8
    assert REPLY_LINE.fullmatch(text), f"malformed reply line: {line!r}"
    assert not LEAK.search(text), f"reply shows internals: {text!r}"


def still_serving(d: Daemon) -> None:
    for addr in (d.submission, d.inbound):
        c = Conn(addr, TRUSTED)
        try:
            assert c.reply().startswith("220 ")
            assert c.cmd(b"NOOP").startswith("250")
        finally:
            c.close()


def greeted(addr: tuple[str, int], source: str, ehlo: bool = True) -> Conn:
    c = Conn(addr, source)
    assert c.reply().startswith("220 ")
    if ehlo:
        assert c.cmd(b"EHLO fuzz.example").startswith("250")
    return c


# ---------------------------------------------------------------------------- strategies
VERBS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP",
         b"AUTH", b"AUTH PLAIN", b"AUTH LOGIN", b"STARTTLS", b"BDAT", b"QUIT", b"XCLIENT", b"mail from:<",
         b"rcpt to:<", b""]

# Text with lone surrogates, encoded the way a broken client would send them (as CESU-ish bytes).
surrogate_text = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
                         max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass"))
no_newline = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))
overlong = st.integers(400, 3000).flatmap(lambda n: st.sampled_from([b"A", b"\xff", b"<", b"\x00", b"@"])
                                          .map(lambda ch: ch * n))
argument = st.one_of(no_newline, surrogate_text.map(lambda b: b.replace(b"\n", b"")), overlong,
                     st.sampled_from([b"<", b"<a@", b"<@>", b"<\"", b"<\\", b"<>", b"<a@[", b"<a@b.c> SIZE=",
                                      b"\x00", b"\r", b" ", b"<a@b.c>\r<x@y.z>"]))
command_line = st.builds(lambda verb, sep, arg: verb + sep + arg, st.sampled_from(VERBS),
                         st.sampled_from([b"", b" ", b"  ", b"\t"]), argument)
any_line = command_line | no_newline | overlong

PARAM_KEYS = ["SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "NOTIFY", "ORCPT", "AUTH", "MT-PRIORITY", "X", ""]
param_value = st.one_of(st.text(max_size=20), st.integers(-10, 10**30).map(str),
                        st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME", "FULL", "HDRS", "NEVER", "<>"]))
param = st.builds(lambda k, eq, v: k + eq + v, st.sampled_from(PARAM_KEYS) | st.text(max_size=8),
                  st.sampled_from(["=", "", "=="]), param_value)
params = st.lists(param, max_size=4).map(lambda ps: "".join(" " + p for p in ps))
local = st.one_of(st.from_regex(r"[a-z0-9.+_-]{1,20}", fullmatch=True), st.text(max_size=20),
                  st.sampled_from(['"a b"', "a\\@b", "", ".", "a..b", "postmaster", "fbl"]))
domain = st.one_of(st.sampled_from(["bounces.fuzz.example", "example.com", "gmail.com", "[127.0.0.1]",
                                    "[IPv6:::1]", "localhost", "mta.fuzz.example", "fuzz.example", "",
                                    "BOUNCES.FUZZ.EXAMPLE", "bounces.fuzz.example."]),
                   st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){0,3}", fullmatch=True), st.text(max_size=20))
address = st.one_of(st.builds(lambda lp, d: f"{lp}@{d}", local, domain), st.just(FEEDBACK),
                    st.builds(lambda lp, d: f"@{d}:{lp}@example.com", local, domain), st.text(max_size=30))
bracket = st.sampled_from([("<", ">"), ("", ""), ("<", ""), (" <", "> "), ("<<", ">>")])


def enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")


envelope = st.builds(
    lambda mb, ma, mp, rcpts: (enc(f"MAIL FROM:{mb[0]}{ma}{mb[1]}{mp}"),
                               [enc(f"RCPT TO:{b[0]}{a}{b[1]}{p}") for b, a, p in rcpts]),
    bracket, address, params, st.lists(st.tuples(bracket, address, params), min_size=1, max_size=4))


def stuffed(data: bytes) -> bytes:
    """Data the listener must read to its end: no CRLF.CRLF inside (lines starting with a dot
    get another, as a client would send them)."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if data.startswith(b".") else data


data_chunk = st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
                       st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b".", b"\x00", b"Subject: x\r\n",
                                        b"\r\n\r\n", b"a" * 1200, b"\xff\xfe"]))
message_data = st.lists(data_chunk, max_size=12).map(lambda parts: stuffed(b"".join(parts)))


def bare_newline(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


# ---------------------------------------------------------------------------- properties
def run(max_examples: int, strategy: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Applies @given(strategy) with our settings (no example database in the repository)."""
    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        return settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                               HealthCheck.data_too_large])(given(strategy)(fn))
    return wrap


def prop_pipelined_garbage(d: Daemon, lines: list[bytes], listener: str) -> None:
    """Arbitrary command lines, pipelined in one write, then QUIT: every line answered well."""
    addr = d.submission if listener == "submission" else d.inbound
    c = greeted(addr, UNTRUSTED, ehlo=False)
    try:
        c.send(b"".join(line + b"\r\n" for line in lines) + b"\r\n.\r\nQUIT\r\n")
        replies = c.drain(timeout=3.0)
        for line in replies:
            if listener == "submission":
                assert not line.startswith(b"250 2.1.5"), f"untrusted peer got a recipient accepted: {lines!r}"
                assert not line.startswith(b"250 2.0.0 Ok: queued"), lines
    finally:
        c.close()
    still_serving(d)


def prop_envelope(d: Daemon, env: tuple[bytes, list[bytes]], listener: str) -> None:
    """MAIL and RCPT with arbitrary addresses and parameters, one at a time: no relay."""
    mail, rcpts = env
    addr = d.submission if listener == "submission" else d.inbound
    c = greeted(addr, UNTRUSTED)
    try:
        mail_reply = c.cmd(mail)
        for rcpt in rcpts:
            reply = c.cmd(rcpt)
            if reply.startswith("250") and mail_reply.startswith("250"):
                assert listener == "inbound", f"open relay: {mail!r} {rcpt!r} -> {reply!r}"
                assert _rcpt_address(rcpt).lower() == FEEDBACK.encode(), (rcpt, reply)
        assert c.cmd(b"RSET").startswith("250")
    finally:
        c.close()


def _rcpt_address(rcpt: bytes) -> bytes:
    arg = rcpt[len(b"RCPT TO:"):].strip()
    if arg.startswith(b"<"):
        return arg[1:].partition(b">")[0]
    return arg.split(b" ")[0]


def prop_data(d: Daemon, data: bytes, listener: str) -> None:
    """Arbitrary DATA (bare CR/LF, NUL, long lines, non-UTF-8) to an accepted recipient."""
    if listener == "submission":
        c = greeted(d.submission, TRUSTED)       # only a trusted client gets as far as DATA here
        rcpt = b"RCPT TO:<someone@example.com>"
    else:
        c = greeted(d.inbound, UNTRUSTED)
        rcpt = b"RCPT TO:<" + FEEDBACK.encode() + b">"
    try:
        assert c.cmd(b"MAIL FROM:<>").startswith("250")
        assert c.cmd(rcpt).startswith("250")
        assert c.cmd(b"DATA").startswith("354")
        c.send(data + b"\r\n.\r\nNOOP\r\n")
        result = c.reply()
        if bare_newline(data + b"\r\n"):
            assert result.startswith("554 5.6.0"), (data, result)
        assert result[:1] in "245", result
        assert c.reply().startswith("250"), "the session lost sync after DATA"
    finally:
        c.close()


LISTENERS = ["submission", "inbound"]


@pytest.mark.parametrize("listener", LISTENERS)
def test_pipelined_garbage_is_answered_plainly(daemon: Daemon, listener: str) -> None:
    run(DEFAULT_EXAMPLES, st.lists(any_line, min_size=1, max_size=8))(
        lambda lines: prop_pipelined_garbage(daemon, lines, listener))()


@pytest.mark.parametrize("listener", LISTENERS)
def test_envelope_parameters_never_open_a_relay(daemon: Daemon, listener: str) -> None:
    run(DEFAULT_EXAMPLES, envelope)(lambda env: prop_envelope(daemon, env, listener))()


@pytest.mark.parametrize("listener", LISTENERS)
def test_arbitrary_data_is_refused_or_accepted_in_sync(daemon: Daemon, listener: str) -> None:
    run(DEFAULT_EXAMPLES, message_data)(lambda data: prop_data(daemon, data, listener))()


@pytest.mark.fuzz
@pytest.mark.parametrize("listener", LISTENERS)
def test_fuzz_many(daemon: Daemon, listener: str) -> None:
    started = time.monotonic()
    run(FUZZ_EXAMPLES, st.lists(any_line, min_size=1, max_size=8))(
        lambda lines: prop_pipelined_garbage(daemon, lines, listener))()
    run(FUZZ_EXAMPLES, envelope)(lambda env: prop_envelope(daemon, env, listener))()
    run(FUZZ_EXAMPLES, message_data)(lambda data: prop_data(daemon, data, listener))()
    print(f"{listener}: 3 x {FUZZ_EXAMPLES} examples in {time.monotonic() - started:.1f}s")
