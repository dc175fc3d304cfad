"""Engaged first while capped: marketing mail held back by a cap goes out most engaged first,
unknown recipients next, long-inactive ones last; transactional mail keeps its priority."""

from __future__ import annotations

import random
import uuid

import pytest

from mta.engagement.score import DAY
from mta.engagement.store import Activity
from tests.mta.conftest import message
from tests.support.receiver import Script, free_port
from tests.support.redisserver import start_redis


def tracking_config(redis: str = "") -> dict:
    shared = {"engagement": {"redis": redis, "redis_prefix": f"t:{uuid.uuid4().hex}:"}} if redis else {}
    return {"tracking": {"enabled": True, "base_url": "http://127.0.0.1:9/", "streams": ["marketing"]}, **shared}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    port = free_port(["127.0.0.1"])
    process = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


@pytest.fixture(params=["sqlite", "redis"])
def engagement_backend(request: pytest.FixtureRequest) -> str:
    """"" for the SQLite store, else the URL of a real redis-server (the store shared by nodes)."""
    return "" if request.param == "sqlite" else request.getfixturevalue("redis_url")


async def test_capped_site_sends_the_most_engaged_first(start_mta, world, dns_server, engagement_backend) -> None:
    order: list[str] = []
    rx = world.domain("example.test", script=Script(data=lambda m: order.append(m.rcpt_tos[0])))
    dns_server.servfail("example.test")              # park everything on disk first
    # A window of one and one connection: the claim order is the delivery order, one at a time,
    # as when a warm-up grant lets a few messages out of a large backlog.
    mta = await start_mta(queue={"domain_window": 1, "retry_base": 3600},
                          delivery={"max_connections": 1, "messages_per_connection": 1000},
                          egress={"pools": {"default": {"sources": ["ip1"]}}}, **tracking_config(engagement_backend))
    now = mta.clock()
    store = mta.daemon.engagement.store
    assert store is not None
    store.record([
        Activity("keen@example.test", "delivered", now - 20 * DAY),
        Activity("keen@example.test", "clicked", now - DAY),
        Activity("keen@example.test", "clicked", now - 2 * DAY),
        Activity("reader@example.test", "delivered", now - 20 * DAY),
        Activity("reader@example.test", "opened", now - 3 * DAY),
        Activity("lapsed@example.test", "delivered", now - 300 * DAY),      # mailed for months, never engaged
        Activity("fresh@example.test", "delivered", now - 2 * DAY),         # mailed lately: no verdict yet
    ])
    marketing = ["lapsed", "new1", "fresh", "reader", "new2", "keen"]
    random.Random(7).shuffle(marketing)
    for name in marketing:
        await mta.send("news@sender.example", [f"{name}@example.test"],
                       message(extra_headers="X-Stream: marketing\r\n"))
    await mta.send("app@sender.example", ["reset@example.test"], message(extra_headers="X-Stream: transactional\r\n"))
    await mta.wait_event(lambda e: e["event"] == "deferred", n=7)
    dns_server.behave_normally("example.test")
    mta.daemon.resolver_forget("example.test")
    await mta.daemon.scheduler.flush()
    await rx.await_for(7)
    names = [a.split("@")[0] for a in order]
    assert names[0] == "reset"                              # transactional first, whatever its engagement
    assert names[1:3] == ["keen", "reader"]                 # engaged, most engaged first
    assert sorted(names[3:6]) == ["fresh", "new1", "new2"]  # unknown
    assert names[6] == "lapsed"                             # long inactive last


async def test_deliveries_and_human_activity_reach_the_store(start_mta, world, engagement_backend) -> None:
    rx = world.domain("example.test")
    mta = await start_mta(**tracking_config(engagement_backend))
    await mta.send("news@sender.example", ["ann@example.test"], message(extra_headers="X-Stream: marketing\r\n"))
    await rx.await_for(1)
    await mta.wait_event(lambda e: e["event"] == "delivered")
    recorder = mta.daemon.engagement.recorder
    await recorder.flush()
    record = mta.daemon.engagement.store.get("ann@example.test", mta.clock())
    assert record is not None and record.last_delivered > 0 and record.score == 0
    if engagement_backend:          # in Redis for the other nodes, and in the local mirror for the ranking
        from mta.engagement.redis_store import RedisEngagementStore
        shared = RedisEngagementStore(engagement_backend, prefix=mta.daemon.cfg.engagement.redis_prefix)
        assert shared.get("ann@example.test", mta.clock()).last_delivered == record.last_delivered
        shared.close()
        assert mta.daemon.engagement.store.mirror.get("ann@example.test", mta.clock()) is not None


def test_engagement_show_cli(tmp_path) -> None:
    import json
    import time

    from mta.engagement.store import EngagementStore
    from tests.mta.conftest import write_config
    from tests.mta.proc import run_cli

    spool = tmp_path / "spool"
    path = write_config(str(tmp_path), {"mta": {"hostname": "mta.test.example", "spool_dir": str(spool)},
                                        "tracking": {"enabled": True, "base_url": "https://t.example.test"}})
    res = run_cli("engagement", "show", "ann@x.test", "--config", path)
    assert res.returncode == 1 and "no engagement store" in res.stdout
    store = EngagementStore(str(spool / "engagement.db"))
    now = time.time()
    store.record([Activity("ann@x.test", "delivered", now - 3600), Activity("ann@x.test", "clicked", now - 60)])
    store.close()
    res = run_cli("engagement", "show", "ANN@x.test", "--json", "--config", path)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["rank"] == "engaged" and shown["clicks"] == 1 and 2.9 < shown["score"] <= 3.0
    res = run_cli("engagement", "show", "bob@x.test", "--config", path)
    assert res.returncode == 1 and "unknown" in res.stdout
