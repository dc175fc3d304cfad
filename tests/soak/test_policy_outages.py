"""The closed loop survives its dependencies going away under load (soak: `./scripts/test -m soak`).

Real processes on loopback: ten sessions submit as fast as they can into `mta serve`, which
delivers through `policyd serve` (SQLite or Redis state) to a sink. Mid-run the dependency is
killed (SIGKILL), stopped (SIGTERM) or frozen (SIGSTOP) for twelve seconds, then brought back on
the same address (or thawed). The MTA must keep accepting, find policyd again by itself,
resume delivery within ten seconds of the return, log the outage and the recovery once each, and
deliver every acknowledged message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.soak.harness import Rig
from tests.support.receiver import free_port
from tests.support.redisserver import start_redis

pytestmark = pytest.mark.soak

OUTAGE = 12.0
RESUME_WITHIN = 10.0


def _interrupt(proc: subprocess.Popen, how: str) -> None:
    if how == "kill":
        proc.kill()
    elif how == "term":
        proc.terminate()
    else:
        proc.send_signal(signal.SIGSTOP)
        return
    proc.wait(30)


def _resumed_after(rig: Rig, since: float, timeout: float) -> float:
    """Seconds from `since` until the sink has taken 50 more messages; inf if it never did."""
    base = len(rig.sink.received())
    while time.monotonic() - since < timeout:
        if len(rig.sink.received()) >= base + 50:
            return time.monotonic() - since
        time.sleep(0.1)
    return float("inf")


def _log_count(rig: Rig, text: str) -> int:
    with open(rig.mta.log_path, encoding="utf-8", errors="replace") as f:
        return sum(text in line for line in f)


def _finish(rig: Rig, load, started: float) -> dict:
    summary = load.wait(120)
    acked = load.acked()
    missing = rig.wait_delivered(set(acked), 180)
    return {"acked": len(acked), "missing": len(missing), "duplicates": rig.duplicates(), "load": summary,
            "seconds": round(time.monotonic() - started, 1)}


def _outage(rig: Rig, proc: subprocess.Popen, how: str,
            restart: Callable[[], subprocess.Popen]) -> tuple[float, dict, subprocess.Popen]:
    """Load for 8 s, take `proc` away for OUTAGE seconds (`how`), bring it back (thawed, or
    `restart()` on the same address) and let the load run on; returns how soon delivery resumed,
    the run's result and the process now serving."""
    started = time.monotonic()
    load = rig.load(sessions=10, duration=8 + OUTAGE + 20)
    time.sleep(8)
    assert len(rig.sink.received()) > 0
    _interrupt(proc, how)
    time.sleep(OUTAGE)
    if how == "stop":
        proc.send_signal(signal.SIGCONT)
    else:
        proc = restart()
    resumed = _resumed_after(rig, time.monotonic(), 30)
    return resumed, _finish(rig, load, started), proc


@pytest.mark.parametrize("how", ["kill", "term", "stop"])
def test_policyd_outage_under_load(tmp_path: Path, how: str) -> None:
    rig = Rig(str(tmp_path), policy_extra={"isps": {"other": {"warmup": False}}}).start()
    try:
        policyd = rig.policyd
        assert policyd is not None and policyd.proc is not None

        def restart() -> subprocess.Popen:
            policyd.start()                                  # same address
            assert policyd.proc is not None
            return policyd.proc

        resumed, result, _proc = _outage(rig, policyd.proc, how, restart)
        print(f"policyd {how}: resumed {resumed:.1f}s after its return; {result}")
        assert resumed <= RESUME_WITHIN
        assert result["missing"] == 0
        assert _log_count(rig, "policyd unavailable") == 1
        assert _log_count(rig, "is back after") == 1
    finally:
        rig.stop()


@pytest.mark.parametrize("how", ["kill", "term", "stop"])
def test_redis_outage_under_load(tmp_path: Path, how: str) -> None:
    redis_port = free_port(["127.0.0.1"])
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis = start_redis(redis_port, redis_dir)
    rig = Rig(str(tmp_path), policy_extra={"isps": {"other": {"warmup": False}},
                                           "policyd": {"state": f"redis://127.0.0.1:{redis_port}/0"}}).start()
    try:
        resumed, result, redis = _outage(rig, redis, how, lambda: start_redis(redis_port, redis_dir))  # state lost
        print(f"redis {how}: resumed {resumed:.1f}s after its return; {result}")
        assert resumed <= RESUME_WITHIN
        assert result["missing"] == 0
    finally:
        rig.stop()
        if redis.poll() is None:
            os.kill(redis.pid, signal.SIGCONT)
            redis.terminate()
            redis.wait(10)
