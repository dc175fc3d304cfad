"""Webhooks end to end: real mail through a running MTA to aiosmtpd receivers produces events,
which reach a real HTTP receiver (aiohttp on loopback) that checks every signature. The receiver
fails (500), goes away (closed port) and comes back; the MTA restarts with events in its outbox."""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest

from tests.mta.conftest import RunningMta, World, base_config, message, write_config
from tests.mta.proc import MtaProcess
from tests.support.waiting import until
from tests.support.webhook_receiver import WebhookReceiver, make_secret

FAST_RETRY = {"retry_base": 0.2, "retry_max": 1.0}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver(make_secret()).start()
    yield r
    await r.stop()


def hook(receiver: WebhookReceiver, path: str = "/hooks", **extra: Any) -> dict[str, Any]:
    return {"url": receiver.url(path), "secret": receiver.secret, **extra}


def keys(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(e["event"], e["queue_id"], e["recipient"]) for e in events}


def sample(mta: RunningMta, name: str, **labels: str) -> float:
    return mta.daemon.metrics.registry.get_sample_value(name, labels) or 0.0


def outbox_rows(mta: RunningMta) -> int:
    with sqlite3.connect(os.path.join(mta.spool_dir, "webhooks.db")) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


async def send(mta: RunningMta, n: int, to: str = "user@example.test", headers: str = "") -> None:
    for i in range(n):
        await mta.send("app@sender.example", [to], message(subject=f"m{i}", to=to, extra_headers=headers))


async def test_events_arrive_signed_in_batches_exactly_as_logged(start_mta, world: World,
                                                                 receiver: WebhookReceiver) -> None:
    world.domain("example.test")
    mta = await start_mta(webhooks=[hook(receiver)])
    receiver.clock = mta.clock
    await send(mta, 3)
    await mta.wait_event(lambda e: e["event"] == "delivered", n=3)
    await receiver.wait(lambda r: len(r.events()) == 6)
    assert receiver.posts and all(p.signature_ok for p in receiver.posts)
    assert all(p.webhook_id.startswith("msg_") for p in receiver.posts)
    logged = [e for e in mta.events() if e["event"] in ("accepted", "delivered")]
    assert sorted(receiver.events(), key=str) == sorted(logged, key=str)      # same objects, field for field
    await until(lambda: sample(mta, "mta_webhook_backlog", endpoint=receiver.url()) == 0, "the backlog drained")
    assert sample(mta, "mta_webhook_events_delivered_total", endpoint=receiver.url()) == 6
    assert sample(mta, "mta_webhook_posts_total", endpoint=receiver.url(), result="2xx") == len(receiver.posts)


async def test_failing_then_down_then_back_loses_nothing_and_backs_off(start_mta, world: World,
                                                                       receiver: WebhookReceiver, caplog) -> None:
    world.domain("example.test")
    receiver.status = 500
    mta = await start_mta(webhooks=[hook(receiver, **FAST_RETRY)])
    receiver.clock = mta.clock
    name = receiver.url()
    with caplog.at_level(logging.DEBUG, logger="mta.webhooks"):
        await send(mta, 2)
        await receiver.wait(lambda r: len(r.posts) >= 5)
        # Mail is not held up by the failing endpoint: both were delivered meanwhile.
        await mta.wait_event(lambda e: e["event"] == "delivered", n=2)
        failed = list(receiver.posts)
        assert all(p.signature_ok for p in failed)
        gaps = [b.at - a.at for a, b in itertools.pairwise(failed)]
        # Each wait is at least its back-off step less the jitter (0.2 * 2^k * 0.8, capped at 1.0 * 0.8).
        assert gaps[0] >= 0.15 and gaps[1] >= 0.3 and gaps[2] >= 0.6 and gaps[3] >= 0.8, gaps
        # The same batch is retried under the same webhook-id (a fresh timestamp and signature each time).
        assert len({p.webhook_id for p in failed}) == 1
        assert sample(mta, "mta_webhook_posts_total", endpoint=name, result="5xx") >= 5
        assert sample(mta, "mta_webhook_consecutive_failures", endpoint=name) >= 5

        await receiver.stop()                       # now the port is closed: connection refused
        await send(mta, 2)
        await mta.wait_event(lambda e: e["event"] == "delivered", n=4)
        await until(lambda: sample(mta, "mta_webhook_posts_total", endpoint=name, result="connect_error") >= 2,
                    "two connect errors")
        assert sample(mta, "mta_webhook_backlog", endpoint=name) == 8

        receiver.status = 200
        await receiver.start()
        await receiver.wait(lambda r: len(r.events()) >= 8)
        await until(lambda: sample(mta, "mta_webhook_backlog", endpoint=name) == 0, "the backlog drained")
    logged = [e for e in mta.events() if e["event"] in ("accepted", "delivered")]
    assert len(logged) == 8 and keys(receiver.events()) == keys(logged)
    assert len(receiver.events()) == 8                  # each event once (per webhook-id)
    assert receiver.accepted()[0].webhook_id == failed[0].webhook_id
    assert all(p.signature_ok for p in receiver.posts)
    assert sample(mta, "mta_webhook_consecutive_failures", endpoint=name) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("failed: HTTP 500" in m for m in warnings) == 1, warnings         # one line when the outage starts,
    assert sum("delivering again" in m for m in warnings) == 1, warnings    # one when it ends


