"""Incidents injected by time: a bad list, a complaint burst, an ISP throttling everyone, a blocklisting.

Each starts at (day, time of day) and, except a bad list, lasts `duration`. They change the world
(the audience, the ISPs' answers, how people react), never the policy: the point is to watch
what the policy does about them.
"""

from __future__ import annotations

import random
from typing import Protocol

from policy.sim.audience import Audience
from policy.sim.isp_model import ModelledIsp
from policy.sim.planner import Planner
from policy.sim.scenario import (
    BAD_LIST,
    BLOCKLIST,
    COMPLAINT_BURST,
    ISP_THROTTLE,
    NEWSLETTER,
    IncidentSettings,
    Scenario,
)
from policy.sim.stats import IncidentMark


class World(Protocol):
    audience: Audience
    planner: Planner
    isps: dict[str, ModelledIsp]


class Incidents:
    def __init__(self, scenario: Scenario, start: float, day_length: float) -> None:
        self._scenario = scenario
        self._rng = random.Random(f"{scenario.simulation.seed}:incidents")
        timed = [(start + (i.day - 1) * day_length + i.at * day_length / 86400, i) for i in scenario.incidents]
        self._pending = sorted(timed, key=lambda t: t[0])
        self._listed: dict[str, float] = {}                       # source -> listed until
        self._bursts: list[tuple[float, float, str, float]] = []  # (start, end, isp or "", rate)
        self.marks: list[IncidentMark] = []

    def apply(self, now: float, world: World) -> None:
        while self._pending and self._pending[0][0] <= now:
            at, incident = self._pending.pop(0)
            self._start(incident, at, world)

    def _start(self, inc: IncidentSettings, at: float, world: World) -> None:
        end = at + inc.duration
        if inc.kind == BAD_LIST:
            aud = self._scenario.audience
            ids = world.audience.add(inc.count, aud.isp_mix, inc.engagement_mean, aud.engagement_concentration,
                                     inc.invalid_share, aud.inactive_share, inc.complainer_share, aud.order,
                                     self._rng)
            stream = inc.stream or next(s.name for s in self._scenario.streams if s.kind == NEWSLETTER)
            world.planner.import_list(stream, ids, at, inc.campaign)
            end = at
            label = f"bad list: {inc.count:,} addresses, {inc.invalid_share:.0%} invalid"
        elif inc.kind == COMPLAINT_BURST:
            self._bursts.append((at, end, inc.isp, inc.complaint_rate))
            label = f"complaint burst {inc.complaint_rate:.1%}" + (f" at {inc.isp}" if inc.isp else "")
        elif inc.kind == ISP_THROTTLE:
            isp = world.isps[inc.isp]
            isp.throttling_until = max(isp.throttling_until, end)
            label = f"{inc.isp} throttles everyone"
        elif inc.kind == BLOCKLIST:
            self._listed[inc.source] = max(self._listed.get(inc.source, 0.0), end)
            label = f"{inc.source} on a blocklist"
        else:   # validated in scenario.py
            raise AssertionError(inc.kind)
        self.marks.append(IncidentMark(inc.kind, at, end, inc.day, label))

    def blocklisted(self, source: str, now: float) -> bool:
        return now < self._listed.get(source, 0.0)

    def complaint_rate(self, isp: str, now: float) -> float:
        """Extra chance per delivered message that the recipient complains, from bursts under way."""
        if not self._bursts:
            return 0.0
        return sum(rate for start, end, which, rate in self._bursts if start <= now < end and which in ("", isp))
