"""The submission listener over real sockets: ESMTP features, limits, smuggling, relay, AUTH, TLS."""

from __future__ import annotations

import asyncio
import base64
import os

import aiosmtplib
import pytest

from mta.spool.store import SpoolStore
from mta.submission.auth import User, format_user, hash_password
from tests.mta.conftest import message
from tests.support.receiver import self_signed_cert
from tests.support.smtpclient import RawClient


def queued_messages(spool_dir: str) -> int:
    store = SpoolStore(spool_dir, readonly=True)
    try:
        return store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        store.close()


async def session(mta, source: str | None = None) -> RawClient:
    client, greeting = await RawClient.connect(mta.submit_host, mta.submit_port, source)
    assert greeting.startswith("220 ")
    return client


async def in_data(mta) -> RawClient:
    """A session that has sent EHLO, MAIL, RCPT and DATA (and had 354)."""
    c = await session(mta)
    await c.cmd("EHLO client.example")
    await c.cmd("MAIL FROM:<a@sender.example>")
    await c.cmd("RCPT TO:<b@example.test>")
    assert (await c.cmd("DATA")).startswith("354")
    return c


async def test_ehlo_advertises_extensions(start_mta):
    mta = await start_mta()
    c = await session(mta)
    reply = await c.cmd("EHLO client.example")
    for ext in ("SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES"):
        assert f"250-{ext}" in reply or f"250 {ext}" in reply, reply
    assert "AUTH" not in reply          # no users file: AUTH is not offered at all
    assert "STARTTLS" not in reply      # no certificate configured
    c.close()


async def test_replies_carry_enhanced_status_codes(start_mta):
    mta = await start_mta()
    c = await session(mta)
    await c.cmd("EHLO client.example")
    assert (await c.cmd("MAIL FROM:<a@sender.example>")).startswith("250 2.1.0")
    assert (await c.cmd("RCPT TO:<b@example.test>")).startswith("250 2.1.5")
    assert (await c.cmd("MAIL FROM:<x@sender.example>")).startswith("503 5.5.1")
    assert (await c.cmd("FOO")).startswith("500 5.5.2")
    assert (await c.cmd("RSET")).startswith("250 2.0.0")
    assert (await c.cmd("QUIT")).startswith("221 2.0.0")


