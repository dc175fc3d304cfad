"""The event index on its own: numbering in emit order, tenant of events that carry none, and
retention (events older than it go)."""

from __future__ import annotations

from mta.events import Event
from mta.http.api.eventindex import EventIndex
from tests.mta.conftest import FakeClock


async def test_events_are_numbered_in_order_and_old_ones_are_pruned(tmp_path):
    clock = FakeClock()
    index = EventIndex(str(tmp_path), retention=3600, clock=clock)
    index.start()
    try:
        t0 = clock()
        index.on_event(Event("accepted", "Q1", "a@x.example", time=t0, tenant="t1"))
        index.on_event(Event("dropped", "Q1", "a@x.example", time=t0, reason="admin"))   # no tenant: Q1's
        index.on_event(Event("accepted", "Q2", "b@x.example", time=t0, tenant="t2"))
        await index.barrier()
        rows = index.after(0, 100, "t1")
        assert [(e["queue_id"], e["event"]) for _seq, e in rows] == [("Q1", "accepted"), ("Q1", "dropped")]
        assert [seq for seq, _e in rows] == sorted(seq for seq, _e in rows)
        assert [e["queue_id"] for _s, e in index.after(rows[-1][0], 100, None)] == ["Q2"]
        clock.advance(7200)           # past the retention, and past the pruner's ten-minute pace
        index.on_event(Event("accepted", "Q3", "c@x.example", time=clock(), tenant="t1"))
        await index.barrier()
        await index.barrier()         # the prune runs after the batch that carried Q3
        assert [e["queue_id"] for _s, e in index.after(0, 100, None)] == ["Q3"]
        assert index.history("Q1") == (None, [])
    finally:
        await index.close()