async def test_an_event_the_receiver_refuses_is_found_and_dropped_and_the_rest_go_on(
        start_mta, world: World, receiver: WebhookReceiver, caplog) -> None:
    # A receiver that cannot take one event (422 for any batch holding it) must not hold up the
    # events behind it for max_age: the batch is halved until that event is alone, which is
    # dropped after a few refusals (logged and counted); the others arrive, in order.
    world.domain("example.test")
    receiver.refuse = lambda e: e["recipient"] == "poison@example.test" and e["event"] == "accepted"
    mta = await start_mta(webhooks=[hook(receiver, batch_size=8, **FAST_RETRY)])
    receiver.clock = mta.clock
    name = receiver.url()
    with caplog.at_level(logging.WARNING, logger="mta.webhooks"):
        await send(mta, 3)
        await send(mta, 1, to="poison@example.test")
        await send(mta, 3)
        await mta.wait_event(lambda e: e["event"] == "delivered", n=7)
        await until(lambda: sample(mta, "mta_webhook_events_dropped_total", endpoint=name, reason="refused") == 1,
                    "one refused event dropped")
        await receiver.wait(lambda r: len(r.events()) == 13)
    logged = [e for e in mta.events() if e["event"] in ("accepted", "delivered")]
    wanted = [e for e in logged if not (e["recipient"] == "poison@example.test" and e["event"] == "accepted")]
    assert receiver.events() == wanted                      # in the order they happened
    await until(lambda: sample(mta, "mta_webhook_backlog", endpoint=name) == 0, "the backlog drained")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused 3 times in a row with HTTP 422" in m and "poison@example.test" in m for m in errors), errors


async def test_outbox_survives_a_restart_and_resends_under_the_same_id(start_mta, world: World,
                                                                         receiver: WebhookReceiver) -> None:
    world.domain("example.test")
    receiver.status = 500
    extra = {"webhooks": [hook(receiver, **FAST_RETRY)]}
    first = await start_mta(**extra)
    receiver.clock = first.clock
    await send(first, 2)
    await first.wait_event(lambda e: e["event"] == "delivered", n=2)
    await receiver.wait(lambda r: len(r.posts) >= 1)
    await first.daemon.stop()
    assert outbox_rows(first) == 4
    tried = {p.webhook_id for p in receiver.posts}

    receiver.status = 200
    second = await start_mta(**extra)                   # same spool directory
    await receiver.wait(lambda r: len(r.events()) >= 4)
    await until(lambda: outbox_rows(second) == 0, "the outbox empty")
    logged = [e for e in second.events() if e["event"] in ("accepted", "delivered")]
    assert keys(receiver.events()) == keys(logged) and len(receiver.events()) == 4
    assert receiver.accepted()[0].webhook_id in tried
    assert all(p.signature_ok for p in receiver.posts)


async def test_tenant_and_event_filters(start_mta, world: World, receiver: WebhookReceiver) -> None:
    world.domain("example.test")
    mta = await start_mta(webhooks=[hook(receiver, "/acme", tenant="acme"),
                                    hook(receiver, "/delivered", events=["delivered"])])
    receiver.clock = mta.clock
    await send(mta, 1, headers="X-Tenant: acme\r\n")
    await send(mta, 1, headers="X-Tenant: other\r\n")
    await mta.wait_event(lambda e: e["event"] == "delivered", n=2)
    await until(lambda: sample(mta, "mta_webhook_backlog", endpoint=receiver.url("/acme")) == 0
                and sample(mta, "mta_webhook_backlog", endpoint=receiver.url("/delivered")) == 0
                and len(receiver.events()) >= 4, "both backlogs drained, 4 events received")
    logged = mta.events()
    acme = [e for e in logged if e["tenant"] == "acme" and e["event"] in ("accepted", "delivered")]
    delivered = [e for e in logged if e["event"] == "delivered"]
    assert len(acme) == 2 and len(delivered) == 2
    assert keys(receiver.events("/acme")) == keys(acme)
    assert keys(receiver.events("/delivered")) == keys(delivered)


