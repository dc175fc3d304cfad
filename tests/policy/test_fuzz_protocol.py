"""Fuzzing the policy protocol over a real socket to a real PolicyServer (issue 17, item 7).

Arbitrary bytes, arbitrary JSON and mutated valid requests: every line gets exactly one well-formed
reply, `ok` or a documented error code, never `internal`; the connection stays open (a ping after
each example is answered on it) and nothing escapes into the event loop. Only a line longer than
`max_message` ends the connection, after `too_large`, and the daemon serves the next client.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st

from policy.metrics import Metrics
from tests.policy.conftest import Clock, Running, start_server
from tests.support.fuzz import LoopThread, fuzz, fuzz_examples
from warmup_base.policy_protocol import wire as protocol

MAX_MESSAGE = 65536
# Error codes a client can cause (policy/PROTOCOL.md); `internal` is a bug and `unavailable` a
# failed state backend, which the memory store here never is.
CLIENT_ERRORS = {"bad_json", "bad_request", "unsupported_version", "unknown_op"}


@dataclass
class Policyd:
    loop: LoopThread
    running: Running
    metrics: Metrics
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    sock: socket.socket | None = None
    ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def port(self) -> int:
        return int(self.running.address.rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def lines(self, payload: bytes) -> list[dict[str, Any]]:
        """Sends `payload` and a ping on the kept connection; returns the replies before the ping's."""
        if self.sock is None:
            self.sock = self.connect()
            self.reader = self.sock.makefile("rb")
        sentinel = f"sentinel-{next(self.ids)}"
        self.sock.sendall(payload + protocol.encode({"v": 1, "id": sentinel, "op": "ping"}))
        replies = []
        while True:
            raw = self.reader.readline(4 * MAX_MESSAGE)
            assert raw.endswith(b"\n"), f"connection dropped after {len(replies)} replies: {raw[:200]!r}"
            reply = json.loads(raw)
            if reply.get("id") == sentinel and reply.get("ok") is True:
                return replies
            check_reply(reply, raw)
            replies.append(reply)


def check_reply(reply: Any, raw: bytes) -> None:
    assert isinstance(reply, dict) and reply.get("v") == 1 and isinstance(reply.get("ok"), bool), raw[:300]
    assert "id" in reply and (reply["id"] is None or isinstance(reply["id"], int | str)), raw[:300]
    if not reply["ok"]:
        error = reply.get("error")
        assert raw.isascii(), raw[:300]
        assert isinstance(error, dict) and isinstance(error.get("message"), str), raw[:300]
        assert error.get("code") in CLIENT_ERRORS, raw[:300]


def answered_lines(payload: bytes) -> int:
    """How many replies the server owes for `payload` + newline: one per line that is not blank."""
    return sum(1 for line in (payload + b"\n").split(b"\n")[:-1] if line.strip())


@pytest.fixture(scope="module")
def policyd() -> Iterator[Policyd]:
    loop = LoopThread()
    running, _tmpdir = loop.run(start_server("tcp", Clock(), max_message=MAX_MESSAGE))
    metrics = Metrics()
    running.server.metrics = metrics
    running.service.hooks = metrics
    p = Policyd(loop, running, metrics)
    loop.loop.set_exception_handler(lambda _loop, context: p.loop_errors.append(context))
    yield p
    if p.sock is not None:
        p.sock.close()
    loop.run(running.server.stop(1.0))
    loop.close()


@pytest.fixture
def served(policyd: Policyd) -> Iterator[Policyd]:
    yield policyd
    assert policyd.loop_errors == []
    errors = {s.labels["code"]: s.value for m in policyd.metrics.errors.collect() for s in m.samples
              if s.name.endswith("_total")}
    assert errors.get("internal", 0) == 0 and errors.get("unavailable", 0) == 0, errors


def exchange(policyd: Policyd, payload: bytes) -> list[dict[str, Any]]:
    payload = payload[:MAX_MESSAGE // 2]        # framing loss has a test of its own
    replies = policyd.lines(payload + b"\n")
    assert len(replies) == answered_lines(payload), (payload[:300], replies[:3])
    return replies


# ---- strategies
characters = st.characters(exclude_categories=())          # lone surrogates included
texts = (st.text(characters, max_size=40) | st.integers(100, 5000).map(lambda n: "x" * n)
         | st.sampled_from(["", "\ud800", "\udfff", "gmail.com", "mx.google.com", "ip1", "ip2", "delivered"]))
integers = (st.integers() | st.integers(0, 600).map(lambda e: 10**e) | st.integers(0, 600).map(lambda e: -(10**e))
            | st.sampled_from([-1, 0, 2**31, 2**63, protocol.MAX_COUNT, protocol.MAX_COUNT + 1]))
scalars = st.none() | st.booleans() | integers | st.floats() | texts
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
                           max_leaves=12)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """Nesting far past the JSON parser's stack, as raw text (json.dumps would recurse itself)."""
    depth = draw(st.integers(1, 20000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = opener * depth + "1" + closer * depth if draw(st.booleans()) else opener * depth
    return RawJson(inner)


@dataclass(frozen=True)
class RawJson:
    """A fragment spliced into the encoded request as it is."""

    text: str


def encode(message: Any, ascii_only: bool) -> bytes:
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, RawJson):
            raws.append(value.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    text = json.dumps(swap(message), ensure_ascii=ascii_only, separators=(",", ":"))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw)
    return text.encode("utf-8", "surrogatepass")


def ask() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "site": st.sampled_from(["gmail.com", "yahoo.com", "example.net"]),
        "mx_hosts": st.lists(st.sampled_from(["gmail-smtp-in.l.google.com", "mta5.am0.yahoodns.net", "mx.example.net"]),
                             max_size=2),
        "pool": st.just("default"), "sources": st.lists(st.sampled_from(["ip1", "ip2", "ip3"]), max_size=3),
        "stream": st.sampled_from(["marketing", "transactional"]), "sending_domain": st.just("example.test"),
        "tenant": st.sampled_from(["", "acme"]), "wanted": st.integers(0, 50)},
        optional={"mailbox": st.just("sam@example.test")})


