"""One test suite for every state backend: SQLite (a file) and Redis (a real redis-server)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from policy.engine import Action, Policy
from policy.engine.bucket import UNLIMITED, BucketSpec, TakePlan
from policy.engine.state import PairKey
from policy.service import PolicyService
from policy.store.base import Store
from policy.store.memory_store import MemoryStore
from tests.policy.conftest import REPO, Backend, Clock, make_settings
from tests.policy.test_engine import ask, granted, outcome

T = 5_000_000.0


def random_plans(seed: int, count: int) -> list[tuple[float, TakePlan]]:
    """A reproducible mix of shared and per-source buckets, rates, caps and unlimited ones."""
    rng = random.Random(seed)
    keys = [f"ip|ip{i}|google" for i in range(4)]
    plans = []
    now = T
    for _ in range(count):
        now += rng.choice([0.0, 0.5, 3.0, 40.0])
        shared = [BucketSpec("domain|d|google", rng.choice([0.1, 1.0]), rng.choice([3.0, 20.0]), 500.0)]
        if rng.random() < 0.5:
            shared.append(BucketSpec("tenant|t|*", UNLIMITED, 0.0, rng.choice([60.0, UNLIMITED])))
        sources = rng.sample(keys, rng.randint(1, 4))
        per_source = tuple((k.split("|")[1], (BucketSpec(k, rng.choice([0.05, 0.5, 2.0]), 10.0,
                                                          rng.choice([40.0, UNLIMITED])),)) for k in sources)
        plans.append((now, TakePlan(tuple(shared), per_source, rng.randint(0, 12), int(now // 86400))))
    return plans


async def test_takes_match_the_pure_engine_exactly(store: Store) -> None:
    reference = MemoryStore()
    for now, plan in random_plans(seed=7, count=400):
        [expected] = await reference.take([plan], now)
        [got] = await store.take([plan], now)
        assert got.grants == expected.grants
        assert got.wait == pytest.approx(expected.wait)
    keys = [s.key for _now, p in random_plans(7, 400) for s in p.specs()]
    mine, theirs = await store.buckets(keys), await reference.buckets(keys)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key].tokens == pytest.approx(theirs[key].tokens)
        assert mine[key].used == theirs[key].used


async def test_a_batch_of_takes_sees_its_own_earlier_takes(store: Store) -> None:
    spec = BucketSpec("ip|ip1|google", 0.0, 5.0, UNLIMITED)
    plan = TakePlan((), (("ip1", (spec,)),), 3, 1)
    results = await store.take([plan, plan, plan], T)
    assert [r.total for r in results] == [3, 2, 0]


async def test_records_update_atomically_and_list_their_keys(store: Store) -> None:
    assert await store.get("pair", ["a|b|c"]) == {}
    await store.update("pair", "a|b|c", lambda old: {"n": 1} if old is None else None)
    kept = await store.update("pair", "a|b|c", lambda old: None)      # None = leave as is
    assert kept == {"n": 1}
    await store.update("pair", "a|b|c", lambda old: {"n": old["n"] + 1})
    assert await store.get("pair", ["a|b|c", "x|y|z"]) == {"a|b|c": {"n": 2}}
    assert await store.keys("pair") == ["a|b|c"] and await store.keys("health") == []


async def test_history_keeps_order_filters_by_pair_and_limits(store: Store) -> None:
    actions = [Action(T + i, f"ip|ip{i % 2}|google", "throttle", "decrease", f"r{i}") for i in range(6)]
    await store.add_actions(actions[:4])
    await store.add_actions(actions[4:])
    assert [a.reason for a in await store.actions()] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert [a.reason for a in await store.actions("ip|ip1|")] == ["r1", "r3", "r5"]
    assert [a.reason for a in await store.actions("", limit=2)] == ["r4", "r5"]
    assert (await store.actions())[0] == actions[0]


async def test_warm_up_progress_buckets_health_and_overrides_survive_a_restart(backend: Backend) -> None:
    clock = Clock()
    first = PolicyService(Policy(make_settings()), backend.open(), clock, cache_seconds=0.0)
    await granted(first, ask(100))                                 # empties both buckets
    await first.feedback([outcome("ip1", "delivered", 7)])
    await first.set_day(PairKey("ip", "ip2", "google"), 2)
    await first.pause(PairKey("ip", "ip1", "yahoo"))
    await first.store.close()

    second = PolicyService(Policy(make_settings()), backend.open(), clock, cache_seconds=0.0)
    rows = {str(r.key): r for r in await second.status()}
    assert rows["ip|ip1|google"].health["delivered"] == 7
    assert rows["ip|ip1|google"].tokens == pytest.approx(0.0)
    assert rows["ip|ip2|google"].state.day == 2
    assert rows["ip|ip1|yahoo"].state.operator_paused
    assert await granted(second, ask(100)) == {}                   # the buckets are still empty
    assert [a.action for a in await second.history()] == ["set_day", "pause"]
    await second.store.close()


async def test_day_advance_survives_a_restart(backend: Backend) -> None:
    clock = Clock()
    svc = PolicyService(Policy(make_settings()), backend.open(), clock, cache_seconds=0.0)
    for _ in range(24 * 4):
        got = await granted(svc, ask(20))
        if got:
            await svc.feedback([outcome(s, "delivered", n) for s, n in got.items()])
        clock.advance(900)
    await svc.store.close()
    restarted = PolicyService(Policy(make_settings()), backend.open(), clock, cache_seconds=0.0)
    await granted(restarted, ask(1))                                # first look in the new day
    rows = {str(r.key): r for r in await restarted.status()}
    assert rows["ip|ip1|google"].state.day == 1
    await restarted.store.close()


def _workers(backend: Backend, mode: str, n: int, tmp_path: Path, env: dict[str, str]) -> list[int]:
    start = tmp_path / f"start-{mode}"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.policy.store_worker", backend.url, backend.prefix,
                               mode, str(n), str(start)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    start.touch()
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return [int(o.strip()) for o in outs]


async def test_updates_from_several_processes_are_never_lost(backend: Backend, tmp_path: Path,
                                                             pythonpath_env: dict[str, str]) -> None:
    assert _workers(backend, "incr", 100, tmp_path, pythonpath_env) == [100, 100, 100]
    store = backend.open()
    assert await store.get("health", ["counter"]) == {"counter": {"n": 300}}
    await store.close()


async def test_processes_sharing_a_bucket_never_take_more_than_it_holds(backend: Backend, tmp_path: Path,
                                                                        pythonpath_env: dict[str, str]) -> None:
    got = _workers(backend, "take", 80, tmp_path, pythonpath_env)    # 240 asks for 150 tokens
    assert sum(got) == 150


async def test_status_on_a_fresh_state_shows_day_0_of_every_configured_pair(store: Store, clock: Clock) -> None:
    svc = PolicyService(Policy(make_settings()), store, clock)
    rows = await svc.status()
    assert {str(r.key) for r in rows} == {f"{k}|{n}|{i}" for k, n in
                                          [("ip", "ip1"), ("ip", "ip2"), ("domain", "example.test")]
                                          for i in ("google", "yahoo")}
    assert all(r.state.day == 0 and r.tokens is None for r in rows)
