"""The simulation loop: a fake clock, the real policy service, modelled ISPs in between.

Each step (a minute by default) does what the MTA and the world do in that minute: the planner
queues mail, due retries and late reports (complaints, DSNs) arrive, every lane that has mail and
is not told to wait asks policyd for grants in one batch (`PolicyService.grant`, the same call
`policyd serve` makes for a protocol grant request), each lease meets its ISP, and the outcomes
go back in one feedback batch (`PolicyService.feedback`). Nothing of the policy is copied here:
schedules, buckets, health, rules and the store are the daemon's own.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from policy.config import Config
from policy.engine import Action, GrantRequest, Outcome, Policy
from policy.engine.state import ANY_ISP, MAILBOX, PairState
from policy.service import PolicyService
from policy.sim.audience import Audience
from policy.sim.events import LateReports
from policy.sim.incidents import Incidents
from policy.sim.isp_model import ModelledIsp
from policy.sim.lanes import Lane, RetrySchedule
from policy.sim.planner import LaneKey, Planner
from policy.sim.replies import Reply
from policy.sim.scenario import BAD_LIST, NEWSLETTER, OUTREACH, TRANSACTIONAL, Scenario, start_epoch
from policy.sim.stats import DayRecord, RecordedAction, SimResult, Tally
from policy.store import PAIR, Store, open_store
from policy.store.memory_store import MemoryStore
from warmup_base.policy_protocol.model import Grant
from warmup_base.retry import RetryPolicy

_MIN_GAP = 30.0    # seconds between a lane's asks at least (the MTA asks whenever its leases run out)
_TICK = 10.0       # guessed waits fall on this grid, so lanes that wait alike ask in one batch
_ROUNDS = 8        # grant rounds at one instant at most (a lane that was granted asks again at once)
STATE_FILE = "simulated-policy.db"    # the SQLite state of a run, when the scenario asks for SQLite


def _tick(at: float) -> float:
    return math.ceil(at / _TICK) * _TICK


class SimClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Hooks:
    """Receives the service's reports; only actions matter to the simulation."""

    def __init__(self, sink: Simulator) -> None:
        self._sink = sink

    def granted(self, isp: str, asked: int, grants: Sequence[Grant]) -> None:
        pass

    def observed(self, cls: str, count: int, isp: str = "") -> None:
        pass

    def acted(self, action: Action) -> None:
        self._sink.record_action(action)


