"""Idle connections must not starve everyone (issue 17, item 4): room kept for trusted clients,
the longest-idle unprivileged session evicted when the listener is full, a short idle timeout
before MAIL."""

from __future__ import annotations

import asyncio
import time

from tests.mta.conftest import message
from tests.support.smtpclient import RawClient

TRUSTED_ONLY = {"trusted_networks": ["127.0.0.1/32"]}


async def hold(mta, source: str) -> RawClient | None:
    """An idle session from `source` (greeted, EHLO sent), or None if it was refused."""
    try:
        c, greeting = await RawClient.connect(mta.submit_host, mta.submit_port, source)
    except OSError:
        return None
    if not greeting.startswith("220"):
        c.close()
        return None
    await c.cmd("EHLO idle.example")
    return c


async def submit(mta, source: str = "127.0.0.1") -> str:
    c, greeting = await RawClient.connect(mta.submit_host, mta.submit_port, source)
    assert greeting.startswith("220"), greeting
    await c.cmd("EHLO app.example")
    assert (await c.cmd("MAIL FROM:<app@sender.example>")).startswith("250")
    assert (await c.cmd("RCPT TO:<user@example.test>")).startswith("250")
    assert (await c.cmd("DATA")).startswith("354")
    c.send(message().encode() + b".\r\n")
    reply = await c.reply()
    c.close()
    return reply


def metric(mta, reason: str) -> float:
    return mta.daemon.metrics.registry.get_sample_value("mta_smtp_refusals_total", {"reason": reason}) or 0.0


async def test_a_trusted_client_gets_its_250_while_many_idle_connections_are_held(start_mta, world):
    world.domain("example.test")
    mta = await start_mta(submission={**TRUSTED_ONLY, "max_connections": 100, "max_connections_per_ip": 30,
                                      "reserved_connections": 10, "pre_mail_timeout": 300})
    # 150 idle sessions from 6 untrusted addresses, each under its per-IP limit: more than the
    # listener holds, so the later ones push out the earlier ones.
    idle = [await hold(mta, f"127.0.6.{1 + i % 6}") for i in range(150)]
    held = [c for c in idle if c is not None]
    assert len(held) == 150                      # nobody was refused: the longest idle made room
    assert mta.daemon.servers and metric(mta, "idle_evicted") >= 150 - 90
    started = time.monotonic()
    reply = await submit(mta)
    assert reply.startswith("250 2.0.0"), reply
    print(f"trusted 250 after {time.monotonic() - started:.3f}s with 150 idle connections attempted")
    for c in held:
        c.close()


async def test_the_longest_idle_untrusted_session_is_evicted_first(start_mta):
    mta = await start_mta(submission={**TRUSTED_ONLY, "max_connections": 4, "reserved_connections": 0,
                                      "pre_mail_timeout": 300})
    first = await hold(mta, "127.0.6.1")
    await asyncio.sleep(0.05)
    others = [await hold(mta, f"127.0.6.{i}") for i in (2, 3, 4)]
    assert first is not None and all(others)
    await others[0].cmd("NOOP")                  # activity: no longer the idlest of the rest
    newcomer = await hold(mta, "127.0.6.9")
    assert newcomer is not None
    assert (await first.reply()).startswith("421 4.7.0")
    assert await first.closed()
    assert (await others[0].cmd("NOOP")).startswith("250")  # the active ones stay
    for c in [*others, newcomer]:
        c.close()


async def test_trusted_and_authenticated_sessions_are_never_evicted(start_mta):
    mta = await start_mta(submission={**TRUSTED_ONLY, "max_connections": 2, "reserved_connections": 0})
    a = await hold(mta, "127.0.0.1")
    b = await hold(mta, "127.0.0.1")
    c, greeting = await RawClient.connect(mta.submit_host, mta.submit_port, "127.0.6.1")
    assert greeting.startswith("421 4.7.0"), greeting
    assert a is not None and b is not None
    assert (await a.cmd("NOOP")).startswith("250") and (await b.cmd("NOOP")).startswith("250")
    for x in (a, b, c):
        x.close()


async def test_untrusted_clients_cannot_take_the_reserved_slots(start_mta):
    mta = await start_mta(submission={**TRUSTED_ONLY, "max_connections": 4, "reserved_connections": 2})
    a = await hold(mta, "127.0.6.1")
    b = await hold(mta, "127.0.6.2")
    c = await hold(mta, "127.0.6.3")            # evicts a: untrusted clients share 2 slots
    assert a is not None and (await a.reply()).startswith("421")
    t1 = await hold(mta, "127.0.0.1")
    t2 = await hold(mta, "127.0.0.1")
    assert t1 is not None and t2 is not None
    assert (await b.cmd("NOOP")).startswith("250") and (await c.cmd("NOOP")).startswith("250")
    for x in (a, b, c, t1, t2):
        x.close()


async def test_idle_before_mail_is_cut_short_but_not_after(start_mta):
    mta = await start_mta(submission={**TRUSTED_ONLY, "pre_mail_timeout": 1, "command_timeout": 30})
    idle = await hold(mta, "127.0.6.1")
    busy = await hold(mta, "127.0.6.2")
    trusted = await hold(mta, "127.0.0.1")
    assert idle and busy and trusted
    assert (await busy.cmd("MAIL FROM:<a@sender.example>")).startswith("250")
    assert (await idle.reply(timeout=5)).startswith("421 4.4.2")
    await asyncio.sleep(1.0)
    assert (await busy.cmd("NOOP")).startswith("250")        # in a transaction: the full timeout
    assert (await trusted.cmd("NOOP")).startswith("250")     # trusted: the full timeout
    assert metric(mta, "pre_mail_timeout") == 1
    for c in (idle, busy, trusted):
        c.close()
