"""End to end through real sockets: submission -> spool -> DNS -> delivery to a receiver."""

from __future__ import annotations

from tests.mta.conftest import message


async def test_message_reaches_mx_from_configured_source_and_ehlo(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta()
    await mta.send("app@sender.example", ["user@example.test"], message())
    got = await rx.await_for(1)
    m = got[0]
    assert m.rcpt_tos == ["user@example.test"]
    assert (m.peer_ip, m.ehlo) in {("127.0.0.11", "mta1.test.example"), ("127.0.0.12", "mta2.test.example")}
    assert m.mail_from.startswith("b-") and m.mail_from.endswith("@bounces.test.example")
    assert b"Received: from " in m.data and b"Message-ID: <" in m.data and b"\r\nDate: " in m.data
    delivered = await mta.wait_event(lambda e: e["event"] == "delivered")
    assert delivered[0]["recipient"] == "user@example.test"
    assert delivered[0]["code"] == 250
    assert delivered[0]["source_ip"] == m.peer_ip
