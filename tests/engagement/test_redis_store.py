"""The engagement store on Redis (`[engagement] redis`) against a real redis-server: the same
answers as the SQLite store, updates from several nodes that add up in any order, erasure, and
the mirrored store the daemon uses (Redis shared, SQLite local for the claim's ranking)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.engagement.open import MirroredStore
from mta.engagement.redis_store import RedisEngagementStore
from mta.engagement.score import DAY
from mta.engagement.store import Activity, EngagementStore
from tests.support.receiver import free_port
from tests.support.redisserver import start_redis

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port(["127.0.0.1"])
    process = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"        # each test its own keys on the shared server


HISTORY = [Activity("Ann@X.test", "delivered", NOW - 5 * DAY), Activity("ann@x.test", "opened", NOW - DAY),
           Activity("<ann@x.test>", "clicked", NOW), Activity("bob@x.test", "delivered", NOW),
           Activity("ann@x.test", "delivered", NOW - 2 * DAY), Activity("ann@x.test", "bounced", NOW)]


def test_redis_answers_as_sqlite_does(tmp_path: Path, redis_url: str, prefix: str) -> None:
    sqlite = EngagementStore(str(tmp_path / "e.db"))
    rstore = RedisEngagementStore(redis_url, prefix=prefix)
    for store in (sqlite, rstore):
        store.record(HISTORY[:3])
        store.record(HISTORY[3:])
    want = sqlite.get_many(["ann@x.test", "bob@x.test", "nobody@x.test"], NOW)
    got = rstore.get_many(["ANN@x.test", "bob@x.test", "nobody@x.test"], NOW)
    assert set(got) == set(want) == {"ann@x.test", "bob@x.test"}
    for k in want:
        assert got[k].score == pytest.approx(want[k].score)
        assert (got[k].last_open, got[k].last_click, got[k].first_delivered, got[k].last_delivered,
                got[k].opens, got[k].clicks) == (want[k].last_open, want[k].last_click, want[k].first_delivered,
                                                 want[k].last_delivered, want[k].opens, want[k].clicks)
    assert got["ann@x.test"].first_delivered == NOW - 5 * DAY and got["ann@x.test"].last_delivered == NOW - 2 * DAY
    assert rstore.erase("ann@X.TEST") == 1 and rstore.get("ann@x.test", NOW) is None
    assert rstore.erase("ann@x.test") == 0
    sqlite.close()
    rstore.close()


def test_nodes_updating_at_once_lose_nothing_whatever_the_order(redis_url: str, prefix: str) -> None:
    nodes = [RedisEngagementStore(redis_url, prefix=prefix) for _ in range(4)]

    def write(store: RedisEngagementStore, i: int) -> None:
        for n in range(25):
            # Times go backwards on some nodes: the last times must still be the largest ones.
            store.record([Activity("a@x.test", "opened", NOW - (n if i % 2 else -n)),
                          Activity("a@x.test", "delivered", NOW - 100 * n)])

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = nodes[0].get("a@x.test", NOW)
    assert record is not None and record.opens == 100
    assert record.last_open == NOW + 24 and record.first_delivered == NOW - 2400 and record.last_delivered == NOW
    single = EngagementStore(":memory:")
    single.record([Activity("a@x.test", "opened", NOW - (n if i % 2 else -n)) for i in range(4) for n in range(25)])
    assert record.score == pytest.approx(single.get("a@x.test", NOW).score)
    for s in nodes:
        s.close()


def test_mirrored_store_writes_both_reads_redis_and_erases_both(tmp_path: Path, redis_url: str,
                                                               prefix: str) -> None:
    local = EngagementStore(str(tmp_path / "engagement.db"))
    store = MirroredStore(RedisEngagementStore(redis_url, prefix=prefix), local)
    store.record(HISTORY)
    other_node = RedisEngagementStore(redis_url, prefix=prefix)
    other_node.record([Activity("ann@x.test", "clicked", NOW)])      # seen by another node only
    assert store.get("ann@x.test", NOW).clicks == 2                  # the shared view
    assert local.get("ann@x.test", NOW).clicks == 1                  # this node's mirror
    assert store.erase("ann@x.test") == 2
    assert store.get("ann@x.test", NOW) is None and local.get("ann@x.test", NOW) is None
    store.close()
    other_node.close()
