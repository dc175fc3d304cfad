"""Scheduled sends (send_at) are durable at once and released at their time, not before (the
daemon runs on an injected clock); DELETE cancels what has not left yet."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from mta.model import ATTEMPTING
from mta.spool.store import SpoolStore
from tests.mta.api.conftest import simple
from tests.mta.conftest import FakeClock
from tests.support.receiver import Script
from tests.support.waiting import until


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


async def test_a_scheduled_message_is_released_at_its_time_not_before(start_api, world):
    rx = world.domain("example.test")
    clock = FakeClock()
    api = await start_api(clock=clock)
    send_at = clock() + 3600
    sent = await api.send(simple(send_at=rfc3339(send_at)))
    _s, status, _h = await api.call("GET", f"/v1/messages/{sent['id']}")
    assert status["recipients"][0]["state"] == "scheduled"
    assert [e["event"] for e in status["recipients"][0]["events"]] == ["accepted", "scheduled"]
    assert status["send_at"] is not None
    # An operator's flush retries deferred mail; it does not send scheduled mail early.
    await api.mta.daemon.scheduler.flush()
    clock.advance(3000)
    await asyncio.sleep(2.5)          # the scheduler looks at its due list at least once a second
    assert rx.count() == 0
    clock.advance(601)
    # (the status's events say where it got stuck if it does)
    await api.wait_state(sent["id"], "user@example.test", "delivered", timeout=40)
    got = (await rx.await_for(1))[0]
    assert got.rcpt_tos == ["user@example.test"]


async def test_a_scheduled_message_survives_a_restart(start_api, world, start_mta):
    rx = world.domain("example.test")
    clock = FakeClock()
    api = await start_api(clock=clock)
    sent = await api.send(simple(send_at=rfc3339(clock() + 600)))
    await api.mta.daemon.stop()
    again = await start_mta(clock=clock, api={"listen": ""})
    await asyncio.sleep(1.5)
    assert rx.count() == 0
    clock.advance(601)
    await rx.await_for(1)
    assert [e for e in again.events() if e["event"] == "delivered" and e["queue_id"] == sent["id"]]


async def test_cancel_a_scheduled_message(start_api, world):
    rx = world.domain("example.test")
    clock = FakeClock()
    api = await start_api(clock=clock)
    sent = await api.send(simple(to=["one@example.test", "two@example.test"], send_at=rfc3339(clock() + 60)))
    status, body, _h = await api.call("DELETE", f"/v1/messages/{sent['id']}")
    assert status == 200 and sorted(body["cancelled"]) == ["one@example.test", "two@example.test"]
    assert body["in_flight"] == []
    _s, state, _h = await api.call("GET", f"/v1/messages/{sent['id']}")
    assert {r["state"] for r in state["recipients"]} == {"cancelled"}
    assert (await api.call("DELETE", f"/v1/messages/{sent['id']}"))[0] == 404
    clock.advance(61)
    await asyncio.sleep(2.5)
    assert rx.count() == 0


async def test_cancel_a_deferred_message_stops_its_retries(start_api, world):
    rx = world.domain("example.test", script=Script(rcpt=lambda address, n: "451 4.3.0 try again later"))
    api = await start_api()
    sent = await api.send(simple())
    await api.wait_state(sent["id"], "user@example.test", "deferred")
    status, body, _h = await api.call("DELETE", f"/v1/messages/{sent['id']}")
    assert status == 200, body
    # Whether the recipient was on disk or already claimed again for its next attempt, it ends cancelled.
    await api.wait_state(sent["id"], "user@example.test", "cancelled")
    seen = rx.rcpt_seen["user@example.test"]
    await asyncio.sleep(3)       # retry_base is 1 s in tests: a retry would have come by now
    assert rx.rcpt_seen["user@example.test"] == seen


def _attempting(spool_dir: str) -> bool:
    store = SpoolStore(spool_dir, readonly=True)
    try:
        return store.db.execute("SELECT COUNT(*) FROM recipients WHERE state = ?", (ATTEMPTING,)).fetchone()[0] > 0
    finally:
        store.close()


async def test_a_cancel_during_an_attempt_holds_across_a_restart(start_api, world, start_mta):
    """The attempt running at the cancel ends deferred, and the daemon stops before that
    recipient comes round again (where the running daemon would drop it): the next start removes
    it instead of sending it."""
    release = {"yes": False}

    def rcpt(_address: str, n: int) -> str | None:
        if n > 1:
            return None
        deadline = time.monotonic() + 60
        while not release["yes"] and time.monotonic() < deadline:     # holds the receiver's loop
            time.sleep(0.05)
        return "451 4.3.0 try again later"

    rx = world.domain("example.test", script=Script(rcpt=rcpt))
    clock = FakeClock()           # stands still: the deferred recipient is not due again here
    api = await start_api(clock=clock)
    sent = await api.send(simple())
    await until(lambda: _attempting(api.mta.spool_dir), "an attempt under way")
    status, body, _h = await api.call("DELETE", f"/v1/messages/{sent['id']}")
    assert status == 200 and body["in_flight"] == ["user@example.test"] and body["cancelled"] == [], body
    release["yes"] = True
    await api.mta.wait_event(lambda e: e["event"] == "deferred")
    await api.mta.daemon.stop()
    again = await start_mta(clock=clock, api={"listen": ""})
    await again.wait_event(lambda e: e["event"] == "cancelled" and e["queue_id"] == sent["id"])
    clock.advance(3600)
    await asyncio.sleep(2.5)      # the scheduler looks at its due list at least once a second
    assert rx.count() == 0 and rx.rcpt_seen["user@example.test"] == 1


async def test_a_due_time_marked_while_a_claim_runs_is_not_lost(start_api, world):
    """Regression: a flush (or new mail) marking a domain due while a claim of it waited for the
    spool lost its heap entry, and the domain was never looked at again (scheduled mail stuck)."""
    world.domain("example.test")
    clock = FakeClock()
    api = await start_api(clock=clock)
    sent = await api.send(simple(send_at=rfc3339(clock() + 3600)))
    sched = api.mta.daemon.scheduler
    ds = sched.domains["example.test"]
    claim = asyncio.get_running_loop().create_task(sched._claim(ds))
    await asyncio.sleep(0)                 # the claim is now waiting for the spool
    assert ds.claiming
    sched.mark_due("example.test", clock())
    await claim
    assert ds.due is not None and any(name == "example.test" for _t, name in sched._due)
    clock.advance(3601)
    await api.wait_state(sent["id"], "user@example.test", "delivered")