def outcome() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "site": st.just("gmail.com"), "mx_hosts": st.just(["gmail-smtp-in.l.google.com"]),
        "source": st.sampled_from(["ip1", "ip2", "ip9"]), "sending_domain": st.just("example.test"),
        "tenant": st.just("acme"), "stream": st.just("marketing"),
        "outcome": st.sampled_from(["delivered", "deferred", "bounced", "throttled", "blocked", "complaint", "auth",
                                    "hard_bounce", "soft_bounce", "nonsense"]),
        "reason": st.sampled_from(["", "userunknown", "toomanyconn", "blocked", "spamdetected"]),
        "code": st.sampled_from([0, 250, 421, 450, 550, 554]), "status": st.sampled_from(["", "4.7.28", "5.1.1"]),
        "count": st.integers(1, 1000)},
        optional={"mailbox": st.just("sam@example.test")})


def valid_request() -> st.SearchStrategy[dict[str, Any]]:
    ids = st.integers(0, 2**53) | st.text(max_size=10)
    return st.one_of(
        st.fixed_dictionaries({"v": st.just(1), "id": ids, "op": st.just("hello"), "client": st.just("fuzz/1")}),
        st.fixed_dictionaries({"v": st.just(1), "id": ids, "op": st.just("ping")}),
        st.fixed_dictionaries({"v": st.just(1), "id": ids, "op": st.just("grant"),
                               "requests": st.lists(ask(), max_size=3)}),
        st.fixed_dictionaries({"v": st.just(1), "id": ids, "op": st.just("feedback"),
                               "outcomes": st.lists(outcome(), max_size=3)}),
    )


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    """A valid request with fields replaced, removed or added, then (sometimes) its bytes damaged."""
    message = draw(valid_request())
    for _ in range(draw(st.integers(0, 4))):
        # every dict in the message, so item fields are reached as well as top-level ones
        items = [i for key in ("requests", "outcomes") if isinstance(v := message.get(key), list) for i in v]
        targets = [message] + [item for item in items if isinstance(item, dict)]
        target = draw(st.sampled_from(targets))
        keys = sorted(target, key=str)
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and keys:
            del target[draw(st.sampled_from(keys))]
        elif action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_values | deep())
        else:
            target[draw(texts)] = draw(json_values)
    raw = encode(message, draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
        at = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip" and at < len(raw):
            raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
        elif kind == "insert":
            raw = raw[:at] + draw(st.binary(max_size=8) | st.sampled_from([b"\\ud800", b'"', b"[", b"}", b"\x00",
                                                                          b"\xff", b"1e999", b"-"])) + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + draw(st.integers(1, 16)):]
        else:
            raw = raw[:at]
    return raw


# ---- properties
@fuzz_examples(quick=150, fuzz=20_000)
def test_arbitrary_bytes_get_one_documented_reply_per_line(served: Policyd, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, st.binary(max_size=2000) | st.lists(st.binary(max_size=200), max_size=8).map(b"\n".join))
    def check(payload: bytes) -> None:
        for reply in exchange(served, payload):
            assert not reply["ok"] or reply["id"] is not None


@fuzz_examples(quick=150, fuzz=20_000)
def test_arbitrary_json_gets_a_documented_reply(served: Policyd, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, json_values | deep() | st.dictionaries(texts, json_values, max_size=6), st.booleans())
    def check(value: Any, ascii_only: bool) -> None:
        raw = encode(value, ascii_only)
        [reply] = exchange(served, raw)
        if not isinstance(value, dict | RawJson) and len(raw) <= MAX_MESSAGE // 2:
            assert reply["error"]["code"] == "bad_json", reply


@fuzz_examples(quick=200, fuzz=30_000)
def test_mutated_valid_requests_get_ok_or_a_documented_error(served: Policyd, max_examples: int,
                                                              quick: bool) -> None:
    @fuzz(max_examples, quick, mutated_request())
    def check(raw: bytes) -> None:
        exchange(served, raw)


@fuzz_examples(quick=150, fuzz=10_000)
def test_unmutated_valid_requests_are_answered_ok(served: Policyd, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, valid_request(), st.booleans())
    def check(message: dict[str, Any], ascii_only: bool) -> None:
        [reply] = exchange(served, encode(message, ascii_only))
        assert reply["ok"] and reply["id"] == message["id"], reply


@fuzz_examples(quick=8, fuzz=400)
def test_an_over_long_line_ends_only_its_own_connection(served: Policyd, max_examples: int, quick: bool) -> None:
    @fuzz(max_examples, quick, st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")), st.integers(1, 4096))
    def check(prefix: bytes, over: int) -> None:
        sock = served.connect()
        try:
            sock.sendall(prefix + b"x" * (MAX_MESSAGE + over - len(prefix)))
            reader = sock.makefile("rb")
            try:
                raw = reader.readline()
                rest = reader.read()
            except ConnectionResetError:     # the server closed with our excess unread: no reply to read
                raw, rest = b"", b""
            if raw:
                assert json.loads(raw)["error"]["code"] == "too_large"
            assert rest == b""
        finally:
            sock.close()
        assert exchange(served, protocol.encode({"v": 1, "id": 1, "op": "ping"}).rstrip(b"\n"))[0]["ok"]