class Simulator:
    def __init__(self, scenario: Scenario, config: Config, days: int | None = None, state_dir: str = "") -> None:
        self.scenario = scenario
        self.days = days or scenario.simulation.days
        self.policy = Policy(config.policy)
        self.calendar = self.policy.calendar
        self.step = float(scenario.simulation.step)
        self.start = self._first_day_start(start_epoch(scenario))
        self.clock = SimClock(self.start)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.store = self._open_store(scenario.simulation.state, state_dir)
        # One process owns this store, and the service updates its cache on every change it
        # makes, so cached pair states never go stale: reading them once is enough.
        self.service = PolicyService(self.policy, self.store, self.clock, cache_seconds=math.inf,
                                     hooks=_Hooks(self))
        seed = scenario.simulation.seed
        self.isp_rng = random.Random(f"{seed}:isps")      # separate streams: changing one part of
        self.mail_rng = random.Random(f"{seed}:mail")     # a scenario does not reshuffle the rest
        names = list(scenario.isps)
        self.isps = {name: ModelledIsp(name, scenario.isps[name]) for name in names}
        self.policy_isp = {name: self.policy.isp_of((scenario.isps[name].mx,)) for name in names}
        self._model_isps: dict[str, list[str]] = defaultdict(list)     # policyd's ISP -> modelled ISPs
        for name, policy_isp in self.policy_isp.items():
            self._model_isps[policy_isp].append(name)
        self._actions_counted = 0
        self.audience = Audience.generate(scenario.audience, names, random.Random(f"{seed}:audience"))
        self.sources = {s.name: s for s in scenario.sources}
        self.lanes = self._make_lanes()
        self.lane_list = list(self.lanes.values())
        self._lanes_by_isp = {name: [ln for ln in self.lane_list if ln.isp == name] for name in names}
        self.planner = Planner(scenario, self.audience, self.lanes, random.Random(f"{seed}:planner"),
                               self.calendar.day_length)
        sim = scenario.simulation
        self.retries = RetrySchedule(RetryPolicy(base=sim.retry_base, cap=sim.retry_max, max_age=sim.max_age),
                                     random.Random(f"{seed}:retry"))
        self.late = LateReports()
        self.incidents = Incidents(scenario, self.start, self.calendar.day_length)
        self.result = SimResult(scenario.path, names, self.start, self.calendar.day_length,
                                audience_size=len(self.audience))
        hours = math.ceil(self.days * self.calendar.day_length / 3600) + 1
        self.result.hourly = {n: [0] * hours for n in names}
        self.result.hourly_throttled = {n: [0] * hours for n in names}
        self.tallies: dict[int, dict[str, Tally]] = {}
        self.day = 0
        self._feedback: Counter[tuple[int, str, Reply]] = Counter()
        self._max_lease = config.policy.leases.max_messages
        self._min_burst = config.policy.warmup.min_burst
        self._rich_gap = 0.75 * config.policy.warmup.burst * self.calendar.day_length / 86400
        self._feedback_interval = float(scenario.simulation.feedback_interval)
        self._next_flush = self.start
        scale = self.calendar.day_length / 86400      # times of day are given on a 24-hour day
        self._next_campaign = {s.name: self.start + s.start * scale for s in scenario.streams
                               if s.kind != TRANSACTIONAL}

    # ---- set-up
    def _first_day_start(self, epoch: float) -> float:
        """Day 1 begins with the policy's first warm-up day at or after the scenario's start date."""
        day = self.calendar.day_index(epoch)
        begins = self.calendar.day_begins(day)
        return begins if begins >= epoch else self.calendar.day_begins(day + 1)

    def _open_store(self, kind: str, state_dir: str) -> Store:
        """The memory store, or SQLite in `state_dir` (a temporary directory when none is given)."""
        if kind != "sqlite":
            return MemoryStore(history_limit=1_000_000)
        if not state_dir:
            self._tmp = tempfile.TemporaryDirectory(prefix="policyd-sim-")
            state_dir = self._tmp.name
        os.makedirs(state_dir, exist_ok=True)
        path = os.path.join(os.path.abspath(state_dir), STATE_FILE)
        if os.path.exists(path):
            os.remove(path)          # a simulation starts from nothing (the name is ours alone)
        return open_store("sqlite://" + path)

    def _make_lanes(self) -> dict[LaneKey, Lane]:
        """A lane per stream, ISP and mailbox, and per campaign an import mails under its own tag."""
        lanes: dict[LaneKey, Lane] = {}
        imports = [(i.stream or next(s.name for s in self.scenario.streams if s.kind == NEWSLETTER), i.campaign)
                   for i in self.scenario.incidents if i.kind == BAD_LIST and i.campaign]
        for stream in self.scenario.streams:
            boxes = stream.mailboxes if stream.kind == OUTREACH else [""]
            campaigns = [(stream.name, stream.campaign)]
            campaigns += [(f"{stream.name}#{c}", c) for s, c in dict.fromkeys(imports) if s == stream.name]
            for lane_name, campaign in campaigns:
                for box in boxes:
                    domain = stream.sending_domain or box.partition("@")[2]
                    for name, isp in self.scenario.isps.items():
                        ask = GrantRequest(isp.domain, (isp.mx,), stream.name, tuple(stream.sources),
                                       "transactional" if stream.kind == TRANSACTIONAL else "marketing",
                                       domain, stream.tenant, 0, box, campaign)
                        lanes[(lane_name, name, box)] = Lane(len(lanes), lane_name, stream.kind, name, ask,
                                                             stream.complaint_factor)
        return lanes

    # ---- the run
    async def run(self) -> SimResult:
        began = time.perf_counter()
        try:
            for day in range(1, self.days + 1):
                await self._run_day(day)
            self.planner.finish(self.tallies)
        finally:
            await self.store.close()
            if self._tmp is not None:
                self._tmp.cleanup()
        self.result.campaigns = self.planner.campaigns
        self.result.incidents = self.incidents.marks
        self.result.active_at_end = self.audience.active_count()
        self.result.seconds = time.perf_counter() - began
        return self.result

    async def _run_day(self, day: int) -> None:
        self.day = day
        self.tallies[day] = {name: Tally() for name in self.isps}
        begins = self.start + (day - 1) * self.calendar.day_length
        steps = max(1, round(self.calendar.day_length / self.step))
        for i in range(steps):
            await self._step(begins + i * self.step, last=i == steps - 1)
        await self._close_day(day)

    async def _step(self, now: float, last: bool = False) -> None:
        self.clock.now = now
        self.incidents.apply(now, self)
        for isp in self.isps.values():
            isp.advance(now)
        self._start_campaigns(now)
        self.planner.transactional(self.step, now)
        for lane_index, rid, attempts, created in self.retries.due(now):
            self.lane_list[lane_index].retries.append((rid, attempts, created))
        self.late.deliver_due(now, self)
        await self._grant_and_send(now)
        if last or now >= self._next_flush:
            await self._flush_feedback()

    def _start_campaigns(self, now: float) -> None:
        for name, at in self._next_campaign.items():
            if now >= at:
                self.planner.start_campaign(self.scenario.stream(name), self.day, now, self.tallies)
                self._next_campaign[name] = at + self.calendar.day_length

    # ---- grants and delivery
    async def _grant_and_send(self, now: float) -> None:
        """Every lane with mail asks when it is free to, in time order within the step.

        When that is follows what an MTA learns from its grants (see `_ask`): a young pair's bucket
        holds a single message (the burst is at least `min_burst`), so asking once a step would
        waste most of its rate; an MTA honours retry_in, and the simulator does so to within
        _MIN_GAP. A bucket that granted more than `min_burst` holds `burst` seconds' worth, so its
        lane loses nothing by waiting most of that before it asks again.
        """
        end = now + self.step
        waiting = [(max(now, lane.retry_at), lane.index) for lane in self.lane_list
                   if lane.retry_at < end and (lane.retries or lane.fresh)]
        heapq.heapify(waiting)
        while waiting:
            at = waiting[0][0]
            lanes = []
            while waiting and waiting[0][0] == at:
                lanes.append(self.lane_list[heapq.heappop(waiting)[1]])
            self.clock.now = at
            pushback = await self._ask(lanes, at)
            for lane in lanes:
                if at < lane.retry_at < end and lane.pending:
                    heapq.heappush(waiting, (lane.retry_at, lane.index))
            if pushback:
                await self._flush_feedback()     # the MTA reports push-back at once

    async def _ask(self, lanes: list[Lane], now: float) -> bool:
        """Grant rounds for lanes asking at `now`; True if an ISP pushed back on a lease."""
        pushback = False
        for _round in range(_ROUNDS):
            if not lanes:
                break
            wanted = [min(lane.pending, self._max_lease) for lane in lanes]
            asks = [GrantRequest(a.site, a.mx_hosts, a.pool, a.sources, a.stream, a.sending_domain, a.tenant, n,
                             a.mailbox, a.campaign, lane.pending)
                    for a, n, lane in ((lane.ask, n, lane) for lane, n in zip(lanes, wanted, strict=True))]
            answers = await self.service.grant(asks)
            again = []
            for lane, n, grants in zip(lanes, wanted, answers, strict=True):
                if len(grants) == 1 and grants[0].count <= 0:     # refused: wait as told
                    lane.retry_at = now + max(grants[0].retry_in, _MIN_GAP)
                    continue
                got = 0
                for grant in grants:
                    covered, refused = self._send(lane, grant, now)
                    got += covered
                    pushback |= refused
                if not lane.pending:
                    continue
                if got >= n:
                    again.append(lane)          # all it asked for: there may be more room right now
                elif sum(not g.overflow for g in grants) < len(lane.ask.sources) \
                        or any(g.count <= self._min_burst for g in grants):
                    lane.retry_at = _tick(now + _MIN_GAP)   # a bucket may hold one message: look again soon
                else:
                    lane.retry_at = _tick(now + self._rich_gap)
            lanes = again
        return pushback

    def _send(self, lane: Lane, grant: Grant, now: float) -> tuple[int, bool]:
        """One lease: its messages meet the ISP; returns how many it covered and whether the ISP pushed back."""
        rids, meta = lane.take(grant.count)
        if not rids:
            return 0, False
        isp = self.isps[lane.isp]
        source = self.sources[grant.source]
        st = isp.standing(source.name, now, source.reputation)
        replies = isp.replies(source.name, source.address)
        aud = self.audience
        res = isp.receive(st, replies, rids, grant.max_connections, aud.invalid, aud.engagement, self.isp_rng,
                          now, self.incidents.blocklisted(source.name, now))
        tally = self.tallies[self.day][lane.isp]
        attempted = res.tried + len(res.refused)
        tally.sent += attempted
        tally.delivered += len(res.delivered)
        tally.bounced += len(res.bounced) + len(res.late_bounces)
        hour = int((now - self.start) // 3600)
        self.result.hourly[lane.isp][hour] += attempted
        if lane.ask.mailbox:
            sent = self.result.mailbox_sent.setdefault(lane.ask.mailbox, [0] * self.days)
            sent[self.day - 1] += attempted
        feedback = self._feedback
        if res.delivered or res.late_bounces:
            feedback[(lane.index, source.name, replies.accept)] += len(res.delivered) + len(res.late_bounces)
        if res.bounced:
            feedback[(lane.index, source.name, replies.unknown_user)] += len(res.bounced)
            if replies.unknown_user.hard:
                for rid in res.bounced:
                    aud.suppressed[rid] = True
        for rid in res.late_bounces:
            self.late.dsn(now + self.mail_rng.expovariate(1.0 / isp.settings.bounce_delay), lane, source.name, rid)
        self._complaints(lane, isp, source.name, res.delivered, now)
        if res.refusal is not None:
            self._refused(lane, res.refusal, source.name, rids, meta, res.tried, len(res.refused), tally, hour, now)
            lane.give_back(rids[attempted:], meta[attempted:])
            for other in self._lanes_by_isp[lane.isp]:
                other.retry_at = 0.0     # like the MTA's revoke: the site's lanes ask again, policyd knows why
        return len(rids), res.refusal is not None

    def _refused(self, lane: Lane, reply: Reply, source: str, rids: list[int], meta: list[tuple[int, float]],
                 first: int, count: int, tally: Tally, hour: int, now: float) -> None:
        self._feedback[(lane.index, source, reply)] += count
        if reply.kind == "throttled":
            tally.throttled += count
            self.result.hourly_throttled[lane.isp][hour] += count
        elif reply.kind == "blocked":
            tally.blocked += count
        for i in range(first, first + count):
            attempts, created = meta[i]
            if reply.temporary:
                tally.deferred += 1
                if self.retries.defer(lane, rids[i], attempts + 1, created or now, now):
                    continue
            tally.bounced += 1      # refused for good, or deferred past the queue lifetime

    def _complaints(self, lane: Lane, isp: ModelledIsp, source: str, delivered: list[int], now: float) -> None:
        """Who of the delivered will complain, and when the report arrives."""
        if lane.complaint_factor == 0:
            return
        rng = self.mail_rng
        base = self.scenario.audience.complaint_probability * lane.complaint_factor
        burst = self.incidents.complaint_rate(lane.isp, now) * lane.complaint_factor
        complainer = self.audience.complainer
        delay = isp.settings.complaint_delay
        for rid in delivered:
            chance = (base if complainer[rid] else 0.0) + burst
            if chance and rng.random() < chance:
                self.late.complaint(now + rng.expovariate(1.0 / delay), lane, source, rid)

    # ---- late reports (called by LateReports when due)
    def complaint_arrived(self, lane: Lane, source: str, rid: int) -> None:
        isp = self.isps[lane.isp]
        self.audience.suppressed[rid] = True     # unsubscribed: a complaint is also an opt-out
        self.tallies[self.day][lane.isp].complaints += 1
        isp.complained(isp.standing(source, self.clock.now))
        if isp.settings.feedback_loop:
            self._feedback[(lane.index, source, COMPLAINT)] += 1

    def dsn_arrived(self, lane: Lane, source: str, rid: int) -> None:
        reply = self.isps[lane.isp].replies(source, self.sources[source].address).unknown_user
        if reply.hard:
            self.audience.suppressed[rid] = True
        self._feedback[(lane.index, source, reply)] += 1

    # ---- feedback and actions
    async def _flush_feedback(self) -> None:
        """Sends the outcomes gathered so far as one feedback batch. Push-back (throttles, blocks)
        goes at once, as the MTA sends it; everything else waits up to [simulation]
        feedback_interval (a cost trade-off: each batch rewrites every pair's health; the rate
        rules judge a day's window, which minutes do not change), and always before the day ends."""
        self._next_flush = self.clock.now + self._feedback_interval
        if not self._feedback:
            return
        items = []
        for (lane_index, source, reply), count in self._feedback.items():
            a = self.lane_list[lane_index].ask
            items.append(Outcome(a.site, a.mx_hosts, source, a.sending_domain, a.tenant, a.stream,
                                      reply.outcome, reply.reason, reply.code, reply.status, count, a.mailbox,
                                      a.campaign))
        self._feedback.clear()
        await self.service.feedback(items)

    def record_action(self, action: Action) -> None:
        key = action.key.split("|")
        self.result.actions.append(RecordedAction(action.at, self.day, action.key, key[2] if len(key) == 3 else "",
                                                  action.rule, action.action, action.reason, action.reply))

    async def _close_day(self, day: int) -> None:
        record = DayRecord(day, self.tallies[day])
        campaign_sources = {src for s in self.scenario.streams if s.kind in (NEWSLETTER, OUTREACH)
                            for src in s.sources} or set(self.sources)
        keys = {(name, src): f"ip|{src}|{self.policy_isp[name]}" for name in self.isps for src in campaign_sources}
        boxes = {box: f"{MAILBOX}|{box}|{ANY_ISP}" for s in self.scenario.streams for box in s.mailboxes}
        found = await self.store.get(PAIR, [*keys.values(), *boxes.values()])
        for name, model in self.isps.items():
            opinions = [model.standings[src].reputation for src in campaign_sources if src in model.standings]
            if opinions:
                record.reputation[name] = sum(opinions) / len(opinions)
            days = [PairState.from_dict(found[k]).day for (isp, _src), k in keys.items() if isp == name and k in found]
            if days:
                record.warmup_day[name] = min(days)
        for box, key in boxes.items():
            series = self.result.mailbox_day.setdefault(box, [-1] * self.days)
            if key in found:
                series[day - 1] = PairState.from_dict(found[key]).day
        for a in self.result.actions[self._actions_counted:]:
            for name in self._model_isps.get(a.isp, [ANY_ISP]):     # umbrella and mailbox pairs: "*"
                record.actions.setdefault(name, Counter())[a.rule] += 1
        self._actions_counted = len(self.result.actions)
        self.result.days.append(record)


COMPLAINT = Reply(0, "", "", "feedback", False, "complaint", "complaint")   # an ARF report: feedback-type abuse
