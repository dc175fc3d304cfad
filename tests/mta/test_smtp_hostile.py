"""Hostile commands on both listeners: plain 501 replies, never the exception aiosmtpd would show."""

from __future__ import annotations

import logging

import pytest

from tests.support.smtpclient import RawClient

HOSTILE = [
    (b"VRFY <\xff\xfe@example.com>", "501 5.5.2"),           # non-UTF-8: was 500 (UnicodeEncodeError ...)
    (b"VRFY \xed\xa0\x80", "501 5.5.2"),                      # an encoded lone surrogate
    (b"VRFY <", "501 5.5.4"),                                 # was 500 (IndexError) string index out of range
    (b"MAIL FROM:<", "501 5.5.4"),
    (b"MAIL FROM:<a@", "501 5.5.4"),
    (b"RCPT TO:<", "50"),                                     # 503 before MAIL; never an exception
]


def listener(mta, which: str) -> tuple[str, int]:
    if which == "submission":
        return mta.submit_host, mta.submit_port
    host, port = mta.daemon.cfg.inbound.listen[0].rsplit(":", 1)
    return host, int(port)


def refusals(mta, reason: str) -> float:
    return mta.daemon.metrics.registry.get_sample_value("mta_smtp_refusals_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("which", ["submission", "inbound"])
async def test_broken_commands_get_a_plain_501_and_are_logged_and_counted(start_mta, which, caplog):
    mta = await start_mta()
    host, port = listener(mta, which)
    c, greeting = await RawClient.connect(host, port)
    assert greeting.startswith("220")
    await c.cmd("EHLO client.example")
    before = refusals(mta, "command_error")
    with caplog.at_level(logging.WARNING, logger="mta.smtpd"):
        for line, expected in HOSTILE:
            reply = await c.cmd(line + b"\r\n")
            assert reply.startswith(expected), (line, reply)
            assert "Error: (" not in reply and "IndexError" not in reply and "Unicode" not in reply, reply
    # The session is still in sync and usable.
    assert (await c.cmd("NOOP")).startswith("250")
    assert refusals(mta, "command_error") >= before + 3
    assert any("IndexError" in r.getMessage() for r in caplog.records)      # the detail goes to the log
    c.close()


async def test_control_characters_and_long_arguments_are_not_echoed_raw(start_mta):
    mta = await start_mta()
    c, _ = await RawClient.connect(mta.submit_host, mta.submit_port)
    c.send(b"FOO\rBAR\x00\r\n")
    reply = await c.reply()
    assert reply.startswith("500 5.5.2") and "\r" not in reply and "\x00" not in reply, repr(reply)
    c.send(b"X" * 505 + b"\r\n")
    reply = await c.reply()
    assert reply.startswith("500 5.5.2") and len(reply.encode()) <= 510, len(reply)
    c.close()