async def test_pipelined_transaction_is_answered_in_order(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    c = await session(mta)
    await c.cmd("EHLO client.example")
    c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u1@example.test>\r\nRCPT TO:<u2@example.test>\r\nDATA\r\n")
    assert (await c.reply()).startswith("250")
    assert (await c.reply()).startswith("250")
    assert (await c.reply()).startswith("250")
    assert (await c.reply()).startswith("354")
    c.send(message().encode() + b".\r\nQUIT\r\n")
    assert (await c.reply()).startswith("250 2.0.0 Ok: queued as ")
    assert (await c.reply()).startswith("221")
    got = await rx.await_for(1)
    assert sorted(got[0].rcpt_tos) == ["u1@example.test", "u2@example.test"]   # one transaction


async def test_size_limit_refused_at_mail_and_after_data(start_mta):
    mta = await start_mta(submission={"max_message_size": 2000})
    c = await session(mta)
    await c.cmd("EHLO client.example")
    assert (await c.cmd("MAIL FROM:<a@sender.example> SIZE=5000")).startswith("552 5.3.4")
    await c.cmd("MAIL FROM:<a@sender.example>")
    await c.cmd("RCPT TO:<b@example.test>")
    assert (await c.cmd("DATA")).startswith("354")
    c.send(message(body="x" * 70 + "\r\n") .encode() * 40 + b".\r\n")
    assert (await c.reply()).startswith("552 5.3.4")
    # The session is still in step: a small message goes through.
    await c.cmd("MAIL FROM:<a@sender.example>")
    await c.cmd("RCPT TO:<b@example.test>")
    await c.cmd("DATA")
    c.send(message().encode() + b".\r\n")
    assert (await c.reply()).startswith("250 2.0.0")
    assert queued_messages(mta.spool_dir) == 1


async def test_recipient_limit(start_mta):
    mta = await start_mta(submission={"max_recipients": 3})
    c = await session(mta)
    await c.cmd("EHLO client.example")
    await c.cmd("MAIL FROM:<a@sender.example>")
    for i in range(3):
        assert (await c.cmd(f"RCPT TO:<u{i}@example.test>")).startswith("250")
    assert (await c.cmd("RCPT TO:<u9@example.test>")).startswith("452 4.5.3")


async def test_line_too_long_refused(start_mta):
    mta = await start_mta(submission={"max_line_length": 100})
    c = await in_data(mta)
    c.send(message(body="y" * 150 + "\r\n").encode() + b".\r\n")
    assert (await c.reply()).startswith("500 5.5.2")
    assert queued_messages(mta.spool_dir) == 0


async def test_line_length_counts_the_line_not_its_dot_stuffing(start_mta):
    mta = await start_mta(submission={"max_line_length": 100})
    c = await in_data(mta)
    c.send(message(body=".." + "y" * 99 + "\r\n").encode() + b".\r\n")     # 100 octets once unstuffed
    assert (await c.reply()).startswith("250")
    await c.cmd("MAIL FROM:<a@sender.example>")
    await c.cmd("RCPT TO:<u@example.test>")
    await c.cmd("DATA")
    c.send(message(body=".." + "y" * 100 + "\r\n").encode() + b".\r\n")
    assert (await c.reply()).startswith("500 5.5.2")
    assert queued_messages(mta.spool_dir) == 1


@pytest.mark.parametrize("payload", [
    b"Subject: a\r\n\r\nline one\nline two\r\n.\r\n",                       # bare LF inside a line
    b"Subject: a\r\n\r\nline one\rline two\r\n.\r\n",                       # bare CR
    b"Subject: a\r\n\r\nhi\n.\nMAIL FROM:<evil@x.example>\r\n.\r\n",         # smuggling: LF.LF
    b"Subject: a\r\n\r\nhi\r\n.\nRCPT TO:<victim@x.example>\r\n.\r\n",       # smuggling: CRLF.LF
    b"Subject: a\r\n\r\nhi\n.\r\nDATA\r\n.\r\n",                             # smuggling: LF.CRLF
])
async def test_bare_cr_or_lf_refused_and_nothing_smuggled(start_mta, payload):
    mta = await start_mta()
    c = await in_data(mta)
    c.send(payload)
    assert (await c.reply()).startswith("554 5.6.0")
    # Nothing after the fake terminator was taken as a command: the next reply answers NOOP.
    assert (await c.cmd("NOOP")).startswith("250")
    assert queued_messages(mta.spool_dir) == 0


_PLAIN = b"Subject: plain\r\n\r\n" + b"".join(b"line %d. ends with a period.\r\n" % i for i in range(500))


@pytest.mark.parametrize(("data", "arrives"), [
    # dot-stuffing undone at submission, done again on the way out
    (b"Subject: dots\r\n\r\n..leading dot\r\n...\r\n", b"\r\n\r\n.leading dot\r\n..\r\n"),
    # RFC 5321 4.5.2: the receiver deletes the first period of any line that starts with one
    (b"Subject: dots\r\n\r\n.not stuffed\r\nplain. text.\r\n", b"\r\n\r\nnot stuffed\r\nplain. text.\r\n"),
    # nothing to stuff: the body goes after the 354 unchanged (mta.wireform), every byte of it
    (_PLAIN, b"\r\n" + _PLAIN),
], ids=["stuffed", "unstuffed-client", "as-is"])
async def test_the_message_arrives_as_the_client_meant_it(start_mta, world, data, arrives):
    rx = world.domain("example.test")
    mta = await start_mta()
    c = await in_data(mta)
    c.send(data + b".\r\n")
    assert (await c.reply()).startswith("250")
    got = await rx.await_for(1)
    assert got[0].data.endswith(arrives)


async def test_disconnect_mid_data_queues_nothing(start_mta):
    mta = await start_mta()
    c = await in_data(mta)
    c.send(b"Subject: half\r\n\r\nsome text\r\n")
    await asyncio.sleep(0.2)
    c.close()
    await asyncio.sleep(0.5)
    assert queued_messages(mta.spool_dir) == 0
    assert not [e for e in mta.events() if e["event"] == "accepted"]


async def test_connection_limit_per_ip_answers_421(start_mta):
    mta = await start_mta(submission={"max_connections_per_ip": 2})
    a = await session(mta)
    b = await session(mta)
    c, greeting = await RawClient.connect(mta.submit_host, mta.submit_port)
    assert greeting.startswith("421 4.7.0")
    # Another address is not affected by the first one's limit.
    d = await session(mta, source="127.0.0.77")
    for x in (a, b, c, d):
        x.close()


async def test_total_connection_limit(start_mta):
    mta = await start_mta(submission={"max_connections": 2})
    a = await session(mta, source="127.0.0.71")
    b = await session(mta, source="127.0.0.72")
    c, greeting = await RawClient.connect(mta.submit_host, mta.submit_port, source="127.0.0.73")
    assert greeting.startswith("421")
    a.close()
    await asyncio.sleep(0.2)
    d = await session(mta, source="127.0.0.74")   # a slot freed up
    for x in (b, c, d):
        x.close()


async def test_command_timeout_closes_with_421(start_mta):
    mta = await start_mta(submission={"command_timeout": 1})
    c = await session(mta)
    await c.cmd("EHLO client.example")
    reply = await c.reply(timeout=5)
    assert reply.startswith("421 4.4.2")
    assert await c.closed()


async def test_the_timeout_counts_from_the_last_command(start_mta):
    # The session timer is armed once and moved lazily: activity past the first deadline keeps
    # the session, and the full timeout after the last command still closes it.
    mta = await start_mta(submission={"command_timeout": 1})
    c = await session(mta)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        assert (await c.cmd("NOOP")).startswith("250")
        last_command = loop.time()
        if last_command - start > 2.5:
            break
        await asyncio.sleep(0.3)
    assert (await c.reply(timeout=5)).startswith("421 4.4.2")
    assert 0.8 <= loop.time() - last_command <= 3
    assert await c.closed()


async def test_data_timeout_queues_nothing(start_mta):
    mta = await start_mta(submission={"data_timeout": 1, "command_timeout": 30})
    c = await in_data(mta)
    c.send(b"Subject: slow\r\n\r\npartial")
    assert (await c.reply(timeout=5)).startswith("421 4.4.2")
    assert queued_messages(mta.spool_dir) == 0


async def test_null_sender_and_headers_added(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    c = await session(mta)
    await c.cmd("EHLO client.example")
    assert (await c.cmd("MAIL FROM:<>")).startswith("250")
    await c.cmd("RCPT TO:<b@example.test>")
    await c.cmd("DATA")
    c.send(b"Subject: no ids\r\n\r\nbody\r\n.\r\n")
    assert (await c.reply()).startswith("250")
    m = (await rx.await_for(1))[0]
    assert m.mail_from == "<>"   # aiosmtpd shows the null sender as "<>": it stays null (no VERP)
    head = m.data.split(b"\r\n\r\n")[0]
    assert head.startswith(b"Received: from client.example ([127.0.0.1])\r\n\tby mta.test.example")
    assert b"\r\nMessage-ID: <" in head and b"@mta.test.example>" in head
    assert b"\r\nDate: " in head


async def test_existing_message_id_and_date_kept(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    body = "Message-ID: <keep@app.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: x\r\n\r\nhi\r\n"
    await mta.send("a@sender.example", ["b@example.test"], body)
    head = (await rx.await_for(1))[0].data.split(b"\r\n\r\n")[0]
    assert head.count(b"Message-ID:") == 1 and b"<keep@app.example>" in head
    assert head.count(b"Date:") == 1


@pytest.mark.parametrize("rcpt", [
    "<@relay.example:user@victim.example>",      # source route
    '<"user@victim.example"@example.test>',       # quoted local part hiding an address
    "<user@[192.0.2.1]>",                         # address literal
    "<user@localhost>",                           # not a mail domain
])
async def test_routing_tricks_refused_even_when_trusted(start_mta, rcpt):
    mta = await start_mta()
    c = await session(mta)
    await c.cmd("EHLO client.example")
    await c.cmd("MAIL FROM:<a@sender.example>")
    assert (await c.cmd(f"RCPT TO:{rcpt}")).startswith("553 5.1.")


@pytest.mark.parametrize("rcpt", [
    "<victim@remote.example>",
    "<victim%remote.example@mta.test.example>",
    "<remote.example!victim@mta.test.example>",
    "<@mta.test.example:victim@remote.example>",
    '<"victim@remote.example"@mta.test.example>',
    "<victim@[127.0.0.1]>",
    "<postmaster>",
])
async def test_untrusted_client_cannot_relay(start_mta, rcpt):
    mta = await start_mta(submission={"trusted_networks": ["127.0.0.1/32"]})
    c = await session(mta, source="127.0.0.99")
    await c.cmd("EHLO outsider.example")
    assert (await c.cmd("MAIL FROM:<spammer@outsider.example>")).startswith("250")
    reply = await c.cmd(f"RCPT TO:{rcpt}")
    assert reply.startswith(("554 5.7.1", "553 5.1.3", "501")), reply
    assert (await c.cmd("DATA")).startswith("503")
    assert queued_messages(mta.spool_dir) == 0


def users_file(tmp_path, name="app", password="s3cret!", **settings) -> str:
    path = os.path.join(tmp_path, "users")
    with open(path, "w") as f:
        f.write(format_user(User(name, hash_password(password, n=2**10), **settings)) + "\n")
    return path


async def test_auth_only_after_starttls_for_non_exempt_clients(start_mta, tmp_path, world):
    rx = world.domain("example.test")
    cert, key = self_signed_cert("mta.test.example")
    mta = await start_mta(submission={"trusted_networks": ["127.0.0.1/32"], "tls_cert": cert, "tls_key": key,
                                      "users_file": users_file(str(tmp_path)), "loopback_plain_auth": False})
    c = await session(mta, source="127.0.0.99")
    reply = await c.cmd("EHLO outsider.example")
    assert "STARTTLS" in reply and "AUTH" not in reply
    assert (await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0app\0s3cret!").decode())).startswith("538 5.7.11")
    assert (await c.cmd("STARTTLS")).startswith("220")
    await c.starttls()
    reply = await c.cmd("EHLO outsider.example")
    assert "AUTH LOGIN PLAIN" in reply
    assert (await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0app\0wrong").decode())).startswith("535 5.7.8")
    assert (await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0app\0s3cret!").decode())).startswith("235")
    await c.cmd("MAIL FROM:<app@sender.example>")
    assert (await c.cmd("RCPT TO:<user@example.test>")).startswith("250")   # authenticated: may relay
    await c.cmd("DATA")
    c.send(message().encode() + b".\r\n")
    assert (await c.reply()).startswith("250")
    m = (await rx.await_for(1))[0]
    assert b"with ESMTPSA id" in m.data


async def test_auth_login_over_loopback_without_tls(start_mta, tmp_path):
    mta = await start_mta(submission={"trusted_networks": ["127.0.0.1/32"],
                                      "users_file": users_file(str(tmp_path), tenant="acme", stream="marketing")})
    c = await session(mta, source="127.0.0.99")
    assert "AUTH LOGIN PLAIN" in await c.cmd("EHLO app.example")
    assert (await c.cmd("AUTH LOGIN")).startswith("334")
    assert (await c.cmd(base64.b64encode(b"app").decode())).startswith("334")
    assert (await c.cmd(base64.b64encode(b"s3cret!").decode())).startswith("235")


async def test_stream_and_tenant_from_user_settings_override_header(start_mta, tmp_path, world):
    world.domain("example.test")
    mta = await start_mta(submission={"users_file": users_file(str(tmp_path), tenant="acme", stream="marketing")})
    async with aiosmtplib.SMTP(hostname=mta.submit_host, port=mta.submit_port, start_tls=False) as smtp:
        await smtp.login("app", "s3cret!")
        await smtp.sendmail("app@sender.example", ["u@example.test"],
                            message(extra_headers="X-Stream: transactional\r\n").encode())
    ev = (await mta.wait_event(lambda e: e["event"] == "delivered"))[0]
    assert ev["stream"] == "marketing" and ev["tenant"] == "acme"


async def test_stream_header_chooses_stream_and_is_removed(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    await mta.send("app@sender.example", ["u@example.test"], message(extra_headers="X-Stream: marketing\r\n"))
    m = (await rx.await_for(1))[0]
    assert b"X-Stream" not in m.data
    ev = (await mta.wait_event(lambda e: e["event"] == "delivered"))[0]
    assert ev["stream"] == "marketing"


async def test_smtputf8_address_accepted(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    async with aiosmtplib.SMTP(hostname=mta.submit_host, port=mta.submit_port, start_tls=False) as smtp:
        await smtp.sendmail("app@sender.example", ["jörg@example.test"], message().encode(),
                            mail_options=["SMTPUTF8"])
    m = (await rx.await_for(1))[0]
    assert m.rcpt_tos == ["jörg@example.test"]