async def test_events_older_than_max_age_are_dropped_logged_and_counted(start_mta, world: World,
                                                                        receiver: WebhookReceiver, caplog) -> None:
    world.domain("example.test")
    receiver.status = 500
    mta = await start_mta(webhooks=[hook(receiver, **FAST_RETRY)])      # max_age: the default, 24 h
    name = receiver.url()
    receiver.clock = mta.clock
    await send(mta, 1)
    await mta.wait_event(lambda e: e["event"] == "delivered")
    await receiver.wait(lambda r: len(r.posts) >= 2)
    await until(lambda: sample(mta, "mta_webhook_backlog", endpoint=name) == 2, "two events in the backlog")
    with caplog.at_level(logging.ERROR, logger="mta.webhooks"):
        mta.clock.advance(86400 + 60)
        await until(lambda: sample(mta, "mta_webhook_events_dropped_total", endpoint=name, reason="expired") == 2,
                    "two expired events dropped")
    assert sample(mta, "mta_webhook_backlog", endpoint=name) == 0 and outbox_rows(mta) == 0
    assert any("dropped 2 events older than max_age" in r.getMessage() for r in caplog.records)


async def test_backlog_cap_drops_new_events_and_counts_them(start_mta, world: World,
                                                            receiver: WebhookReceiver) -> None:
    world.domain("example.test")
    await receiver.stop()                               # nobody listens
    mta = await start_mta(webhooks=[hook(receiver, max_backlog=3, **FAST_RETRY)])
    name = receiver.url()
    await send(mta, 3)                                  # 6 events: 3 kept, 3 dropped
    await mta.wait_event(lambda e: e["event"] == "delivered", n=3)
    await until(lambda: sample(mta, "mta_webhook_events_dropped_total", endpoint=name, reason="backlog_full") == 3,
                "three dropped for a full backlog")
    assert sample(mta, "mta_webhook_backlog", endpoint=name) == 3
    await until(lambda: outbox_rows(mta) == 3, "three rows in the outbox")


async def test_a_hanging_endpoint_times_out_and_mail_flows_meanwhile(start_mta, world: World,
                                                                    receiver: WebhookReceiver) -> None:
    world.domain("example.test")
    receiver.delay = 2.0                                # answers long after our timeout (0.3 s)
    mta = await start_mta(webhooks=[hook(receiver, timeout=0.3, **FAST_RETRY)])
    receiver.clock = mta.clock
    name = receiver.url()
    await send(mta, 2)
    await mta.wait_event(lambda e: e["event"] == "delivered", n=2)
    await until(lambda: sample(mta, "mta_webhook_posts_total", endpoint=name, result="timeout") >= 2, "two timeouts")
    await send(mta, 2)                                  # still accepted and delivered while it hangs
    await mta.wait_event(lambda e: e["event"] == "delivered", n=4)
    receiver.delay = 0.0
    await receiver.wait(lambda r: len(r.events()) >= 8)
    logged = [e for e in mta.events() if e["event"] in ("accepted", "delivered")]
    assert keys(receiver.events()) == keys(logged) and len(receiver.events()) == 8


async def test_events_in_the_outbox_survive_kill9(tmp_path, world: World, dns_server, mx_port,
                                                  receiver: WebhookReceiver) -> None:
    rx = world.domain("example.test")
    receiver.status = 500
    cfg = base_config(str(tmp_path), dns_server, mx_port, mta={"log_level": "warning"},
                      webhooks=[hook(receiver, **FAST_RETRY)])
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    proc = MtaProcess(path, os.path.join(str(tmp_path), "mta.log"))
    outbox = os.path.join(cfg["mta"]["spool_dir"], "webhooks.db")
    try:
        proc.start((host, int(port)))
        queue_ids = []
        for i in range(3):
            async with aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False, timeout=10) as smtp:
                _errors, reply = await smtp.sendmail("app@sender.example", ["user@example.test"],
                                                     message(subject=f"k{i}").encode())
                queue_ids.append(reply.rsplit(" ", 1)[1])
        await until(lambda: len(rx.messages) == 3 and _rows(outbox) == 6, "3 messages and 6 outbox rows")
        await receiver.wait(lambda r: len(r.posts) >= 1)
        proc.kill9()

        receiver.status = 200
        proc.start((host, int(port)))
        await receiver.wait(lambda r: len(r.events()) >= 6)
        assert {(e["event"], e["queue_id"]) for e in receiver.events()} == {
            (kind, q) for q in queue_ids for kind in ("accepted", "delivered")}
        assert len(receiver.events()) == 6 and all(p.signature_ok for p in receiver.posts)
        await until(lambda: _rows(outbox) == 0, "the outbox empty")         # deleted once answered 2xx
        assert proc.terminate() == 0
    finally:
        if proc.proc and proc.proc.poll() is None:
            proc.kill9()


def _rows(path: str) -> int:
    if not os.path.exists(path):
        return -1
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.OperationalError:        # not made yet
            return -1
