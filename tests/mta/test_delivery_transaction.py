"""One outbound transaction (mta.delivery.transaction through Connection.send) against real
receivers on loopback: the body arrives byte for byte (leading dots included), PIPELINING is used
when offered, and every mix of accepted and refused recipients gives the right result per
recipient and leaves the connection usable for the next message."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import aiosmtplib
import pytest

from mta.delivery.client import ClientSettings, Connection, Source, connect
from mta.delivery.dnsroute_core import MxHost, Route
from mta.delivery.replypeek import ReplyPeek
from mta.delivery.transaction import take_reply, wire_body
from mta.model import Job, MessageInfo, Recipient
from tests.support.receiver import Receiver, Script, free_port

HOST = "127.0.1.7"
SOURCE = Source("ip1", "127.0.0.11", "mta1.test.example")
DOTTED = (b".starts with a dot\r\nSubject: dots\r\n\r\n.\r\n..\r\n.line\r\nmiddle . dot\r\n"
          b"..two\r\n. space\r\nlast\r\n")


def _job(*addresses: str, smtputf8: bool = False, qid: str = "Q1") -> Job:
    info = MessageInfo(id=1, queue_id=qid, sender="s@sender.example", created=0.0, size=0, stream="default",
                       priority=0, tenant="", pool="default", sending_domain="sender.example",
                       header_message_id="<m@x>", smtputf8=smtputf8)
    recipients = [Recipient(i + 1, a, a.rpartition("@")[2]) for i, a in enumerate(addresses)]
    return Job(info, recipients[0].domain, recipients)


async def _connect(port: int, timeout: float = 30.0) -> Connection:
    route = Route("example.test", (MxHost("mx.example.test", 10, (HOST,)),), "mx.example.test", False, 1e12)
    return await connect(route, SOURCE, ClientSettings(port=port, command_timeout=timeout), random.Random(1))


@pytest.fixture
def port() -> int:
    return free_port([HOST])


@pytest.mark.parametrize("pipelining", [True, False])
async def test_body_with_leading_dots_arrives_unchanged(port: int, pipelining: bool) -> None:
    with Receiver(HOST, port, script=Script(pipelining=pipelining)) as rx:
        conn = await _connect(port)
        assert conn.smtp.supports_extension("pipelining") is pipelining
        results = await conn.send(_job("u@example.test"), DOTTED, "s@sender.example")
        assert [(r.code, r.phase) for r in results] == [(250, "data")]
        got = await rx.await_for(1)
        assert got[0].data == DOTTED
        await conn.close()


@pytest.mark.parametrize("pipelining", [True, False])
async def test_some_recipients_refused(port: int, pipelining: bool) -> None:
    def rcpt(address: str, _n: int) -> str | None:
        return "550 5.1.1 no such user" if address.startswith("bad") else None

    with Receiver(HOST, port, script=Script(rcpt=rcpt, pipelining=pipelining)) as rx:
        conn = await _connect(port)
        job = _job("a@example.test", "bad1@example.test", "b@example.test", "bad2@example.test")
        results = await conn.send(job, b"Subject: x\r\n\r\nhello\r\n", "s@sender.example")
        assert [(r.recipient.address, r.code, r.status, r.phase) for r in results] == [
            ("a@example.test", 250, "2.0.0", "data"),
            ("bad1@example.test", 550, "5.1.1", "rcpt"),
            ("b@example.test", 250, "2.0.0", "data"),
            ("bad2@example.test", 550, "5.1.1", "rcpt"),
        ]
        got = await rx.await_for(1)
        assert got[0].rcpt_tos == ["a@example.test", "b@example.test"]
        # The same connection carries the next message.
        again = await conn.send(_job("c@example.test", qid="Q2"), b"Subject: y\r\n\r\nagain\r\n", "s@sender.example")
        assert [r.code for r in again] == [250]
        assert conn.usable and rx.connections == 1
        assert (await rx.await_for(2))[1].rcpt_tos == ["c@example.test"]
        await conn.close()


@pytest.mark.parametrize("pipelining", [True, False])
async def test_all_recipients_refused_sends_no_message(port: int, pipelining: bool) -> None:
    def rcpt(address: str, _n: int) -> str | None:
        return "450 4.2.1 try later" if address != "ok@example.test" else None

    with Receiver(HOST, port, script=Script(rcpt=rcpt, pipelining=pipelining)) as rx:
        conn = await _connect(port)
        before = asyncio.get_running_loop().create_future()     # never done: DATA's body must not wait on it
        results = await conn.send(_job("x@example.test", "y@example.test"), b"Subject: x\r\n\r\nno\r\n",
                                  "s@sender.example", before_data=before)
        assert [(r.code, r.status, r.phase) for r in results] == [(450, "4.2.1", "rcpt")] * 2
        assert all(r.temporary for r in results)
        assert conn.usable
        results = await conn.send(_job("ok@example.test", qid="Q2"), b"Subject: y\r\n\r\nyes\r\n", "s@sender.example")
        assert [r.code for r in results] == [250]
        got = await rx.await_for(1)
        assert len(got) == 1 and got[0].rcpt_tos == ["ok@example.test"]
        await conn.close()


async def test_refused_data_reply_goes_to_accepted_recipients_only(port: int) -> None:
    def rcpt(address: str, _n: int) -> str | None:
        return "550 5.1.1 unknown" if address.startswith("bad") else None

    with Receiver(HOST, port, script=Script(rcpt=rcpt, data=lambda _m: "554 5.7.1 spam")) as rx:
        conn = await _connect(port)
        results = await conn.send(_job("a@example.test", "bad@example.test"), b"Subject: x\r\n\r\nz\r\n",
                                  "s@sender.example")
        assert [(r.code, r.status, r.phase) for r in results] == [(554, "5.7.1", "data"), (550, "5.1.1", "rcpt")]
        assert conn.usable and rx.count() == 0
        await conn.close()


async def test_421_to_a_recipient_ends_the_connection(port: int) -> None:
    def rcpt(address: str, _n: int) -> str | None:
        return "421 4.7.0 closing" if address.startswith("two") else None

    with Receiver(HOST, port, script=Script(rcpt=rcpt)) as rx:
        conn = await _connect(port)
        results = await conn.send(_job("one@example.test", "two@example.test", "three@example.test"),
                                  b"Subject: x\r\n\r\nz\r\n", "s@sender.example")
        assert [r.code for r in results] == [421, 421, 421]
        assert all(r.temporary and r.phase == "rcpt" for r in results)
        assert not conn.usable and rx.count() == 0
        await conn.close()


async def test_smtputf8_on_the_first_transaction_after_starttls(port: int) -> None:
    # STARTTLS voids what EHLO said: the session must ask again before deciding on SMTPUTF8.
    with Receiver(HOST, port, tls=True) as rx:
        conn = await _connect(port)
        assert conn.tls
        results = await conn.send(_job("üser@example.test", smtputf8=True), b"Subject: x\r\n\r\nz\r\n",
                                  "s@sender.example")
        assert [r.code for r in results] == [250]
        assert (await rx.await_for(1))[0].rcpt_tos == ["üser@example.test"]
        await conn.close()


async def test_body_waits_for_the_attempt_note(port: int) -> None:
    with Receiver(HOST, port) as rx:
        conn = await _connect(port)
        note = asyncio.get_running_loop().create_future()
        sending = asyncio.create_task(conn.send(_job("u@example.test"), b"Subject: x\r\n\r\nz\r\n",
                                                "s@sender.example", before_data=note))
        await asyncio.sleep(0.3)        # MAIL, RCPT and DATA are answered by now; the body must wait
        assert rx.count() == 0 and not sending.done()
        note.set_result(None)
        assert [r.code for r in await sending] == [250]
        assert rx.count() == 1
        await conn.close()


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_250_is_heard_from_the_read_callback_before_any_task_runs(port: int, pipelining: bool) -> None:
    # The delivered note must not wait for the sending task to be woken: the hook runs in the
    # transport's callback (no current task) with exactly the recipients the server took.
    def rcpt(address: str, _n: int) -> str | None:
        return "550 5.1.1 unknown" if address.startswith("bad") else None

    heard: list[tuple[list[str], asyncio.Task | None]] = []
    with Receiver(HOST, port, script=Script(rcpt=rcpt, pipelining=pipelining)) as rx:
        conn = await _connect(port)
        job = _job("a@example.test", "bad@example.test", "b@example.test")
        results = await conn.send(job, b"Subject: x\r\n\r\nz\r\n", "s@sender.example",
                                  on_delivered=lambda took: heard.append(([r.address for r in took],
                                                                          asyncio.current_task())))
        assert heard == [(["a@example.test", "b@example.test"], None)]
        assert [r.code for r in results] == [250, 550, 250]
        assert (await rx.await_for(1))[0].rcpt_tos == ["a@example.test", "b@example.test"]
        await conn.close()


async def _blocked_loop_hears(port: int, tls: bool, seconds: float, messages: int = 1) -> tuple[list, list, list]:
    """Sends `messages` messages on one connection, one after the other; right after each body
    goes, keeps the loop busy for up to `seconds` calling only `ReplyPeek.poll_now`. Returns what
    was heard while blocked, in all, and the codes."""
    heard: list[list[str]] = []
    while_blocked: list[list[str]] = []
    codes: list[int] = []
    peek = ReplyPeek()
    try:
        with Receiver(HOST, port, tls=tls) as rx:
            conn = await _connect(port)
            for n in range(messages):
                note = asyncio.get_running_loop().create_future()
                sending = asyncio.create_task(conn.send(
                    _job(f"u{n}@example.test"), b"Subject: x\r\n\r\nz\r\n", "s@sender.example",
                    before_data=note, peek=peek, on_delivered=lambda took: heard.append([r.address for r in took])))
                await asyncio.sleep(0.3)             # the body waits for the note
                heard_before = len(heard)

                def busy(heard_before: int = heard_before) -> None:   # the loop does other work: no socket reads
                    deadline = time.monotonic() + seconds
                    while len(heard) == heard_before and time.monotonic() < deadline:
                        peek.poll_now()
                        time.sleep(0.005)
                    for _ in range(3):               # asked again before the transport reads the reply
                        peek.poll_now()
                    while_blocked.extend(heard[heard_before:])

                note.set_result(None)                # the task's next step writes the body, then this runs
                asyncio.get_running_loop().call_soon(busy)
                codes += [r.code for r in await sending]
            assert rx.count() == messages
            assert peek.connections == (0 if tls else 1)       # watched once, for the session
            await conn.close()
            await asyncio.sleep(0.05)
            assert peek.connections == 0
    finally:
        peek.close()
    return while_blocked, heard, codes


async def test_the_peek_hears_a_250_while_the_loop_is_busy(port: int) -> None:
    while_blocked, heard, codes = await _blocked_loop_hears(port, tls=False, seconds=10, messages=3)
    assert codes == [250, 250, 250]
    expected = [["u0@example.test"], ["u1@example.test"], ["u2@example.test"]]
    assert while_blocked == expected and heard == expected      # each once


async def test_a_tls_session_is_not_peeked_at_but_still_heard(port: int) -> None:
    while_blocked, heard, codes = await _blocked_loop_hears(port, tls=True, seconds=1)
    assert codes == [250]
    assert while_blocked == [] and heard == [["u0@example.test"]]


async def test_a_client_gone_before_the_final_reply_resets_and_the_server_never_gets_the_message(
        port: int) -> None:
    # A real asyncio peer that is slow to handle the message: it answers 354, waits, then reads.
    # The client dies meanwhile (its socket closed as the kernel closes a killed process's
    # sockets). With the reset armed the server's stream ends in a reset, not in a whole message
    # it would accept: the message the client will send again after its restart is not a
    # duplicate. (A server reading the socket itself still gets bytes that reached its receive
    # queue before the reset: Linux keeps them readable.)
    got: dict[str, object] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.test ESMTP\r\n")
        while True:
            line = await reader.readline()
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-slow.test\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
        await asyncio.sleep(0.6)              # busy elsewhere: the body waits in our receive buffer
        data = b""
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            got["reset"] = True
        got["whole message"] = data.endswith(b"\r\n.\r\n")
        writer.close()

    server = await asyncio.start_server(serve, HOST, port)
    try:
        conn = await _connect(port)
        sending = asyncio.create_task(conn.send(_job("u@example.test"), b"Subject: x\r\n\r\n" + b"z" * 5000 + b"\r\n",
                                                "s@sender.example"))
        await asyncio.sleep(0.3)              # the body is written; the final reply is awaited
        assert not sending.done()
        conn.smtp.transport.abort()           # gone, as a killed process is
        with contextlib.suppress(Exception):
            await sending
        for _ in range(100):
            if "whole message" in got:
                break
            await asyncio.sleep(0.02)
        assert got == {"reset": True, "whole message": False}
    finally:
        server.close()
        await server.wait_closed()


async def test_a_session_ended_with_quit_closes_in_order_not_with_a_reset(port: int) -> None:
    # The reset on close is armed for the whole session; QUIT must end it in order (FIN), so a
    # server does not log every finished session as a lost connection.
    ending: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 plain.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-plain.test\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                try:
                    ending.append("eof" if await reader.read() == b"" else "data")
                except ConnectionResetError:
                    ending.append("reset")
                break
            else:
                writer.write(b"250 ok\r\n")
        writer.close()

    server = await asyncio.start_server(serve, HOST, port)
    try:
        conn = await _connect(port)
        results = await conn.send(_job("u@example.test"), b"Subject: x\r\n\r\nz\r\n", "s@sender.example")
        assert [r.code for r in results] == [250]
        await conn.close()
        for _ in range(100):
            if ending:
                break
            await asyncio.sleep(0.02)
        assert ending == ["eof"]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("final", ["451 4.3.0 try later", "554 5.7.1 spam"])
async def test_a_refused_message_is_never_heard_as_delivered(port: int, final: str) -> None:
    heard: list[list[Recipient]] = []
    with Receiver(HOST, port, script=Script(data=lambda _m: final)):
        conn = await _connect(port)
        results = await conn.send(_job("a@example.test"), b"Subject: x\r\n\r\nz\r\n", "s@sender.example",
                                  on_delivered=heard.append)
        assert [r.code for r in results] == [int(final[:3])]
        assert heard == []
        await conn.close()


# --------------------------------------------------------------------------- a trickling server
async def _trickle_server(port: int, replies_seen: list[bytes]) -> asyncio.AbstractServer:
    """A real SMTP peer that answers one byte at a time, and answers a pipelined group only once
    all of it (through DATA) has arrived: a lock-step client would wait forever. A raw server, as
    aiosmtpd cannot be made to split its replies."""

    async def trickle(writer: asyncio.StreamWriter, text: bytes) -> None:
        for i in range(len(text)):
            writer.write(text[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await trickle(writer, b"220 trickle ESMTP\r\n")
        await reader.readline()
        await trickle(writer, b"250-trickle\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
        group = await reader.readuntil(b"DATA\r\n")
        replies_seen.append(group)
        await trickle(writer, b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 nobody\r\n250-2.1.5 ok\r\n"
                              b"250 2.1.5 really\r\n354 go ahead\r\n")
        data = await reader.readuntil(b"\r\n.\r\n")
        replies_seen.append(data)
        await trickle(writer, b"250 2.0.0 queued\r\n")
        await reader.readline()
        await trickle(writer, b"221 bye\r\n")
        writer.close()

    return await asyncio.start_server(session, HOST, port)


async def test_pipelined_replies_arriving_byte_by_byte(port: int) -> None:
    seen: list[bytes] = []
    server = await _trickle_server(port, seen)
    try:
        conn = await _connect(port, timeout=10)
        results = await conn.send(_job("a@example.test", "nobody@example.test", "b@example.test"), DOTTED,
                                  "s@sender.example")
        assert [(r.code, r.phase) for r in results] == [(250, "data"), (550, "rcpt"), (250, "data")]
        assert seen[0] == (b"MAIL FROM:<s@sender.example> SIZE=%d\r\nRCPT TO:<a@example.test>\r\n"
                           b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" % len(DOTTED))
        assert seen[1] == wire_body(DOTTED)
        await conn.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_body_known_to_go_as_is_is_sent_unchanged(port: int) -> None:
    seen: list[bytes] = []
    server = await _trickle_server(port, seen)
    body = b"Subject: plain\r\n\r\nno line here starts with a period.\r\n"
    try:
        conn = await _connect(port, timeout=10)
        results = await conn.send(_job("a@example.test", "nobody@example.test", "b@example.test"), body,
                                  "s@sender.example", body_as_is=True)
        assert [r.code for r in results] == [250, 550, 250]
        assert seen[1] == body + b".\r\n" == wire_body(body)
        await conn.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_silent_server_times_out_and_the_connection_is_dropped(port: int) -> None:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readline()
        writer.write(b"250-hi\r\n250 PIPELINING\r\n")
        await reader.read(65536)
        await asyncio.sleep(5)          # and never answers the transaction
        writer.close()

    server = await asyncio.start_server(session, HOST, port)
    try:
        conn = await _connect(port, timeout=0.5)
        results = await conn.send(_job("a@example.test"), b"Subject: x\r\n\r\nz\r\n", "s@sender.example")
        assert [(r.code, r.status) for r in results] == [(0, "4.4.2")]
        assert "Timed out" in results[0].text
        assert not conn.usable and not conn.smtp.is_connected
        await conn.close()
    finally:
        server.close()


@pytest.mark.parametrize("case", [test_pipelined_replies_arriving_byte_by_byte,
                                  test_smtputf8_on_the_first_transaction_after_starttls])
def test_under_uvloop(port: int, case) -> None:
    # `mta serve` runs on uvloop, whose transports swap protocols their own way (TLS too).
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(case(port))


# --------------------------------------------------------------------------- pure parts
@pytest.mark.parametrize(("body", "wire"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b".a\r\n.\r\n", b"..a\r\n..\r\n.\r\n"),
    (b"a\r\n..b\r\n", b"a\r\n...b\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b"", b".\r\n"),
    # Not what the spool holds, but never sent as it is: bare LF and CR become CRLF first.
    (b"a\n.\nb\rc\r\n", b"a\r\n..\r\nb\r\nc\r\n.\r\n"),
])
def test_wire_body(body: bytes, wire: bytes) -> None:
    assert wire_body(body) == wire


def test_take_reply_reads_one_reply_at_a_time() -> None:
    buf = bytearray(b"250-first\r\n250 second\r\n354 go\r\n550 5.1.1 par")
    first = take_reply(buf)
    assert first is not None and (first.code, first.message) == (250, "first\nsecond")
    second = take_reply(buf)
    assert second is not None and (second.code, second.message) == (354, "go")
    assert take_reply(buf) is None
    buf += b"tial\n"
    third = take_reply(buf)
    assert third is not None and (third.code, third.message) == (550, "5.1.1 partial")
    assert buf == b""


def test_take_reply_refuses_garbage() -> None:
    with pytest.raises(aiosmtplib.SMTPResponseException):
        take_reply(bytearray(b"hello there\r\n"))
    with pytest.raises(aiosmtplib.SMTPResponseException):
        take_reply(bytearray(b"250-" + b"x" * 70000))
