"""The event-log subscriber of the webhooks, on a real outbox file: bounded memory while the
writer is behind, filters applied before anything is stored, pending events written at stop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from mta.events import Event
from mta.metrics import Metrics
from mta.webhooks.config import WebhookEndpoint, validate_webhooks
from mta.webhooks.service import OUTBOX_FILE, Webhooks
from tests.support.receiver import free_port
from tests.support.webhook_receiver import make_secret


def endpoints(**extra: object) -> list[WebhookEndpoint]:
    # Nobody listens on this port: the sender fails and backs off, which is not what is tested here.
    eps = [WebhookEndpoint(url=f"http://127.0.0.1:{free_port(['127.0.0.1'])}/h", secret=make_secret(),
                           **extra)]  # type: ignore[arg-type]
    validate_webhooks(eps)
    return eps


def stored(spool: Path) -> list[str]:
    with sqlite3.connect(spool / OUTBOX_FILE) as db:
        return [row[0] for row in db.execute("SELECT event FROM outbox ORDER BY id")]


async def test_events_past_max_pending_are_dropped_and_the_rest_written_at_stop(tmp_path: Path) -> None:
    metrics = Metrics()
    hooks = Webhooks(endpoints(), str(tmp_path), metrics, max_pending=3, group_delay=60.0)
    await hooks.start()
    name = hooks.endpoints[0].name
    for i in range(5):              # all in one go: the writer gets no turn in between
        hooks.on_event(Event("delivered", f"Q{i}", "a@example.test", time=1000.0 + i))
    assert metrics.registry.get_sample_value("mta_webhook_events_dropped_total",
                                             {"endpoint": name, "reason": "overload"}) == 2
    await hooks.stop()
    assert [row.split('"queue_id":"')[1][:2] for row in stored(tmp_path)] == ["Q0", "Q1", "Q2"]


async def test_filtered_events_are_never_stored(tmp_path: Path) -> None:
    hooks = Webhooks(endpoints(tenant="acme", events=["bounced"]), str(tmp_path), Metrics(), group_delay=60.0)
    await hooks.start()
    hooks.on_event(Event("bounced", "Q1", "a@example.test", tenant="acme", time=1.0))
    hooks.on_event(Event("bounced", "Q2", "a@example.test", tenant="other", time=1.0))
    hooks.on_event(Event("delivered", "Q3", "a@example.test", tenant="acme", time=1.0))
    assert hooks.backlog.get(hooks.endpoints[0].name) == 1
    await hooks.stop()
    assert ['"queue_id":"Q1"' in row for row in stored(tmp_path)] == [True]


async def test_events_after_stop_are_ignored(tmp_path: Path) -> None:
    hooks = Webhooks(endpoints(), str(tmp_path), Metrics())
    await hooks.start()
    await hooks.stop()
    hooks.on_event(Event("delivered", "Q1", "a@example.test", time=1.0))     # no error, nothing stored
    assert stored(tmp_path) == []


async def test_a_write_under_way_when_stop_comes_is_finished_not_lost(tmp_path: Path) -> None:
    # The outbox's one thread is busy (a sender's work, a slow disk) when the writer hands it a
    # group; stop comes while that group waits its turn. Cancelling the writer then cancelled the
    # queued insert, and the group was neither pending nor written.
    hooks = Webhooks(endpoints(), str(tmp_path), Metrics(), group_delay=0.0)
    await hooks.start()
    busy = asyncio.ensure_future(hooks.outbox.call(lambda _store: time.sleep(0.5)))
    for i in range(3):
        hooks.on_event(Event("delivered", f"Q{i}", "a@example.test", time=1000.0 + i))
    await asyncio.sleep(0.1)            # the writer has taken the group and waits for the thread
    assert hooks._pending == [] and not busy.done()
    await hooks.stop()
    await busy
    assert [row.split('"queue_id":"')[1][:2] for row in stored(tmp_path)] == ["Q0", "Q1", "Q2"]
