"""Shared helpers: small scenarios built in code, and runs of the real simulator against conf/policy.toml.

Small scenarios (a few thousand recipients, a few days) run in a second or two; the default
scenarios of conf/scenarios run once per test session (see test_acceptance.py).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from policy.sim.policy_setup import load_policy
from policy.sim.scenario import Scenario, scenario_from_dict
from policy.sim.simulator import Simulator
from policy.sim.stats import SimResult

REPO = Path(__file__).resolve().parents[2]
POLICY = str(REPO / "conf" / "policy.toml")
SCENARIOS = REPO / "conf" / "scenarios"

SMALL: dict[str, Any] = {
    "simulation": {"seed": 7, "days": 4, "step": "1m"},
    "audience": {"size": 3000},
    "sources": [{"name": "ip1", "address": "192.0.2.1"}, {"name": "ip2", "address": "192.0.2.2"}],
    "streams": [{"name": "news", "kind": "newsletter", "sources": ["ip1", "ip2"],
                 "sending_domain": "news.example.test"}],
    "policy": {"schedules": {"pool": {"days": [100, 200, 400, 800, 1600]}},
               "domains": [{"name": "news.example.test", "schedule": "pool"}]},
}


def small(**changes: Any) -> dict[str, Any]:
    """The small scenario with top-level tables replaced or merged (tables merge key by key)."""
    raw = copy.deepcopy(SMALL)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def scenario(raw: dict[str, Any]) -> Scenario:
    return scenario_from_dict(copy.deepcopy(raw), "test")


def simulate(raw: dict[str, Any] | Scenario, days: int | None = None, state_dir: str = "") -> SimResult:
    sc = raw if isinstance(raw, Scenario) else scenario(raw)
    cfg = load_policy(POLICY, sc.policy)
    return asyncio.run(Simulator(sc, cfg, days, state_dir).run())


def hour_of(result: SimResult, at: float) -> int:
    return int((at - result.start) // 3600)


def timed(day: int, hour: float) -> dict[str, Any]:
    """Incident timing keys: simulated `day` (from 1) at `hour` o'clock."""
    return {"day": day, "at": f"{int(hour * 60)}m"}
