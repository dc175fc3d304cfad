"""The MTA side of the simulation: site lanes with their queues, and the retry schedule.

A lane is what the MTA's scheduler asks policyd about: one stream's mail to one site (and, for
outreach, one sender mailbox). It holds fresh messages (recipient ids) and messages due for a
retry (with their attempt count and age); retries go first, as the MTA's ready queue orders them
by age. A refusal with a `retry_in` is respected: the lane does not ask again before it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from warmup_base.policy_protocol.model import GrantRequest
from warmup_base.retry import RetryPolicy


@dataclass(slots=True)
class Lane:
    index: int
    stream: str
    kind: str                    # the stream's kind
    isp: str                     # the modelled ISP (the simulator's name for it)
    ask: GrantRequest            # the grant request, `wanted` set per ask
    complaint_factor: float = 1.0
    fresh: deque[int] = field(default_factory=deque)
    fresh_created: float = 0.0   # when the current fresh messages were queued
    retries: deque[tuple[int, int, float]] = field(default_factory=deque)  # (recipient, attempts, created)
    retry_at: float = 0.0        # policyd said: not before this

    @property
    def pending(self) -> int:
        return len(self.retries) + len(self.fresh)

    def take(self, count: int) -> tuple[list[int], list[tuple[int, float]]]:
        """Up to `count` messages, retries first: recipients and their (attempts, created)."""
        rids: list[int] = []
        meta: list[tuple[int, float]] = []
        while self.retries and len(rids) < count:
            rid, attempts, created = self.retries.popleft()
            rids.append(rid)
            meta.append((attempts, created))
        n = min(count - len(rids), len(self.fresh))
        if n:
            fresh = self.fresh
            rids.extend(fresh.popleft() for _ in range(n))
            meta.extend(itertools.repeat((0, self.fresh_created), n))
        return rids, meta

    def give_back(self, rids: list[int], meta: list[tuple[int, float]]) -> None:
        """Messages of a revoked lease go back to the head of the queue, unattempted."""
        for rid, (attempts, created) in zip(reversed(rids), reversed(meta), strict=True):
            if attempts:
                self.retries.appendleft((rid, attempts, created))
            else:
                self.fresh.appendleft(rid)

    def withdraw(self) -> list[int]:
        """The fresh messages nobody could send; the planner takes them back."""
        left = list(self.fresh)
        self.fresh.clear()
        return left

    def queue(self, rids: Iterable[int], now: float, first: bool = False) -> None:
        if first:
            self.fresh.extendleft(reversed(list(rids)))
        else:
            self.fresh.extend(rids)
        self.fresh_created = now


class RetrySchedule:
    """Deferred messages wait here until their next attempt (the MTA's delayed queue)."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self._heap: list[tuple[float, int, int, int, int, float]] = []
        self._seq = itertools.count()

    def defer(self, lane: Lane, rid: int, attempts: int, created: float, now: float) -> bool:
        """Schedules the next attempt; False when the message has expired instead."""
        if self.policy.expired(now, created):
            return False
        at = self.policy.next_attempt(now, created, attempts, self._rng)
        heapq.heappush(self._heap, (at, next(self._seq), lane.index, rid, attempts, created))
        return True

    def due(self, now: float) -> list[tuple[int, int, int, float]]:
        """(lane index, recipient, attempts, created) of every retry due by `now`."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _at, _seq, lane, rid, attempts, created = heapq.heappop(heap)
            out.append((lane, rid, attempts, created))
        return out

    def __len__(self) -> int:
        return len(self._heap)
