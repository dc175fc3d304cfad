"""The SQLite engagement store: upserts add up, reads come in batches, erasure removes the row."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mta.engagement.score import DAY, EngagementRecord, current_score, note_activity
from mta.engagement.store import Activity, EngagementStore

NOW = 1_800_000_000.0


def test_activity_adds_up_across_batches_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "engagement.db")
    store = EngagementStore(path)
    store.record([Activity("Ann@X.test", "delivered", NOW - 5 * DAY), Activity("ann@x.test", "opened", NOW - DAY)])
    store.record([Activity("<ann@x.test>", "clicked", NOW), Activity("bob@x.test", "delivered", NOW),
                  Activity("ann@x.test", "bounced", NOW)])           # not engagement: ignored
    store.close()
    store = EngagementStore(path)
    got = store.get_many(["ann@x.test", "BOB@x.test", "nobody@x.test"], NOW)
    ann = got["ann@x.test"]
    expected = note_activity(note_activity(EngagementRecord("ann@x.test"), "opened", NOW - DAY), "clicked", NOW)
    assert ann.score == pytest.approx(current_score(expected, NOW))
    assert (ann.opens, ann.clicks, ann.first_delivered, ann.last_open, ann.last_click) == (
        1, 1, NOW - 5 * DAY, NOW - DAY, NOW)
    assert got["bob@x.test"].score == 0 and got["bob@x.test"].last_delivered == NOW
    assert "nobody@x.test" not in got
    assert store.erase("ANN@x.test") == 1 and store.get("ann@x.test", NOW) is None


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    store = EngagementStore(str(tmp_path / "e.db"))

    def write() -> None:
        for _ in range(50):
            store.record([Activity("a@x.test", "opened", NOW)])

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = store.get("a@x.test", NOW)
    assert record is not None and record.opens == 200 and record.score == pytest.approx(200.0)


def test_many_addresses_in_one_read(tmp_path: Path) -> None:
    store = EngagementStore(str(tmp_path / "e.db"))
    store.record([Activity(f"u{i}@x.test", "opened", NOW) for i in range(1200)])
    assert len(store.get_many([f"u{i}@x.test" for i in range(1500)], NOW)) == 1200
