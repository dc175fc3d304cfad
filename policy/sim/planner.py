"""The sender's side: what each stream hands the MTA, and when.

- Newsletter: every day at the stream's start time, the whole active audience in the planner's
  order (most engaged first, unless the scenario says random). What the policy held back by the
  next campaign is withdrawn: a newsletter is not worth sending a day late, and the next one
  goes to the same people anyway. While volume is limited, the order decides who gets mail.
- Transactional: a steady flow to active users (weighted by engagement), all day, never withdrawn.
- Outreach: every day each sender mailbox takes its next `daily` prospects from its own list;
  prospects not reached go back to the front of that list.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence

from policy.sim.audience import ActiveUserSampler, Audience
from policy.sim.lanes import Lane
from policy.sim.scenario import NEWSLETTER, OUTREACH, TRANSACTIONAL, Scenario, StreamSettings
from policy.sim.stats import Campaign, Tally

LaneKey = tuple[str, str, str]      # (stream, ISP, mailbox)


class Planner:
    def __init__(self, scenario: Scenario, audience: Audience, lanes: dict[LaneKey, Lane],
                 rng: random.Random, day_length: float) -> None:
        self.scenario = scenario
        self.audience = audience
        self.lanes = lanes
        self.day_length = day_length
        self.campaigns: list[Campaign] = []
        self._current: dict[str, Campaign] = {}
        self._sampler = ActiveUserSampler(audience, rng)
        self._carry = {s.name: 0.0 for s in scenario.streams}
        self._prospects = self._deal_prospects(rng)

    def _deal_prospects(self, rng: random.Random) -> dict[str, deque[int]]:
        """Each outreach mailbox gets its own slice of the audience, shuffled."""
        boxes = [m for s in self.scenario.streams if s.kind == OUTREACH for m in s.mailboxes]
        if not boxes:
            return {}
        ids = list(range(len(self.audience)))
        rng.shuffle(ids)
        return {box: deque(ids[i::len(boxes)]) for i, box in enumerate(boxes)}

    def _lanes_of(self, stream: str, mailbox: str = "") -> list[Lane]:
        """The stream's lanes for one mailbox, with those of campaigns it mailed ("stream#campaign")."""
        return [lane for (s, _isp, m), lane in self.lanes.items()
                if (s == stream or s.startswith(stream + "#")) and m == mailbox]

    def _queue(self, stream: str, rids: Iterable[int], now: float, mailbox: str = "", first: bool = False) -> int:
        """Hands recipients to the lanes of their ISPs, keeping their order; returns how many."""
        names = self.audience.isp_names
        isp_of = self.audience.isp
        by_isp: dict[str, list[int]] = {}
        for rid in rids:
            by_isp.setdefault(names[isp_of[rid]], []).append(rid)
        for isp, ids in by_isp.items():
            self.lanes[(stream, isp, mailbox)].queue(ids, now, first=first)
        return sum(len(ids) for ids in by_isp.values())

    def _withdraw(self, stream: str, mailbox: str, tallies: dict[str, Tally]) -> list[int]:
        left: list[int] = []
        for lane in self._lanes_of(stream, mailbox):
            ids = lane.withdraw()
            tallies[lane.isp].unsent += len(ids)
            left.extend(ids)
        return left

    # ---- campaigns
    def start_campaign(self, stream: StreamSettings, day: int, now: float,
                       tallies: dict[int, dict[str, Tally]]) -> None:
        """Queues the day's campaign of a newsletter or outreach stream, withdrawing the last one's rest
        (counted as unsent on the day of the campaign it belonged to)."""
        before = self._current.get(stream.name)
        unsent_to = tallies[before.day if before else day]
        withdrawn = 0
        campaign = Campaign(stream.name, day, 0)
        if stream.kind == NEWSLETTER:
            withdrawn = len(self._withdraw(stream.name, "", unsent_to))
            campaign.queued = self._queue(stream.name, self.audience.planned_order(), now)
        else:
            for box in stream.mailboxes:
                left = self._withdraw(stream.name, box, unsent_to)
                pool = self._prospects[box]
                pool.extendleft(reversed(self.audience.order_of(left)))
                today = [pool.popleft() for _ in range(min(stream.daily, len(pool)))]
                withdrawn += len(left)
                campaign.demand_met &= len(today) == stream.daily
                campaign.queued += self._queue(stream.name, today, now, mailbox=box)
        if before is not None:
            before.withdrawn = withdrawn
        self._current[stream.name] = campaign
        self.campaigns.append(campaign)

    def import_list(self, stream: str, rids: Sequence[int], now: float, campaign: str = "") -> None:
        """A freshly imported list, mailed at once, ahead of the rest of today's campaign, in its own
        order: nobody has engaged with these addresses yet, so there is nothing to sort by. With a
        campaign tag it goes out on lanes of its own (the stream's "stream#campaign" lanes)."""
        queued = self._queue(f"{stream}#{campaign}" if campaign else stream, rids, now, first=True)
        if stream in self._current:
            self._current[stream].queued += queued

    def transactional(self, step: float, now: float) -> None:
        for stream in self.scenario.streams:
            if stream.kind != TRANSACTIONAL:
                continue
            self._carry[stream.name] += stream.daily * step / self.day_length
            count = int(self._carry[stream.name])
            self._carry[stream.name] -= count
            if count:
                self._queue(stream.name, self._sampler.draw(count), now)

    def finish(self, tallies_of_day: dict[int, dict[str, Tally]]) -> None:
        """At the end of the run: what the last campaigns could not send."""
        for name, campaign in self._current.items():
            stream = self.scenario.stream(name)
            boxes = stream.mailboxes if stream.kind == OUTREACH else [""]
            campaign.withdrawn = sum(len(self._withdraw(name, box, tallies_of_day[campaign.day])) for box in boxes)
